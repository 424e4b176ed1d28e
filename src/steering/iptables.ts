/**
 * The iptables rules that select the packets krelay must decide for its queue, rendered as
 * iptables-restore scripts. Pure: the applier in {@link ./iptables_steering.ts} runs them.
 *
 * The kernel carries established flows (kernel_path.ts), and nft.ts's table queues each new
 * UDP flow's first packet and the ICMP errors of UDP flows from its own chains (nft_queue.ts),
 * so that no iptables hook is on the default path. The queue gets from iptables only:
 *
 * - `mangle KRELAY_SYN` (from PREROUTING, taken only by TCP SYNs): clients' SYNs to relay:port
 *   of the TCP services in `heldSynPorts`, which krelay holds until the server has answered
 *   (syn_gate.ts); to the relay threads' own queues with `heldSynQueues` (by the CPU that
 *   received the SYN, daemon/thread_gate.ts); a scripted service's come through
 *   `raw KRELAY_PRE` with all its segments.
 * - with packet scripts, every packet of a scripted service:
 *   - `raw KRELAY_PRE` (from PREROUTING, before conntrack and routing): the client's requests
 *     to relay:port. UDP is rewritten to the real server there (U1), so routing forwards it;
 *     TCP only gets the scripts' verdict (the gateway listener takes the connection as any).
 *   - `mangle KRELAY_POST` (from POSTROUTING, after routing): UDP replies from the service
 *     port, whose source is rewritten back to the relay (U3), and the relay's TCP segments from
 *     the service port to the client.
 *
 * A chain exists only while it has rules: every built-in chain a jump sits in is a hook every
 * packet passes, so without scripts or held SYNs there is none. The chains of earlier
 * versions (`mangle KRELAY_PRE` for marked first packets, `KRELAY_ICMP_IN` / `KRELAY_ICMP_OUT`)
 * are still removed, as a crashed run of those may have left them.
 *
 * Every NFQUEUE rule has --queue-bypass: when krelay is not running, packets pass instead of
 * being dropped by an unserved queue.
 *
 * @module
 */

import { ICMP_ERROR_MARK, UDP_FIRST_MARK } from "./marks.ts";
import { ipv4Spec, type SteeringSpec } from "./steering.ts";

/** One of krelay's chains: its table, name and the built-in chain that jumps to it. */
export interface KrelayChain {
  readonly table: "raw" | "mangle";
  readonly chain: string;
  readonly from: string;
  /** The matches of the jump, before `-j CHAIN` (none: every packet takes it). */
  readonly jump: string;
}

/** What selects a UDP flow's first packet, marked by nft.ts's raw-priority chain. */
const UDP_FIRST = `-p udp -m mark --mark 0x${UDP_FIRST_MARK.toString(16)}`;
/** What selects an ICMP error about a UDP flow, marked by nft.ts's chains. */
const ICMP_ERROR = `-p icmp -m mark --mark 0x${ICMP_ERROR_MARK.toString(16)}`;

/** Every chain krelay may install or remove, in the order they are installed. */
export const CHAINS = {
  first: { table: "mangle", chain: "KRELAY_PRE", from: "PREROUTING", jump: UDP_FIRST },
  request: { table: "raw", chain: "KRELAY_PRE", from: "PREROUTING", jump: "" },
  reply: { table: "mangle", chain: "KRELAY_POST", from: "POSTROUTING", jump: "" },
  icmpIn: { table: "mangle", chain: "KRELAY_ICMP_IN", from: "PREROUTING", jump: ICMP_ERROR },
  icmpOut: { table: "mangle", chain: "KRELAY_ICMP_OUT", from: "POSTROUTING", jump: "-p icmp" },
  syn: { table: "mangle", chain: "KRELAY_SYN", from: "PREROUTING", jump: "-p tcp --syn" },
} as const satisfies Record<string, KrelayChain>;

/** A chain's name in {@link CHAINS}. */
export type ChainId = keyof typeof CHAINS;

/** Comment put on every rule, so a person reading `iptables -S` knows whose rules they are. */
export const RULE_COMMENT = "krelay";

// iptables' multiport match takes at most 15 ports.
const MULTIPORT_MAX = 15;

function chunks(ports: readonly number[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < ports.length; i += MULTIPORT_MAX) {
    out.push(ports.slice(i, i + MULTIPORT_MAX).join(","));
  }
  return out;
}

function queueTarget(queue: number): string {
  return spreadTarget({ base: queue, count: 1 });
}

/** Queues `base`.. `base + count - 1`, each packet to the one of the CPU that received it. */
function spreadTarget({ base, count }: { base: number; count: number }): string {
  const queues = count > 1
    ? `--queue-balance ${base}:${base + count - 1} --queue-cpu-fanout`
    : `--queue-num ${base}`;
  return `-m comment --comment ${RULE_COMMENT} -j NFQUEUE ${queues} --queue-bypass`;
}

