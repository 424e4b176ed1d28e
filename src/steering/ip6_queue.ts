/**
 * The ip6tables rules that queue to krelay what is not on the IPv6 default path: every packet
 * of a scripted IPv6 service, and IPv6 clients' SYNs while they are held. The ICMPv6 errors
 * and each new UDP flow's first packet are queued by the ip6 table's own queue chain
 * (queue_chain.ts, nft_queue.ts); earlier versions did that with rules here, and
 * {@link removeIcmp6Queue} still removes those a crashed run left. In `mangle`, after the ip6
 * table's raw-priority chains. All bypass the queue when krelay is gone.
 *
 * @module
 */

import { type CommandRunner, mustRun } from "../system/command.ts";
import { idleBuiltinChains } from "./iptables_steering.ts";
import { RULE_COMMENT } from "./iptables.ts";

/** The built-in chains the rules go in (and earlier versions' did). */
const CHAINS = ["PREROUTING", "OUTPUT", "POSTROUTING"] as const;
/** Ports one multiport match takes. */
const MULTIPORT_MAX = 15;
// A crashed run can leave a few duplicates; this bounds the removal.
const MAX_STALE = 16;

/**
 * The rules that queue every packet of the IPv6 services with a packet script (krelay NATs
 * their UDP flows itself, and the relay carries their TCP): requests to `relay6`:port in
 * PREROUTING, replies from port in POSTROUTING (UDP's after the server's, forwarded; TCP's
 * the relay's own to the client), as iptables.ts's for IPv4. Each is [chain, ...arguments].
 */
export function scriptedQueueRules(
  queue: number,
  relay6: string,
  udp: readonly number[],
  tcp: readonly number[],
): string[][] {
  const target = ["-m", "comment", "--comment", RULE_COMMENT, "-j", "NFQUEUE", "--queue-num"];
  const q = [...target, String(queue), "--queue-bypass"];
  const rules: string[][] = [];
  for (const [protocol, ports] of [["udp", udp], ["tcp", tcp]] as const) {
    for (let i = 0; i < ports.length; i += MULTIPORT_MAX) {
      const list = ports.slice(i, i + MULTIPORT_MAX).join(",");
      const multi = ["-p", protocol, "-m", "multiport"];
      rules.push(["PREROUTING", "-d", `${relay6}/128`, ...multi, "--dports", list, ...q]);
      const from = protocol === "tcp" ? ["-s", `${relay6}/128`] : [];
      rules.push(["POSTROUTING", ...from, ...multi, "--sports", list, ...q]);
    }
  }
  return rules;
}

/**
 * The rules that queue IPv6 clients' SYNs to `relay6`:port of the TCP services in `held`, for
 * the SYN gate (syn_gate.ts), as iptables.ts's `KRELAY_SYN` for IPv4: in PREROUTING, after
 * the ip6 table's raw-priority chain (whose no-server refusal comes first). Scripted services'
 * SYNs come with all their segments. Each is [chain, ...arguments].
 */
export function heldSynQueueRules(
  queue: number,
  relay6: string,
  held: readonly number[],
): string[][] {
  const q = ["-m", "comment", "--comment", RULE_COMMENT, "-j", "NFQUEUE", "--queue-num"];
  const rules: string[][] = [];
  for (let i = 0; i < held.length; i += MULTIPORT_MAX) {
    const list = held.slice(i, i + MULTIPORT_MAX).join(",");
    rules.push([
      "PREROUTING",
      "-d",
      `${relay6}/128`,
      "-p",
      "tcp",
      "--syn",
      "-m",
      "multiport",
      "--dports",
      list,
      ...q,
      String(queue),
      "--queue-bypass",
    ]);
  }
  return rules;
}

/**
 * Changes the scripted services' rules from `installed` to `wanted` (both as
 * {@link scriptedQueueRules} gives them): `add` adds the new ones, `drop` deletes those no
 * longer wanted, so that a caller can change the ip6 table between the two.
 */
export function scriptedQueueChange(
  run: CommandRunner,
  installed: readonly string[][],
  wanted: readonly string[][],
  ip6tables = "ip6tables",
): { add: () => Promise<void>; drop: () => Promise<void> } {
  const has = (list: readonly string[][], r: string[]) =>
    list.some((x) => x.join(" ") === r.join(" "));
  const mangle = ["-w", "-t", "mangle"];
  return {
    add: async () => {
      for (const [chain, ...args] of wanted.filter((r) => !has(installed, r))) {
        await mustRun(run, ip6tables, [...mangle, "-A", chain, ...args]);
      }
    },
    drop: async () => {
      for (const [chain, ...args] of installed.filter((r) => !has(wanted, r))) {
        await run(ip6tables, [...mangle, "-D", chain, ...args]);
      }
    },
  };
}

/**
 * Removes the rules, whatever queue number the run that added them used (a crashed run's
 * too, an earlier version's ICMPv6 and first-packet ones included), and what ip6tables-nft
 * left of its `mangle` table for them: empty built-in chains are hooks every packet passes.
 */
export async function removeIcmp6Queue(
  run: CommandRunner,
  ip6tables = "ip6tables",
  nft = "nft",
): Promise<void> {
  const listed = await run(ip6tables, ["-w", "-t", "mangle", "-S"]);
  if (listed.code !== 0) return;
  // Every queue rule of krelay's: marked packets', and scripted services'.
  const ours = listed.stdout.split("\n").filter((line) =>
    CHAINS.some((c) => line.startsWith(`-A ${c} `)) && line.includes(" -j NFQUEUE ") &&
    line.includes(`--comment ${RULE_COMMENT} `)
  );
  for (const line of ours.slice(0, 8 * MAX_STALE)) {
    await run(ip6tables, ["-w", "-t", "mangle", "-D", ...line.split(" ").slice(1)]);
  }
  const list = await run(nft, ["-j", "list", "table", "ip6", "mangle"]);
  if (list.code !== 0) return;
  const idle = idleBuiltinChains(list.stdout);
  for (const chain of idle.chains) await run(nft, ["delete", "chain", "ip6", "mangle", chain]);
  if (idle.all) await run(nft, ["delete", "table", "ip6", "mangle"]);
}
