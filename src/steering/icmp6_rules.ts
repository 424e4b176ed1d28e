/**
 * ICMPv6 errors of relayed flows, as kernel NAT handles them: IPv6 routers do not fragment, so
 * a "packet too big" that does not reach the socket or host that sent the packet is a flow
 * that stalls for good. Rules of the `ip6 krelay` table (nft.ts):
 *
 * An error quotes the start of the packet it is about, right after its 8-byte header (`@th`
 * is the ICMPv6 header; the quoted IPv6 header starts at byte 8, its next header at 14, its
 * source at 16 and destination at 32, and the quoted ports at 48 and 50, bytes from `@th`).
 * Quotes with extension headers are left alone.
 *
 * - TCP (T3): the relay's connection to the server is bound to the client's address, so an
 *   error about it (from a router on the way, or the server) is addressed to the client:
 *   quoted TCP to the real server's service port is readdressed to the relay, like T4's
 *   segments (`delivered`: at once, or after conntrack in chain `answers`), and the kernel
 *   hands it to the relay's socket, which the quoted header names (its path MTU drops).
 * - UDP: an error about a request now addressed to the server (from the server side, or the
 *   relay's own as a router) must reach the client as one about its request to the relay; one
 *   from the client side about a reply the relay sent must reach the server as one about its
 *   own reply. That rewrites the quoted packet, and nft cannot update the ICMPv6 checksum for
 *   it: such errors get {@link ICMP6_MARK} and go to the table's queue chain (queue_chain.ts)
 *   for krelay, which translates them (nat/icmp6_errors.ts).
 *
 * Errors about the client's connection to the relay (T1/T2) are the relay's own: the kernel
 * handles them.
 *
 * @module
 */

import type { SteeringSpec } from "./steering.ts";
import { ICMP6_MARK } from "./marks.ts";
import { TO_QUEUE } from "./queue_chain.ts";

/** The ICMPv6 error types: each quotes the packet it is about. */
const ERRORS = "icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, " +
  "parameter-problem }";

/** Fields of the quoted packet, as raw payload from the ICMPv6 header. */
const QUOTED = {
  nextHeader: "@th,112,8",
  src: "@th,128,128",
  dst: "@th,256,128",
  srcPort: "@th,384,16",
  dstPort: "@th,400,16",
} as const;

/** An IPv6 address as a 128-bit hexadecimal constant, for raw payload matches. */
export function hex128(address: Uint8Array): string {
  return "0x" + [...address].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Extra rules of each chain for ICMPv6 errors. */
export interface Icmp6Rules {
  divert: string[];
  icmp_out: string[];
}

/**
 * The rules for `spec` (relayIp IPv6, as ipv6Spec gives it), with the relay's address and the
 * IPv6 servers' as 16 bytes (`relay`, `servers`) for the quoted fields (a rule per server);
 * `udpPorts`: those relayed by NAT (the kernel's and the scripted services', krelay's own);
 * `delivered`: how an error about the relay's TCP connection reaches its socket (nft.ts).
 */
export function renderIcmp6Rules(
  spec: SteeringSpec,
  relay: Uint8Array,
  servers: readonly Uint8Array[],
  udpPorts: readonly number[],
  delivered: string,
): Icmp6Rules {
  const rules: Icmp6Rules = { divert: [], icmp_out: [] };
  const set = (ports: readonly number[]) => `{ ${ports.join(", ")} }`;
  const hex = (n: number) => `0x${n.toString(16)}`;
  const R = hex128(relay), S = servers.map(hex128);
  if (spec.tcpPorts.length > 0) {
    rules.divert.push(
      ...S.map((s) =>
        `${ERRORS} ${QUOTED.nextHeader} 6 ${QUOTED.dst} ${s} ${QUOTED.dstPort} ` +
        `${set(spec.tcpPorts)} ${delivered}`
      ),
    );
  }
  if (udpPorts.length > 0) {
    const ports = set(udpPorts);
    const mark = `meta mark set ${hex(ICMP6_MARK)}`;
    const requests = S.map((s) =>
      `${ERRORS} ${QUOTED.nextHeader} 17 ${QUOTED.dst} ${s} ${QUOTED.dstPort} ${ports}`
    );
    rules.divert.push(
      ...requests.map((r) => `${r} ${mark} ${TO_QUEUE}`),
      `ip6 daddr ${spec.relayIp} ${ERRORS} ${QUOTED.nextHeader} 17 ${QUOTED.src} ${R} ` +
        `${QUOTED.srcPort} ${ports} ${mark} ${TO_QUEUE}`,
    );
    rules.icmp_out.push(...requests.map((r) => `${r} ${mark} ${TO_QUEUE}`));
  }
  return rules;
}
