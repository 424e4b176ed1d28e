/**
 * The kernel's NAT for kernel_nat mode, as an nftables table of krelay's own (`ip krelay`):
 *
 * - prerouting (dstnat): requests to relay:udp-port are DNATed to the real server (U1/U2);
 *   connections to relay:tcp-port are REDIRECTed to the gateway port (T1; conntrack undoes it
 *   on the way back, T2).
 * - postrouting (srcnat): the relay's connections from its own ports get the client's address
 *   as source (T3; conntrack undoes it for the answers, T4). The address comes from the
 *   packet's mark, which krelay sets on the connection's SYN to the client's address, through
 *   the map `clients` (mark -> address), which krelay fills as clients appear.
 *
 * Conntrack keeps each flow's binding, so established flows keep their server and gateway port
 * when the configuration changes; new flows follow the new rules.
 *
 * @module
 */

import { formatIpv4 } from "../packet/address.ts";
import type { SteeringSpec } from "./iptables_rules.ts";

/** The table's name (family ip). */
export const NFT_TABLE = "krelay";

function set(ports: readonly number[]): string {
  return `{ ${ports.join(", ")} }`;
}

/** The rules of the two chains, as `add rule` bodies. */
export function renderNatRules(spec: SteeringSpec): { pre: string[]; post: string[] } {
  const pre: string[] = [];
  if (spec.udpPorts.length > 0) {
    pre.push(`ip daddr ${spec.relayIp} udp dport ${set(spec.udpPorts)} dnat to ${spec.realIp}`);
  }
  if (spec.tcpPorts.length > 0) {
    pre.push(`ip daddr ${spec.relayIp} tcp dport ${set(spec.tcpPorts)} redirect to :${spec.gport}`);
  }
  const pool = `${spec.relayPorts[0]}-${spec.relayPorts[1]}`;
  const post = spec.tcpPorts.length > 0
    ? [`tcp sport ${pool} meta mark != 0 snat to meta mark map @clients`]
    : [];
  return { pre, post };
}

/** An `nft -f` script creating the table (apply after deleting any older one). */
export function renderNatTable(spec: SteeringSpec): string {
  const { pre, post } = renderNatRules(spec);
  return [
    `table ip ${NFT_TABLE} {`,
    "  map clients { type mark : ipv4_addr; }",
    "  chain pre {",
    "    type nat hook prerouting priority dstnat; policy accept;",
    ...pre.map((r) => `    ${r}`),
    "  }",
    "  chain post {",
    "    type nat hook postrouting priority srcnat; policy accept;",
    ...post.map((r) => `    ${r}`),
    "  }",
    "}",
    "",
  ].join("\n");
}

/** An `nft -f` script replacing the chains' rules in one transaction, keeping the map. */
export function renderNatUpdate(spec: SteeringSpec): string {
  const { pre, post } = renderNatRules(spec);
  return [
    `flush chain ip ${NFT_TABLE} pre`,
    `flush chain ip ${NFT_TABLE} post`,
    ...pre.map((r) => `add rule ip ${NFT_TABLE} pre ${r}`),
    ...post.map((r) => `add rule ip ${NFT_TABLE} post ${r}`),
    "",
  ].join("\n");
}

/** The `nft` arguments that map mark `client` to the address `client`. */
export function clientElementArgs(client: number): string[] {
  const mark = `0x${(client >>> 0).toString(16).padStart(8, "0")}`;
  return ["add", "element", "ip", NFT_TABLE, "clients", `{ ${mark} : ${formatIpv4(client)} }`];
}
