/**
 * The kernel's part of kernel_nat mode, as an nftables table of krelay's own (`ip krelay`):
 *
 * - chain `pre` (nat, dstnat): requests to relay:udp-port are DNATed to the real server
 *   (U1/U2; conntrack undoes it for the replies, U3/U4).
 * - chain `divert` (filter, mangle priority, before routing): a client's SYN to relay:tcp-port
 *   goes by TPROXY to the gateway port's transparent listener, unchanged: the accepted socket's
 *   local address is where the client meant to go (T1/T2 without rewriting). The relay's own
 *   socket to the server is transparent too and bound to the client's address (T3), so the
 *   server's answers are addressed to the client: the `socket transparent 1` rule finds that
 *   socket and marks them for the local route of tproxy_route.ts (T4).
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

/** The rules of the two chains, as `add rule` bodies. */
export function renderNatRules(spec: SteeringSpec): { pre: string[]; divert: string[] } {
  const pre: string[] = [];
  if (spec.udpPorts.length > 0) {
    pre.push(`ip daddr ${spec.relayIp} udp dport ${set(spec.udpPorts)} dnat to ${spec.realIp}`);
  }
  const divert: string[] = [];
  if (spec.tcpPorts.length > 0) {
    const mark = `meta mark set 0x${TPROXY_MARK.toString(16)} accept`;
    const ports = set(spec.tcpPorts);
    // The server answers from the service port; the lookup finds the relay's socket, if any.
    divert.push(`tcp sport ${ports} socket transparent 1 ${mark}`);
    divert.push(`ip daddr ${spec.relayIp} tcp dport ${ports} tproxy to :${spec.gport} ${mark}`);
  }
  return { pre, divert };
}

/** An `nft -f` script creating the table (apply after deleting any older one). */
export function renderNatTable(spec: SteeringSpec): string {
  const { pre, divert } = renderNatRules(spec);
  return [
    `table ip ${NFT_TABLE} {`,
    "  chain pre {",
    "    type nat hook prerouting priority dstnat; policy accept;",
    ...pre.map((r) => `    ${r}`),
    "  }",
    "  chain divert {",
    "    type filter hook prerouting priority mangle; policy accept;",
    ...divert.map((r) => `    ${r}`),
    "  }",
    "}",
    "",
  ].join("\n");
}

/** An `nft -f` script replacing the chains' rules in one transaction. */
export function renderNatUpdate(spec: SteeringSpec): string {
  const { pre, divert } = renderNatRules(spec);
  return [
    `flush chain ip ${NFT_TABLE} pre`,
    `flush chain ip ${NFT_TABLE} divert`,
    ...pre.map((r) => `add rule ip ${NFT_TABLE} pre ${r}`),
    ...divert.map((r) => `add rule ip ${NFT_TABLE} divert ${r}`),
    "",
  ].join("\n");
}
