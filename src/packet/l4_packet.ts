/**
 * What an IPv4 and an IPv6 packet view share: the TCP/UDP/ICMP header above the IP layer. The
 * ports, TCP flags, payload and the L4 checksum's place read the same in both families; so do
 * port rewrites, whose checksum update does not involve the pseudo-header. ipv4_packet.ts and
 * ipv6_packet.ts extend {@link L4Packet} with their addresses and pseudo-headers.
 *
 * V8: the per-packet code calls these methods on one family's packets at a time; a getter here
 * sees at most the two classes' shapes (polymorphic, never megamorphic).
 *
 * @example
 * ```ts
 * import { parseIpv4Packet } from "./ipv4_packet.ts";
 * import { L4Packet } from "./l4_packet.ts";
 * declare const bytes: Uint8Array;
 * const p = parseIpv4Packet(bytes);
 * if (p instanceof L4Packet && p.hasPorts) p.setDstPort(8080);
 * ```
 * @module
 */

import { updateChecksum16, updateChecksum32 } from "./checksum.ts";

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

/**
 * Whether a TCP or UDP header of `protocol` at `at` is complete in the `room` bytes left: UDP's
 * 8 bytes, or TCP's 20 and its data offset. Other protocols have no ports: false.
 */
export function portsHeaderFits(
  bytes: Uint8Array,
  at: number,
  room: number,
  protocol: number,
): boolean {
  if (protocol === IpProtocol.UDP) return room >= 8;
  if (protocol !== IpProtocol.TCP || room < 20) return false;
  const doff = (bytes[at + 12] >>> 4) * 4;
  return doff >= 20 && doff <= room;
}

/** The upper-layer part of a parsed IPv4 or IPv6 packet. */
export abstract class L4Packet {
  /** True when a rewrite changed something covered by the L4 checksum. */
  protected l4Dirty = false;

  constructor(
    /** The packet, from the IP header to the end of the IP (payload) length. */
    readonly bytes: Uint8Array,
    /** Offset of the upper-layer header, past the IP header (and IPv6 extension headers). */
    readonly l4Offset: number,
    /** The upper-layer protocol number. */
    readonly protocol: number,
    /** True for a fragment (more-fragments set, or a non-zero offset). */
    readonly isFragment: boolean,
    /** True when a TCP or UDP header is present and complete (not a non-first fragment). */
    readonly hasPorts: boolean,
    /** The L4 checksum is partial (the kernel completes it) and must be recomputed if changed. */
    readonly checksumPartial: boolean,
    /** A view over {@link bytes}. */
    protected readonly view: DataView,
  ) {}

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
  /** Offset of the L4 checksum field (TCP 16, UDP 6, ICMP and ICMPv6 2). */
  get l4ChecksumOffset(): number {
    const p = this.protocol;
    return this.l4Offset + (p === IpProtocol.TCP ? 16 : p === IpProtocol.UDP ? 6 : 2);
  }
  /** The TCP or UDP payload (a view). */
  get payload(): Uint8Array {
    if (!this.hasPorts) return this.bytes.subarray(this.l4Offset);
    const headerLength = this.protocol === IpProtocol.TCP
      ? (this.bytes[this.l4Offset + 12] >>> 4) * 4
      : 8;
    return this.bytes.subarray(this.l4Offset + headerLength);
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
    if (this.checksumPartial && this.l4Dirty) this.recomputeL4Checksum();
    this.l4Dirty = false;
  }

  /** Recomputes the L4 checksum over pseudo-header, header and payload. */
  abstract recomputeL4Checksum(): void;

  /**
   * Whether an L4 checksum of 0 means "none" and stays so (IPv4's UDP); IPv6 has no such
   * checksum. Called on a rewrite only.
   */
  protected abstract keepsNoChecksum(check: number): boolean;

  /** Stores `check` as the L4 checksum; a UDP checksum 0 is sent as all ones. */
  protected storeL4Checksum(at: number, check: number): void {
    this.view.setUint16(at, check === 0 && this.protocol === IpProtocol.UDP ? 0xffff : check);
  }

  #setPort(at: number, port: number): void {
    if (!this.hasPorts) throw new Error("packet has no ports");
    const old = this.view.getUint16(at);
    if (old === port) return;
    this.view.setUint16(at, port);
    this.l4Changed(old, port, false);
  }

  /**
   * Notes that a field the L4 checksum covers went from `old` to `value` (`wide`: a 32-bit
   * one) and updates the checksum (RFC 1624), unless the kernel completes it.
   */
  protected l4Changed(old: number, value: number, wide: boolean): void {
    // A non-first fragment carries no L4 header; a first one's checksum covers the whole
    // datagram, which an incremental update still keeps right.
    this.l4Dirty = true;
    if (this.checksumPartial) return;
    const at = this.l4ChecksumOffset;
    const check = this.view.getUint16(at);
    if (this.keepsNoChecksum(check)) return;
    this.storeL4Checksum(
      at,
      wide ? updateChecksum32(check, old, value) : updateChecksum16(check, old, value),
    );
  }
}
