/**
 * A zero-copy view over an IPv6 packet with its TCP, UDP or ICMPv6 header, beside
 * ipv4_packet.ts: read fields, rewrite addresses and ports with the L4 checksum kept right
 * (IPv6 has no header checksum; TCP, UDP and ICMPv6 cover a pseudo-header with both
 * addresses, RFC 8200 section 8.1).
 *
 * Extension headers are walked to the upper-layer header: hop-by-hop, routing, destination
 * options and AH are skipped by their length; a fragment header makes the packet a fragment
 * (ports only in the first one); ESP or "no next header" end the walk without ports. A
 * routing header with segments left means the destination field is not the packet's final
 * destination: {@link Ipv6Packet.routed} says so, and the relay passes such packets.
 *
 * @example
 * ```ts
 * import { Ipv6Packet, parseIpv6Packet } from "./ipv6_packet.ts";
 * declare const bytes: Uint8Array;
 * const p = parseIpv6Packet(bytes);
 * if (p instanceof Ipv6Packet && p.hasPorts) {
 *   p.setDst("2001:db8:2::10");
 *   p.finalize();
 * }
 * ```
 * @module
 */

import { fold, internetChecksum, sumWords, updateChecksum16 } from "./checksum.ts";
import { formatIpv6, parseIpv6 } from "./ipv6_address.ts";
import { IpProtocol, L4Packet, Malformed, portsHeaderFits } from "./l4_packet.ts";

/** IPv6 next-header numbers krelay looks at. */
export const Ipv6Header = {
  HopByHop: 0,
  TCP: 6,
  UDP: 17,
  Routing: 43,
  Fragment: 44,
  ESP: 50,
  AH: 51,
  ICMPv6: 58,
  NoNext: 59,
  DestinationOptions: 60,
} as const;

const HEADER = 40;
const SRC = 8;
const DST = 24;
/** Extension headers walked at most: more is a packet to pass, not to parse. */
const MAX_EXTENSIONS = 8;

/** A parsed IPv6 packet. Create it with {@link parseIpv6Packet}. */
export class Ipv6Packet extends L4Packet {
  /** @internal use {@link parseIpv6Packet} */
  constructor(
    bytes: Uint8Array,
    l4Offset: number,
    protocol: number,
    isFragment: boolean,
    hasPorts: boolean,
    /** A routing header with segments left: the destination is not the final one. */
    readonly routed: boolean,
    checksumPartial: boolean,
    view: DataView,
  ) {
    super(bytes, l4Offset, protocol, isFragment, hasPorts, checksumPartial, view);
  }

  /** Source address, 16 bytes (a view into the packet). */
  get src(): Uint8Array {
    return this.bytes.subarray(SRC, SRC + 16);
  }
  /** Destination address, 16 bytes (a view into the packet). */
  get dst(): Uint8Array {
    return this.bytes.subarray(DST, DST + 16);
  }
  /** Source address in canonical text. */
  get srcText(): string {
    return formatIpv6(this.bytes, SRC);
  }
  /** Destination address in canonical text. */
  get dstText(): string {
    return formatIpv6(this.bytes, DST);
  }
  /** Hop limit. */
  get hopLimit(): number {
    return this.bytes[7];
  }
  /** True when the packet's upper layer has a checksum this view keeps (TCP, UDP, ICMPv6). */
  get hasChecksum(): boolean {
    if (this.hasPorts) return true;
    return this.protocol === Ipv6Header.ICMPv6 && !this.isFragment &&
      this.bytes.length - this.l4Offset >= 4;
  }

  /** Rewrites the source address (16 bytes or text); the L4 checksum follows. */
  setSrc(addr: Uint8Array | string): void {
    this.#setAddress(SRC, typeof addr === "string" ? parseIpv6(addr) : addr);
  }
  /** Rewrites the destination address; the L4 checksum follows. */
  setDst(addr: Uint8Array | string): void {
    this.#setAddress(DST, typeof addr === "string" ? parseIpv6(addr) : addr);
  }

  /** Recomputes the TCP/UDP/ICMPv6 checksum over pseudo-header, header and payload. */
  recomputeL4Checksum(): void {
    // A fragment's checksum covers the whole datagram, which this packet is not.
    if (!this.hasChecksum || this.isFragment) return;
    const at = this.l4ChecksumOffset;
    this.view.setUint16(at, 0);
    const length = this.bytes.length - this.l4Offset;
    const seed = pseudoHeaderSum6(this.bytes, this.protocol, length);
    // A UDP checksum is mandatory in IPv6; 0 is sent as all ones.
    this.storeL4Checksum(at, internetChecksum(this.bytes, this.l4Offset, this.bytes.length, seed));
  }

