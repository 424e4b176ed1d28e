/**
 * The kernel's part of kernel_nat mode, as an nftables table of krelay's own (`ip krelay`):
 *
 * - chain `pre` (nat, dstnat): requests to relay:udp-port are DNATed to the real server
 *   (U1/U2; conntrack undoes it for the replies, U3/U4).
 * - chain `divert` (filter, raw priority, before conntrack and routing): a client's SYN to
 *   relay:tcp-port
 *   goes by TPROXY to the gateway port's transparent listener, unchanged: the accepted socket's
 *   local address is where the client meant to go (T1/T2 without rewriting). The relay's own
 *   socket to the server is transparent too and bound to the client's address (T3), so the
 *   server's answers are addressed to the client: the `socket transparent 1` rule finds that
 *   socket and marks them for the local route of tproxy_route.ts (T4).
 *
 * - with tcp_conntrack false, the four legs of relayed TCP (T1-T4) are exempt from conntrack
 *   (notrack): the two incoming ones by `divert`'s own rules, the two outgoing ones by chain
 *   `untrack_out` (output, raw priority). The relay's sockets are recognised by their
 *   transparency, so other traffic keeps its tracking.
 *
 * One prerouting chain does it all: each base chain is one more hook every packet passes, and
 * the answers from servers need one socket lookup, not two (measured: 1.1x the connection rate
 * of HAProxy behind the same rules with separate mangle and raw chains).
 *
 * Nothing is NATed for TCP: no SNAT map, no per-client state in the kernel's rules. Established
 * flows keep their sockets when the configuration changes; new flows follow the new rules.
 *
 * @module
 */

import type { SteeringSpec } from "./iptables_rules.ts";
import { TPROXY_MARK } from "./tproxy_route.ts";

/** The table's name (family ip). */
export const NFT_TABLE = "krelay";

function set(ports: readonly number[]): string {
  return `{ ${ports.join(", ")} }`;
}

/** The rules of each chain, as `add rule` bodies. */
export interface NatRules {
  pre: string[];
  divert: string[];
  untrack_out: string[];
}

/** The chains, their hooks and priorities, in the order they are declared. */
const CHAINS: readonly [keyof NatRules, string][] = [
  ["pre", "type nat hook prerouting priority dstnat"],
  ["divert", "type filter hook prerouting priority raw"],
  ["untrack_out", "type filter hook output priority raw"],
];

/** The chains a spec's table has: the untrack one only without tcp_conntrack (not live). */
function chainsOf(spec: SteeringSpec): readonly [keyof NatRules, string][] {
  return spec.tcpConntrack ? CHAINS.slice(0, 2) : CHAINS;
}

/** The rules of the table's chains. */
export function renderNatRules(spec: SteeringSpec): NatRules {
  const rules: NatRules = { pre: [], divert: [], untrack_out: [] };
  if (spec.udpPorts.length > 0) {
    const ports = set(spec.udpPorts);
    rules.pre.push(`ip daddr ${spec.relayIp} udp dport ${ports} dnat to ${spec.realIp}`);
  }
  if (spec.tcpPorts.length === 0) return rules;
  const ports = set(spec.tcpPorts);
  // T1 client -> relay:port and T4 server -> client:y are untracked where they are diverted;
  // notrack comes first, so that it holds even when tproxy finds no socket and ends the rule.
  const notrack = spec.tcpConntrack ? "" : "notrack ";
  const mark = `meta mark set 0x${TPROXY_MARK.toString(16)} accept`;
  // The server answers from the service port; the lookup finds the relay's socket, if any.
  rules.divert.push(`tcp sport ${ports} socket transparent 1 ${notrack}${mark}`);
  rules.divert.push(
    `ip daddr ${spec.relayIp} tcp dport ${ports} ${notrack}tproxy to :${spec.gport} ${mark}`,
  );
  if (!spec.tcpConntrack) {
    // T2 relay:port -> client; T3 the relay's socket (client:y) -> server.
    rules.untrack_out.push(`ip saddr ${spec.relayIp} tcp sport ${ports} notrack`);
    rules.untrack_out.push(`tcp dport ${ports} socket transparent 1 notrack`);
  }
  return rules;
}

/** An `nft -f` script creating the table (apply after deleting any older one). */
export function renderNatTable(spec: SteeringSpec): string {
  const rules = renderNatRules(spec);
  const lines = [`table ip ${NFT_TABLE} {`];
  for (const [chain, hook] of chainsOf(spec)) {
    lines.push(`  chain ${chain} {`, `    ${hook}; policy accept;`);
    lines.push(...rules[chain].map((r) => `    ${r}`), "  }");
  }
  lines.push("}", "");
  return lines.join("\n");
}

/** An `nft -f` script replacing the chains' rules in one transaction. */
export function renderNatUpdate(spec: SteeringSpec): string {
  const rules = renderNatRules(spec);
  const chains = chainsOf(spec);
  const lines = chains.map(([chain]) => `flush chain ip ${NFT_TABLE} ${chain}`);
  for (const [chain] of chains) {
    lines.push(...rules[chain].map((r) => `add rule ip ${NFT_TABLE} ${chain} ${r}`));
  }
  lines.push("");
  return lines.join("\n");
}
