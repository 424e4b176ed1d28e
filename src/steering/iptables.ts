/**
 * The iptables rules that steer exactly the relayed packets to krelay's queue, rendered as
 * an iptables-restore script. Pure: the applier in {@link ./iptables_steering.ts} runs it.
 *
 * Rules live in chains of krelay's own, jumped to from the built-in chains, so that removing
 * krelay is removing its jumps and chains, whatever else the machine's rules contain.
 *
 * - raw PREROUTING (before conntrack and routing): U1, requests to relay:udp-port; T1, the
 *   client's segments to relay:tcp-port; T4, the server's segments to the relay's own ports.
 *   Rewriting before conntrack sees the packet keeps conntrack consistent: it tracks the
 *   rewritten flow, and routing takes the packet where its new destination says.
 * - mangle POSTROUTING (after routing, before the packet leaves): U3, the server's forwarded
 *   replies, whose source is rewritten back to the relay; T2, the relay's segments from the
 *   gateway port; T3, the relay's segments to the server from its own ports.
 *
 * U3, T3 and T4 match ports (the service ports, the relay's own port range), not the real
 * server's address, so that flows opened before a change of real_ip keep working; the ports in
 * a spec are the configured ones plus those of live flows, so that a service removed from the
 * configuration keeps its established flows until they end.
 *
 * Every NFQUEUE rule has --queue-bypass: when krelay is not running, packets pass instead of
 * being dropped by an unserved queue.
 *
 * @module
 */

import { UDP_FIRST_MARK } from "./marks.ts";
import type { SteeringSpec } from "./steering.ts";

/** Chain names krelay owns, per table, and the built-in chain that jumps to each. */
export const KRELAY_CHAINS = [
  { table: "raw", chain: "KRELAY_PRE", from: "PREROUTING" },
  { table: "mangle", chain: "KRELAY_POST", from: "POSTROUTING" },
] as const;

/**
 * With the kernel's NAT (kernel_nat), the queue rule selects a UDP flow's first packet by the
 * mark nft_nat.ts's raw-priority chain gave it, so it sits after that chain: mangle PREROUTING.
 * Nothing is queued on the way out, and no TCP at all: TCP goes to the gateway listener by
 * sk_lookup or TPROXY (see nft_nat.ts).
 */
export const KERNEL_NAT_CHAINS = [
  { table: "mangle", chain: "KRELAY_PRE", from: "PREROUTING" },
] as const;

/** Every place a krelay chain may be, in either mode: what removal cleans. */
const ALL_CHAINS = [...KRELAY_CHAINS, KERNEL_NAT_CHAINS[0]];

/** What selects a UDP flow's first packet, marked by nft_nat.ts's raw-priority chain. */
const UDP_FIRST = `-p udp -m mark --mark 0x${UDP_FIRST_MARK.toString(16)}`;

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
  return `-m comment --comment ${RULE_COMMENT} -j NFQUEUE --queue-num ${queue} --queue-bypass`;
}

/** The rules of each krelay chain, as iptables arguments after `-A CHAIN`. */
export function renderChainRules(spec: SteeringSpec): Record<string, string[]> {
  const q = queueTarget(spec.queue);
  const pool = `${spec.relayPorts[0]}:${spec.relayPorts[1]}`;
  if (spec.kernelNat) {
    return { KRELAY_PRE: spec.udpPorts.length > 0 ? [`${UDP_FIRST} ${q}`] : [] };
  }
  return {
    KRELAY_PRE: [
      ...chunks(spec.udpPorts).map((ports) =>
        `-d ${spec.relayIp}/32 -p udp -m multiport --dports ${ports} ${q}`
      ),
      ...chunks(spec.tcpPorts).map((ports) =>
        `-d ${spec.relayIp}/32 -p tcp -m multiport --dports ${ports} ${q}`
      ),
      ...chunks(spec.tcpPorts).map((ports) =>
        `-p tcp -m tcp --dport ${pool} -m multiport --sports ${ports} ${q}`
      ),
    ],
    KRELAY_POST: [
      ...chunks(spec.udpPorts).map((ports) => `-p udp -m multiport --sports ${ports} ${q}`),
      ...chunks(spec.gports).map((ports) =>
        `-s ${spec.relayIp}/32 -p tcp -m multiport --sports ${ports} ${q}`
      ),
      ...chunks(spec.tcpPorts).map((ports) =>
        `-p tcp -m tcp --sport ${pool} -m multiport --dports ${ports} ${q}`
      ),
    ],
  };
}

/**
 * An iptables-restore script (for `--noflush`) that creates krelay's chains, fills them and,
 * with `jumps`, adds the jumps. Declaring a chain empties it, so without `jumps` the script
 * replaces the rules of installed chains in one transaction per table: no packet ever sees
 * them missing. With `jumps`, apply it only after {@link removalCommands}.
 */
export function renderRestoreScript(spec: SteeringSpec, jumps = true): string {
  const rules = renderChainRules(spec);
  const chains = spec.kernelNat ? KERNEL_NAT_CHAINS : KRELAY_CHAINS;
  const lines: string[] = [];
  for (const table of new Set(chains.map((c) => c.table))) {
    lines.push(`*${table}`);
    const here = chains.filter((c) => c.table === table);
    for (const { chain } of here) lines.push(`:${chain} - [0:0]`);
    for (const { chain } of here) {
      for (const rule of rules[chain]) lines.push(`-A ${chain} ${rule}`);
    }
    if (jumps) {
      for (const { chain, from } of here) lines.push(`-I ${from} 1 ${jumpSpec(spec)} ${chain}`);
    }
    lines.push("COMMIT");
  }
  return lines.join("\n") + "\n";
}

/**
 * The matches and target of a jump to a krelay chain, before the chain's name. Every packet
 * crossing the built-in chain meets the jump, so it carries no comment (a match of its own per
 * packet with iptables-nft; the chain's name says whose it is), and with kernel_nat only the
 * marked UDP first packets take it, the rest cost one comparison.
 */
function jumpSpec(spec: { kernelNat: boolean }): string {
  return spec.kernelNat ? `${UDP_FIRST} -j` : "-j";
}

/**
 * iptables argument lists that remove krelay's jumps and chains. Each may fail harmlessly when
 * there is nothing to remove; each jump deletion (one per form a jump has had: either mode's,
 * and the commented one of earlier versions) is repeated by the caller until it fails, since a
 * crashed run may have left more than one.
 */
export function removalCommands(): { jumps: string[][]; flush: string[]; remove: string[] }[] {
  const forms = [
    jumpSpec({ kernelNat: false }),
    jumpSpec({ kernelNat: true }),
    `-m comment --comment ${RULE_COMMENT} -j`,
  ];
  return ALL_CHAINS.map(({ table, chain, from }) => ({
    jumps: forms.map((form) => ["-w", "-t", table, "-D", from, ...form.split(" "), chain]),
    flush: ["-w", "-t", table, "-F", chain],
    remove: ["-w", "-t", table, "-X", chain],
  }));
}