/** The rules of each chain the spec needs, as iptables arguments after `-A CHAIN`. */
export function renderChainRules(steering: SteeringSpec): Partial<Record<ChainId, string[]>> {
  // IPv4's selection: none when IPv4 clients are not steered (an IPv6-only relay).
  const spec = ipv4Spec(steering);
  if (spec === undefined) return {};
  const q = queueTarget(spec.queue);
  const rules: Partial<Record<ChainId, string[]>> = {};
  // A new UDP flow's first packet and the ICMP errors of UDP flows are queued by the nft
  // table's own chain (nft.ts, nft_queue.ts): chains first, icmpIn and icmpOut are no longer
  // rendered, only removed (those of earlier versions).
  const held = (spec.heldSynPorts ?? []).filter((p) =>
    spec.tcpPorts.includes(p) && !spec.scriptedTcpPorts.includes(p)
  );
  if (held.length > 0) {
    const to = spec.heldSynQueues === undefined ? q : spreadTarget(spec.heldSynQueues);
    rules.syn = chunks(held).map((ports) =>
      `-d ${spec.relayIp}/32 -p tcp -m multiport --dports ${ports} ${to}`
    );
  }
  const udp = spec.scriptedUdpPorts;
  const tcp = spec.scriptedTcpPorts;
  if (udp.length + tcp.length > 0) {
    const relay = `${spec.relayIp}/32`;
    rules.request = [
      ...chunks(udp).map((ports) => `-d ${relay} -p udp -m multiport --dports ${ports} ${q}`),
      ...chunks(tcp).map((ports) => `-d ${relay} -p tcp -m multiport --dports ${ports} ${q}`),
    ];
    rules.reply = [
      ...chunks(udp).map((ports) => `-p udp -m multiport --sports ${ports} ${q}`),
      ...chunks(tcp).map((ports) => `-s ${relay} -p tcp -m multiport --sports ${ports} ${q}`),
    ];
  }
  return rules;
}

/** The chains a spec needs. */
export function neededChains(spec: SteeringSpec): Set<ChainId> {
  return new Set(Object.keys(renderChainRules(spec)) as ChainId[]);
}

/**
 * An iptables-restore script (for `--noflush`) that fills the chains `spec` needs: those in
 * `installed` are replaced in place (declaring a chain empties it, in the same transaction, so
 * no packet sees it missing), the others are created and jumped to.
 */
export function renderRestoreScript(
  spec: SteeringSpec,
  installed: ReadonlySet<ChainId> = new Set(),
): string {
  const rules = renderChainRules(spec);
  const ids = (Object.keys(CHAINS) as ChainId[]).filter((id) => rules[id] !== undefined);
  const lines: string[] = [];
  for (const table of new Set(ids.map((id) => CHAINS[id].table))) {
    lines.push(`*${table}`);
    const here = ids.filter((id) => CHAINS[id].table === table);
    for (const id of here) lines.push(`:${CHAINS[id].chain} - [0:0]`);
    for (const id of here) {
      for (const rule of rules[id]!) lines.push(`-A ${CHAINS[id].chain} ${rule}`);
    }
    for (const id of here) {
      if (!installed.has(id)) lines.push(`-I ${CHAINS[id].from} 1 ${jumpArgs(CHAINS[id])}`);
    }
    lines.push("COMMIT");
  }
  return lines.length > 0 ? lines.join("\n") + "\n" : "";
}

function jumpArgs(c: KrelayChain): string {
  return c.jump === "" ? `-j ${c.chain}` : `${c.jump} -j ${c.chain}`;
}

/**
 * iptables argument lists that remove krelay's chains (those named, or all). Each may fail
 * harmlessly when there is nothing to remove; each jump deletion (one per form a jump has had,
 * the commented one of earlier versions included) is repeated by the caller until it fails,
 * since a crashed run may have left more than one.
 */
export function removalCommands(
  ids: Iterable<ChainId> = Object.keys(CHAINS) as ChainId[],
): { jumps: string[][]; flush: string[]; remove: string[] }[] {
  return [...ids].map((id) => {
    const { table, chain, from } = CHAINS[id];
    // Its own form, and in either table the unmarked and commented forms of earlier versions
    // (which jumped to mangle KRELAY_PRE unmarked too).
    const own = jumpArgs(CHAINS[id]);
    const forms = [
      `-j ${chain}`,
      own === `-j ${chain}` ? `${UDP_FIRST} -j ${chain}` : own,
      `-m comment --comment krelay -j ${chain}`,
    ];
    return {
      jumps: forms.map((form) => ["-w", "-t", table, "-D", from, ...form.split(" ")]),
      flush: ["-w", "-t", table, "-F", chain],
      remove: ["-w", "-t", table, "-X", chain],
    };
  });
}
