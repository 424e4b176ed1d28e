/**
 * Builds well-formed IPv4 UDP and TCP datagrams with correct checksums: for tests,
 * benchmarks and scripts that craft packets.
 *
 * @example
 * ```ts
 * import { buildUdpPacket } from "./build.ts";
 * import { parseIpv4 } from "./address.ts";
 * const bytes = buildUdpPacket({
 *   src: parseIpv4("198.51.100.10"), dst: parseIpv4("198.51.100.1"),
 *   srcPort: 40000, dstPort: 53, payload: new Uint8Array([1, 2, 3]),
 * });
 * ```
 * @module
 */

import { internetChecksum, pseudoHeaderSum } from "./checksum.ts";
import { IpProtocol } from "./ipv4_packet.ts";

/** Fields of a datagram to build. */
export interface PacketSpec {
  src: number;
  dst: number;
  srcPort: number;
  dstPort: number;
  payload?: Uint8Array;
  /** IP identification (default 0). */
  id?: number;
  /** TTL (default 64). */
  ttl?: number;
  /** Raw flags+fragment-offset field (default 0x4000: don't fragment). */
  flagsOffset?: number;
}

/** TCP-specific fields. */
export interface TcpSpec extends PacketSpec {
  seq?: number;
  ack?: number;
  /** TCP flag bits (default ACK). */
  flags?: number;
  window?: number;
}

function ipHeader(out: Uint8Array, spec: PacketSpec, protocol: number): DataView {
  const v = new DataView(out.buffer, out.byteOffset, out.byteLength);
  v.setUint8(0, 0x45);
  v.setUint16(2, out.length);
  v.setUint16(4, spec.id ?? 0);
  v.setUint16(6, spec.flagsOffset ?? 0x4000);
  v.setUint8(8, spec.ttl ?? 64);
  v.setUint8(9, protocol);
  v.setUint32(12, spec.src >>> 0);
  v.setUint32(16, spec.dst >>> 0);
  v.setUint16(10, internetChecksum(out, 0, 20));
  return v;
}

/** An IPv4 UDP datagram with a correct UDP checksum (never 0). */
export function buildUdpPacket(spec: PacketSpec): Uint8Array {
  const payload = spec.payload ?? new Uint8Array();
  const out = new Uint8Array(28 + payload.length);
  const v = ipHeader(out, spec, IpProtocol.UDP);
  v.setUint16(20, spec.srcPort);
  v.setUint16(22, spec.dstPort);
  v.setUint16(24, 8 + payload.length);
  out.set(payload, 28);
  const seed = pseudoHeaderSum(spec.src >>> 0, spec.dst >>> 0, IpProtocol.UDP, 8 + payload.length);
  v.setUint16(26, internetChecksum(out, 20, out.length, seed) || 0xffff);
  return out;
}

/** An IPv4 TCP segment (20-byte header, no options) with a correct checksum. */
export function buildTcpPacket(spec: TcpSpec): Uint8Array {
  const payload = spec.payload ?? new Uint8Array();
  const out = new Uint8Array(40 + payload.length);
  const v = ipHeader(out, spec, IpProtocol.TCP);
  v.setUint16(20, spec.srcPort);
  v.setUint16(22, spec.dstPort);
  v.setUint32(24, spec.seq ?? 0);
  v.setUint32(28, spec.ack ?? 0);
  v.setUint8(32, 5 << 4);
  v.setUint8(33, spec.flags ?? 0x10);
  v.setUint16(34, spec.window ?? 65535);
  out.set(payload, 40);
  const seed = pseudoHeaderSum(spec.src >>> 0, spec.dst >>> 0, IpProtocol.TCP, 20 + payload.length);
  v.setUint16(36, internetChecksum(out, 20, out.length, seed));
  return out;
}

/** Whether the IP header checksum and the TCP/UDP checksum of `bytes` verify. */
export function checksumsValid(bytes: Uint8Array): { ip: boolean; l4: boolean } {
  const ihl = (bytes[0] & 0x0f) * 4;
  const ip = internetChecksum(bytes, 0, ihl) === 0;
  const protocol = bytes[9];
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (protocol === IpProtocol.UDP && v.getUint16(ihl + 6) === 0) return { ip, l4: true };
  const seed = pseudoHeaderSum(v.getUint32(12), v.getUint32(16), protocol, bytes.length - ihl);
  return { ip, l4: internetChecksum(bytes, ihl, bytes.length, seed) === 0 };
}

/** Fields of an ICMP error to build. */
export interface IcmpErrorSpec {
  src: number;
  dst: number;
  type: number;
  code: number;
  /** Next-hop MTU (for "fragmentation needed"). */
  mtu?: number;
}

/** An IPv4 ICMP error carrying `about` (truncated to its IP header and 8 bytes by `quote`). */
export function buildIcmpError(spec: IcmpErrorSpec, about: Uint8Array, quote = about.length) {
  const quoted = about.subarray(0, Math.min(quote, about.length));
  const out = new Uint8Array(28 + quoted.length);
  const v = ipHeader(out, { ...spec, srcPort: 0, dstPort: 0, flagsOffset: 0 }, IpProtocol.ICMP);
  v.setUint8(20, spec.type);
  v.setUint8(21, spec.code);
  v.setUint16(26, spec.mtu ?? 0);
  out.set(quoted, 28);
  v.setUint16(22, internetChecksum(out, 20, out.length));
  return out;
}
