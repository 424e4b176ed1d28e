/**
 * A zero-copy view over an IPv4 datagram with its TCP or UDP header: read fields, rewrite
 * addresses and ports with checksums kept right.
 *
 * Checksums are updated incrementally (RFC 1624) on every change. When the kernel hands a
 * packet whose L4 checksum is only partial (CHECKSUM_PARTIAL, see
 * {@link Ipv4Packet.checksumPartial}), an incremental update would be wrong: the kernel
 * treats a mangled packet's checksum as final. Such a packet gets a full L4 checksum in
 * {@link Ipv4Packet.finalize}.
 *
 * @example
 * ```ts
 * import { parseIpv4Packet, Ipv4Packet } from "./ipv4_packet.ts";
 * import { parseIpv4 } from "./address.ts";
 * declare const bytes: Uint8Array;
 * const p = parseIpv4Packet(bytes);
 * if (p instanceof Ipv4Packet && p.hasPorts) {
 *   p.setDst(parseIpv4("203.0.113.10"));
 *   p.finalize();
 * }
 * ```
 * @module
 */

import { internetChecksum, pseudoHeaderSum, updateChecksum32 } from "./checksum.ts";
import { IpProtocol, L4Packet, Malformed, portsHeaderFits } from "./l4_packet.ts";

export { IpProtocol, Malformed, TcpFlag } from "./l4_packet.ts";
export type { MalformedReason } from "./l4_packet.ts";

const IP_CHECK = 10;
const IP_SRC = 12;
const IP_DST = 16;

/** A parsed IPv4 datagram. Create it with {@link parseIpv4Packet}. */
export class Ipv4Packet extends L4Packet {
  /** Source address. */
  get src(): number {
    return this.view.getUint32(IP_SRC);
  }
  /** Destination address. */
  get dst(): number {
    return this.view.getUint32(IP_DST);
  }

  /** Rewrites the source address; IP and L4 checksums follow. */
  setSrc(addr: number): void {
    this.#setAddress(IP_SRC, addr >>> 0);
  }
  /** Rewrites the destination address; IP and L4 checksums follow. */
  setDst(addr: number): void {
    this.#setAddress(IP_DST, addr >>> 0);
  }

  /** Recomputes the IP header checksum from scratch. */
  recomputeIpChecksum(): void {
    this.view.setUint16(IP_CHECK, 0);
    this.view.setUint16(IP_CHECK, internetChecksum(this.bytes, 0, this.l4Offset));
  }

  /** Recomputes the TCP/UDP checksum over pseudo-header, header and payload. */
  recomputeL4Checksum(): void {
    if (!this.hasPorts || this.isFragment) return;
    const at = this.l4ChecksumOffset;
    const length = this.bytes.length - this.l4Offset;
    this.view.setUint16(at, 0);
    const seed = pseudoHeaderSum(this.src, this.dst, this.protocol, length);
    this.storeL4Checksum(at, internetChecksum(this.bytes, this.l4Offset, this.bytes.length, seed));
  }

  /** UDP checksum 0 means "none": it stays none. */
  protected keepsNoChecksum(check: number): boolean {
    return check === 0 && this.protocol === IpProtocol.UDP;
  }

  #setAddress(at: number, addr: number): void {
    const old = this.view.getUint32(at);
    if (old === addr) return;
    this.view.setUint32(at, addr);
    this.view.setUint16(IP_CHECK, updateChecksum32(this.view.getUint16(IP_CHECK), old, addr));
    if (this.hasPorts) this.l4Changed(old, addr, true);
  }
}

/**
 * Parses `bytes` as an IPv4 datagram. Never throws and never reads outside `bytes`: bad
 * input gives a {@link Malformed} with the reason. Bytes past the IP total length are
 * left out of the view.
 *
 * @param checksumPartial the kernel reported the L4 checksum as not final.
 */
export function parseIpv4Packet(
  bytes: Uint8Array,
  checksumPartial = false,
): Ipv4Packet | Malformed {
  if (bytes.length < 20) return new Malformed("too-short");
  if (bytes[0] >>> 4 !== 4) return new Malformed("not-ipv4");
  const ihl = (bytes[0] & 0x0f) * 4;
  if (ihl < 20 || ihl > bytes.length) return new Malformed("bad-header-length");
  let total = (bytes[2] << 8) | bytes[3];
  // A GSO super-packet past 64 KiB carries total length 0 (BIG TCP); take what was copied.
  if (total === 0 && bytes.length > 0xffff) total = bytes.length;
  if (total < ihl || total > bytes.length) return new Malformed("bad-total-length");
  const datagram = total === bytes.length ? bytes : bytes.subarray(0, total);
  const protocol = bytes[9];
  const flagsOffset = (bytes[6] << 8) | bytes[7];
  const moreFragments = (flagsOffset & 0x2000) !== 0;
  const fragmentOffset = flagsOffset & 0x1fff;
  const isFragment = moreFragments || fragmentOffset !== 0;
  const hasPorts = (protocol === IpProtocol.TCP || protocol === IpProtocol.UDP) &&
    fragmentOffset === 0;
  if (hasPorts && !portsHeaderFits(bytes, ihl, total - ihl, protocol)) {
    return new Malformed("truncated-l4-header");
  }
  const view = new DataView(datagram.buffer, datagram.byteOffset, datagram.byteLength);
  return new Ipv4Packet(datagram, ihl, protocol, isFragment, hasPorts, checksumPartial, view);
}
