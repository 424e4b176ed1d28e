/**
 * What an IPv6 host answers a TCP SYN it will not take: an RST (nothing listens on the port),
 * or an ICMPv6 destination unreachable (RFC 4443 3.1). Built from the SYN itself, from its
 * destination to its source, with the checksums over the IPv6 pseudo-header. For the SYN gate
 * (relay/syn_gate.ts), which answers as the server did.
 *
 * @module
 */

import { internetChecksum } from "./checksum.ts";
import { Ipv6Header, pseudoHeaderSum6 } from "./ipv6_packet.ts";

const HEADER = 40;
/** An ICMPv6 error, with what it quotes, fits the IPv6 minimum MTU. */
const MIN_MTU = 1280;

/** A fixed IPv6 header from `syn`'s destination to its source, hop limit 64. */
function header(syn: Uint8Array, out: Uint8Array, next: number): DataView {
  const v = new DataView(out.buffer, out.byteOffset, out.byteLength);
  v.setUint32(0, 0x60000000);
  v.setUint16(4, out.length - HEADER);
  out[6] = next;
  out[7] = 64;
  out.set(syn.subarray(24, 40), 8);
  out.set(syn.subarray(8, 24), 24);
  return v;
}

/**
 * The RST|ACK that refuses `syn` (an IPv6 TCP SYN with no extension headers): from its
 * destination and port to its source and port, acknowledging the SYN, as Linux sends.
 */
export function buildTcpReset6(syn: Uint8Array): Uint8Array {
  const s = new DataView(syn.buffer, syn.byteOffset, syn.byteLength);
  const out = new Uint8Array(HEADER + 20);
  const v = header(syn, out, Ipv6Header.TCP);
  v.setUint16(HEADER, s.getUint16(HEADER + 2));
  v.setUint16(HEADER + 2, s.getUint16(HEADER));
  v.setUint32(HEADER + 4, 0);
  v.setUint32(HEADER + 8, (s.getUint32(HEADER + 4) + 1) >>> 0);
  v.setUint8(HEADER + 12, 5 << 4);
  // RST | ACK.
  v.setUint8(HEADER + 13, 0x14);
  const seed = pseudoHeaderSum6(out, Ipv6Header.TCP, 20);
  v.setUint16(HEADER + 16, internetChecksum(out, HEADER, out.length, seed));
  return out;
}

/**
 * An ICMPv6 destination unreachable about `packet`, from its destination to its source:
 * `code` 0 no route (ENETUNREACH at the sender), 3 address unreachable (EHOSTUNREACH).
 */
export function buildUnreachable6(packet: Uint8Array, code: number): Uint8Array {
  const quoted = packet.subarray(0, Math.min(packet.length, MIN_MTU - HEADER - 8));
  const out = new Uint8Array(HEADER + 8 + quoted.length);
  const v = header(packet, out, Ipv6Header.ICMPv6);
  v.setUint8(HEADER, 1);
  v.setUint8(HEADER + 1, code);
  out.set(quoted, HEADER + 8);
  const seed = pseudoHeaderSum6(out, Ipv6Header.ICMPv6, out.length - HEADER);
  v.setUint16(HEADER + 2, internetChecksum(out, HEADER, out.length, seed));
  return out;
}
