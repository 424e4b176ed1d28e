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

import {
  internetChecksum,
  pseudoHeaderSum,
  updateChecksum16,
  updateChecksum32,
} from "./checksum.ts";

/** IP protocol numbers krelay looks at. */
export const IpProtocol = { ICMP: 1, TCP: 6, UDP: 17 } as const;

/** TCP flag bits. */
export const TcpFlag = { FIN: 0x01, SYN: 0x02, RST: 0x04, PSH: 0x08, ACK: 0x10 } as const;

/** Why bytes were not accepted as a packet. */
export type MalformedReason =
  | "too-short"
  | "not-ipv4"
  | "not-ipv6"
  | "bad-header-length"
  | "bad-total-length"
  | "truncated-l4-header";

/** A packet that failed to parse, with the reason. */
export class Malformed {
  constructor(readonly reason: MalformedReason) {}
}

const IP_CHECK = 10;
const IP_SRC = 12;
const IP_DST = 16;

/** A parsed IPv4 datagram. Create it with {@link parseIpv4Packet}. */
export class Ipv4Packet {
  /** True when a rewrite changed something covered by the L4 checksum. */
  #l4Dirty = false;

  /** @internal use {@link parseIpv4Packet} */
  constructor(
    /** The datagram, from the IP header to the end of the IP total length. */
    readonly bytes: Uint8Array,
    /** Offset of the TCP/UDP header (the IP header length). */
    readonly l4Offset: number,
    /** IP protocol number. */
    readonly protocol: number,
    /** True for a fragment (more-fragments set, or a non-zero offset). */
    readonly isFragment: boolean,
    /** True when a TCP or UDP header is present and complete (not a non-first fragment). */
    readonly hasPorts: boolean,
    /** The L4 checksum is partial (the kernel completes it) and must be recomputed if changed. */
    readonly checksumPartial: boolean,
    private readonly view: DataView,
  ) {}

  /** Source address. */
  get src(): number {
    return this.view.getUint32(IP_SRC);
  }
  /** Destination address. */
  get dst(): number {
    return this.view.getUint32(IP_DST);
  }
  /** Source port (TCP/UDP only: check {@link hasPorts}). */
  get srcPort(): number {
    return this.view.getUint16(this.l4Offset);
  }
  /** Destination port (TCP/UDP only). */
  get dstPort(): number {
    return this.view.getUint16(this.l4Offset + 2);
  }
  /** TCP flags (FIN, SYN, RST, ...); 0 for other protocols. */
  get tcpFlags(): number {
    return this.protocol === IpProtocol.TCP && this.hasPorts ? this.bytes[this.l4Offset + 13] : 0;
  }
  /** Offset of the L4 checksum field. */
  get l4ChecksumOffset(): number {
    return this.l4Offset + (this.protocol === IpProtocol.TCP ? 16 : 6);
  }
  /** The TCP or UDP payload (a view). */
  get payload(): Uint8Array {
    if (!this.hasPorts) return this.bytes.subarray(this.l4Offset);
    const headerLength = this.protocol === IpProtocol.TCP
      ? (this.bytes[this.l4Offset + 12] >>> 4) * 4
      : 8;
    return this.bytes.subarray(this.l4Offset + headerLength);
  }

  /** Rewrites the source address; IP and L4 checksums follow. */
  setSrc(addr: number): void {
    this.#setAddress(IP_SRC, addr >>> 0);
  }
  /** Rewrites the destination address; IP and L4 checksums follow. */
  setDst(addr: number): void {
    this.#setAddress(IP_DST, addr >>> 0);
  }
  /** Rewrites the source port; the L4 checksum follows. */
  setSrcPort(port: number): void {
    this.#setPort(this.l4Offset, port);
  }
  /** Rewrites the destination port; the L4 checksum follows. */
  setDstPort(port: number): void {
    this.#setPort(this.l4Offset + 2, port);
  }

  /** Call after the last change: gives a partial-checksum packet its full L4 checksum. */
  finalize(): void {
    if (this.checksumPartial && this.#l4Dirty) this.recomputeL4Checksum();
    this.#l4Dirty = false;
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
    let check = internetChecksum(this.bytes, this.l4Offset, this.bytes.length, seed);
    if (check === 0 && this.protocol === IpProtocol.UDP) check = 0xffff;
    this.view.setUint16(at, check);
  }

  #setAddress(at: number, addr: number): void {
    const old = this.view.getUint32(at);
    if (old === addr) return;
    this.view.setUint32(at, addr);
    this.view.setUint16(IP_CHECK, updateChecksum32(this.view.getUint16(IP_CHECK), old, addr));
    if (this.hasPorts) this.#updateL4(old, addr, true);
  }

  #setPort(at: number, port: number): void {
    if (!this.hasPorts) throw new Error("packet has no ports");
    const old = this.view.getUint16(at);
    if (old === port) return;
    this.view.setUint16(at, port);
    this.#updateL4(old, port, false);
  }

  #updateL4(old: number, value: number, wide: boolean): void {
    // A non-first fragment carries no L4 header; a first one's checksum covers the whole
    // datagram, which an incremental update still keeps right.
    this.#l4Dirty = true;
    if (this.checksumPartial) return;
    const at = this.l4ChecksumOffset;
    const check = this.view.getUint16(at);
    // UDP checksum 0 means "none": it stays none.
    if (check === 0 && this.protocol === IpProtocol.UDP) return;
    let next = wide ? updateChecksum32(check, old, value) : updateChecksum16(check, old, value);
    if (next === 0 && this.protocol === IpProtocol.UDP) next = 0xffff;
    this.view.setUint16(at, next);
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
  let hasPorts = false;
  if ((protocol === IpProtocol.TCP || protocol === IpProtocol.UDP) && fragmentOffset === 0) {
    const room = total - ihl;
    if (protocol === IpProtocol.UDP) {
      if (room < 8) return new Malformed("truncated-l4-header");
    } else {
      if (room < 20) return new Malformed("truncated-l4-header");
      const doff = (bytes[ihl + 12] >>> 4) * 4;
      if (doff < 20 || doff > room) return new Malformed("truncated-l4-header");
    }
    hasPorts = true;
  }
  const view = new DataView(datagram.buffer, datagram.byteOffset, datagram.byteLength);
  return new Ipv4Packet(datagram, ihl, protocol, isFragment, hasPorts, checksumPartial, view);
}
