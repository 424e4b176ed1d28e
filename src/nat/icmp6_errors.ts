/**
 * ICMPv6 errors about relayed UDP flows, translated as kernel NAT translates them (the ip6
 * table marks them and an ip6tables rule queues them: steering/icmp6_rules.ts). An error
 * quotes the packet it is about after its 8-byte header; the quote is rewritten to be about
 * the packet its receiver sent, and the ICMPv6 checksum computed again:
 *
 * - request way: a request (client -> relay:port, sent on to server:port) met an error on the
 *   server's side, or at the relay itself: the quote's destination becomes the relay's
 *   address, and, when the server sent the error, so does the error's source. The client's
 *   socket, connected to relay:port, then hears of it (port unreachable, packet too big).
 * - reply way: a reply (server:port -> client, sent on from relay:port) met an error on the
 *   client's side, addressed to the relay: the quote's source and the error's destination
 *   become the server's, and the error goes on to the server: the flow's own, which the
 *   caller knows (`serverOf`: krelay's record of the flow, nat/udp6_flows.ts), or else the
 *   one IPv6 server when there is one.
 *
 * The quoted UDP checksum follows its pseudo-header's address. Quotes with extension headers,
 * or of other flows, are left alone. The flows of services with a packet script are
 * translated alike: `udpPorts` has their ports too.
 *
 * @module
 */

import { IpProtocol } from "../packet/ipv4_packet.ts";
import { Ipv6Header, type Ipv6Packet } from "../packet/ipv6_packet.ts";
import { formatIpv6, parseIpv6 } from "../packet/ipv6_address.ts";
import { updateChecksum16 } from "../packet/checksum.ts";

/** What the translation needs: the IPv6 relay address and real servers, the NATed ports. */
export interface Icmp6Settings {
  relayIp6?: string;
  /** The IPv6 servers (entries with their address). */
  pool6?: { readonly servers: readonly { readonly address?: string }[] };
  udpPorts: ReadonlySet<number>;
}

/** The server of the flow client:clientPort -> relay:servicePort, if known. */
export type Flow6Server = (
  client: string,
  clientPort: number,
  servicePort: number,
) => string | undefined;

/** ICMPv6 error types (RFC 4443): destination unreachable .. parameter problem. */
const FIRST_ERROR = 1, LAST_ERROR = 4;
/** Offsets in the ICMPv6 message: the quoted IPv6 header and its fields. */
const QUOTE = 8;
const Q_NEXT = QUOTE + 6, Q_SRC = QUOTE + 8, Q_DST = QUOTE + 24, Q_L4 = QUOTE + 40;

function equal16(bytes: Uint8Array, at: number, address: Uint8Array): boolean {
  for (let i = 0; i < 16; i++) if (bytes[at + i] !== address[i]) return false;
  return true;
}

/** Writes `address` at `at`, keeping the quoted UDP checksum (at `check`, if quoted) right. */
function rewrite(bytes: Uint8Array, at: number, address: Uint8Array, check: number): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // 0 means "no checksum" in a quoted UDP header: leave such a one alone.
  const keep = check + 2 <= bytes.length && view.getUint16(check) !== 0;
  let sum = keep ? view.getUint16(check) : 0;
  for (let i = 0; i < 16; i += 2) {
    const old = view.getUint16(at + i);
    const next = (address[i] << 8) | address[i + 1];
    if (keep) sum = updateChecksum16(sum, old, next);
    view.setUint16(at + i, next);
  }
  if (keep) view.setUint16(check, sum === 0 ? 0xffff : sum);
}

/**
 * Translates `packet` in place when it is an ICMPv6 error about a relayed UDP flow; returns
 * whether it did (the caller then accepts it rewritten). `serverOf` finds a flow's server for
 * an error about a reply.
 */
export function translateIcmp6Error(
  packet: Ipv6Packet,
  s: Icmp6Settings,
  serverOf: Flow6Server = () => undefined,
): boolean {
  const servers = s.pool6?.servers ?? [];
  if (s.relayIp6 === undefined || servers.length === 0) return false;
  if (packet.protocol !== Ipv6Header.ICMPv6 || packet.isFragment) return false;
  const m = packet.bytes.subarray(packet.l4Offset);
  if (m.length < Q_L4 + 8 || m[0] < FIRST_ERROR || m[0] > LAST_ERROR) return false;
  if (m[Q_NEXT] !== IpProtocol.UDP) return false;
  const relay = parseIpv6(s.relayIp6);
  const quotedSrcPort = (m[Q_L4] << 8) | m[Q_L4 + 1];
  const quotedDstPort = (m[Q_L4 + 2] << 8) | m[Q_L4 + 3];
  const quotedCheck = packet.l4Offset + Q_L4 + 6;
  const at = packet.l4Offset;
  const quotedServer = servers.find((sv) => equal16(m, Q_DST, parseIpv6(sv.address ?? "::")));
  if (quotedServer !== undefined && s.udpPorts.has(quotedDstPort)) {
    if (equal16(packet.bytes, 8, parseIpv6(quotedServer.address!))) packet.setSrc(relay);
    rewrite(packet.bytes, at + Q_DST, relay, quotedCheck);
  } else if (
    equal16(packet.bytes, 24, relay) && equal16(m, Q_SRC, relay) && s.udpPorts.has(quotedSrcPort)
  ) {
    const flowServer = serverOf(formatIpv6(m, Q_DST), quotedDstPort, quotedSrcPort) ??
      (servers.length === 1 ? servers[0].address : undefined);
    if (flowServer === undefined) return false;
    const server = parseIpv6(flowServer);
    packet.setDst(server);
    rewrite(packet.bytes, at + Q_SRC, server, quotedCheck);
  } else return false;
  packet.recomputeL4Checksum();
  return true;
}