  /** A UDP checksum is mandatory in IPv6: 0 is no "none" to keep. */
  protected keepsNoChecksum(_check: number): boolean {
    return false;
  }

  #setAddress(at: number, addr: Uint8Array): void {
    if (addr.length !== 16) throw new RangeError("an IPv6 address is 16 bytes");
    // Every 16-bit word that changes, into the checksum (RFC 1624), one at a time.
    const update = this.hasChecksum && !this.checksumPartial;
    const checkAt = update ? this.l4ChecksumOffset : 0;
    let check = update ? this.view.getUint16(checkAt) : 0;
    let changed = false;
    for (let i = 0; i < 16; i += 2) {
      const old = this.view.getUint16(at + i);
      const next = (addr[i] << 8) | addr[i + 1];
      if (old === next) continue;
      changed = true;
      this.view.setUint16(at + i, next);
      if (update) check = updateChecksum16(check, old, next);
    }
    if (!changed) return;
    this.l4Dirty = true;
    if (update) this.storeL4Checksum(checkAt, check);
  }
}

/**
 * The sum of the IPv6 pseudo-header (RFC 8200 8.1) of `packet`: source and destination
 * addresses, the upper-layer length (32 bits) and the next-header value.
 */
export function pseudoHeaderSum6(packet: Uint8Array, protocol: number, length: number): number {
  const addresses = sumWords(packet, SRC, DST + 16);
  return fold(addresses + (length >>> 16) + (length & 0xffff) + protocol);
}

/**
 * Parses `bytes` as an IPv6 packet. Never throws and never reads outside `bytes`: bad input
 * gives a {@link Malformed} with the reason. Bytes past the payload length are left out.
 * A jumbogram (payload length 0) is taken as the whole buffer.
 */
export function parseIpv6Packet(
  bytes: Uint8Array,
  checksumPartial = false,
): Ipv6Packet | Malformed {
  if (bytes.length < HEADER) return new Malformed("too-short");
  if (bytes[0] >>> 4 !== 6) return new Malformed("not-ipv6");
  let payloadLength = (bytes[4] << 8) | bytes[5];
  if (payloadLength === 0) payloadLength = bytes.length - HEADER;
  const total = HEADER + payloadLength;
  if (total > bytes.length) return new Malformed("bad-total-length");
  const packet = total === bytes.length ? bytes : bytes.subarray(0, total);
  let next = bytes[6];
  let at = HEADER;
  let isFragment = false;
  let firstFragment = true;
  let routed = false;
  for (let n = 0; n <= MAX_EXTENSIONS; n++) {
    if (
      next !== Ipv6Header.HopByHop && next !== Ipv6Header.Routing &&
      next !== Ipv6Header.Fragment && next !== Ipv6Header.DestinationOptions &&
      next !== Ipv6Header.AH
    ) break;
    if (n === MAX_EXTENSIONS || at + 8 > total) return new Malformed("bad-header-length");
    let length: number;
    if (next === Ipv6Header.Fragment) {
      const offsetFlags = (packet[at + 2] << 8) | packet[at + 3];
      isFragment = (offsetFlags & 1) !== 0 || (offsetFlags >>> 3) !== 0;
      firstFragment = (offsetFlags >>> 3) === 0;
      length = 8;
    } else if (next === Ipv6Header.AH) length = (packet[at + 1] + 2) * 4;
    else length = (packet[at + 1] + 1) * 8;
    if (next === Ipv6Header.Routing && packet[at + 3] !== 0) routed = true;
    if (at + length > total) return new Malformed("bad-header-length");
    next = packet[at];
    at += length;
  }
  const hasPorts = (next === IpProtocol.TCP || next === IpProtocol.UDP) && firstFragment;
  if (hasPorts && !portsHeaderFits(packet, at, total - at, next)) {
    return new Malformed("truncated-l4-header");
  }
  const view = new DataView(packet.buffer, packet.byteOffset, packet.byteLength);
  return new Ipv6Packet(packet, at, next, isFragment, hasPorts, routed, checksumPartial, view);
}
