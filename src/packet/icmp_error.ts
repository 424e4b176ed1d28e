/**
 * A view of an ICMP error (destination unreachable, time exceeded, parameter problem) in an
 * IPv4 datagram: the outer header, and the header of the datagram it is about (embedded after
 * the ICMP header, with at least the first 8 bytes of its TCP or UDP header). Rewriting either
 * keeps every checksum a receiver checks right: the outer IP one, the embedded IP one, the
 * embedded UDP one where present (incrementally: it may cover bytes the error left out) and
 * the ICMP one ({@link IcmpError.finalize}), as kernel NAT does.
 *
 * @example
 * ```ts ignore
 * const e = parseIcmpError(bytes);
 * if (e) { e.setOuterSrc(relay); e.setInnerDst(relay); e.finalize(); }
 * ```
 * @module
 */

import { IpProtocol } from "./ipv4_packet.ts";
import { internetChecksum, updateChecksum16, updateChecksum32 } from "./checksum.ts";

/** The ICMP types that carry an error about a datagram. */
export const IcmpErrorType = {
  DestinationUnreachable: 3,
  TimeExceeded: 11,
  ParameterProblem: 12,
} as const;

/** Destination unreachable's code for "fragmentation needed and DF set" (RFC 1191). */
export const FRAGMENTATION_NEEDED = 4;

const ICMP_HEADER = 8;

/** An ICMP error about a TCP or UDP datagram; see the module documentation. */
export class IcmpError {
  readonly #view: DataView;

  /** @internal use {@link parseIcmpError} */
  constructor(
    /** The datagram, from the outer IP header to the end of its total length. */
    readonly bytes: Uint8Array,
    /** Offset of the ICMP header. */
    readonly icmpOffset: number,
    /** Offset of the embedded IP header. */
    readonly innerOffset: number,
    /** Offset of the embedded TCP/UDP header (8 bytes of it at least). */
    readonly innerL4Offset: number,
  ) {
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  /** ICMP type ({@link IcmpErrorType}). */
  get type(): number {
    return this.bytes[this.icmpOffset];
  }
  /** ICMP code. */
  get code(): number {
    return this.bytes[this.icmpOffset + 1];
  }
  /** The next-hop MTU of a "fragmentation needed" (0 otherwise). */
  get mtu(): number {
    return this.#view.getUint16(this.icmpOffset + 6);
  }
  /** Outer source (who reports the error). */
  get src(): number {
    return this.#view.getUint32(12);
  }
  /** Outer destination (the sender of the datagram it is about). */
  get dst(): number {
    return this.#view.getUint32(16);
  }
  /** The embedded datagram's protocol (TCP or UDP). */
  get innerProtocol(): number {
    return this.bytes[this.innerOffset + 9];
  }
  /** The embedded datagram's source. */
  get innerSrc(): number {
    return this.#view.getUint32(this.innerOffset + 12);
  }
  /** The embedded datagram's destination. */
  get innerDst(): number {
    return this.#view.getUint32(this.innerOffset + 16);
  }
  /** The embedded datagram's source port. */
  get innerSrcPort(): number {
    return this.#view.getUint16(this.innerL4Offset);
  }
  /** The embedded datagram's destination port. */
  get innerDstPort(): number {
    return this.#view.getUint16(this.innerL4Offset + 2);
  }

  /** Rewrites the outer source; the outer IP checksum follows. */
  setOuterSrc(addr: number): void {
    this.#setOuter(12, addr >>> 0);
  }
  /** Rewrites the outer destination; the outer IP checksum follows. */
  setOuterDst(addr: number): void {
    this.#setOuter(16, addr >>> 0);
  }
  /** Rewrites the embedded source; the embedded checksums follow. */
  setInnerSrc(addr: number): void {
    this.#setInner(12, addr >>> 0);
  }
  /** Rewrites the embedded destination; the embedded checksums follow. */
  setInnerDst(addr: number): void {
    this.#setInner(16, addr >>> 0);
  }
  /** Rewrites the embedded source port; the embedded UDP checksum follows. */
  setInnerSrcPort(port: number): void {
    this.#setInnerPort(0, port);
  }
  /** Rewrites the embedded destination port; the embedded UDP checksum follows. */
  setInnerDstPort(port: number): void {
    this.#setInnerPort(2, port);
  }

  /** Call after the last change: computes the ICMP checksum again. */
  finalize(): void {
    const at = this.icmpOffset + 2;
    this.#view.setUint16(at, 0);
    this.#view.setUint16(at, internetChecksum(this.bytes, this.icmpOffset, this.bytes.length));
  }

  #setOuter(at: number, addr: number): void {
    const old = this.#view.getUint32(at);
    this.#view.setUint32(at, addr);
    this.#view.setUint16(10, updateChecksum32(this.#view.getUint16(10), old, addr));
  }

  #setInner(field: number, addr: number): void {
    const at = this.innerOffset + field;
    const old = this.#view.getUint32(at);
    this.#view.setUint32(at, addr);
    const check = this.innerOffset + 10;
    this.#view.setUint16(check, updateChecksum32(this.#view.getUint16(check), old, addr));
    // The UDP checksum covers the addresses (pseudo-header); TCP's lies past the 8 bytes an
    // error must carry, and is left as it is.
    this.#updateInnerUdp(old, addr, true);
  }

  #setInnerPort(field: number, port: number): void {
    const at = this.innerL4Offset + field;
    const old = this.#view.getUint16(at);
    this.#view.setUint16(at, port);
    this.#updateInnerUdp(old, port, false);
  }

  #updateInnerUdp(old: number, value: number, wide: boolean): void {
    if (this.innerProtocol !== IpProtocol.UDP) return;
    const at = this.innerL4Offset + 6;
    const check = this.#view.getUint16(at);
    if (check === 0) return; // no checksum: stays none
    let next = wide ? updateChecksum32(check, old, value) : updateChecksum16(check, old, value);
    if (next === 0) next = 0xffff;
    this.#view.setUint16(at, next);
  }
}

/**
 * Parses `bytes` as an IPv4 ICMP error about a TCP or UDP datagram; undefined for anything
 * else (another protocol or ICMP type, a fragment, a truncated or malformed embedded header).
 * Never reads outside `bytes`.
 */
export function parseIcmpError(bytes: Uint8Array): IcmpError | undefined {
  if (bytes.length < 20 || bytes[0] >>> 4 !== 4 || bytes[9] !== IpProtocol.ICMP) return undefined;
  const ihl = (bytes[0] & 0x0f) * 4;
  const total = (bytes[2] << 8) | bytes[3];
  if (ihl < 20 || total > bytes.length || total < ihl + ICMP_HEADER + 28) return undefined;
  // A fragment: its ICMP checksum covers the whole, which is not here.
  if (((bytes[6] << 8) | bytes[7]) & 0x3fff) return undefined;
  const type = bytes[ihl];
  if (
    type !== IcmpErrorType.DestinationUnreachable && type !== IcmpErrorType.TimeExceeded &&
    type !== IcmpErrorType.ParameterProblem
  ) return undefined;
  const inner = ihl + ICMP_HEADER;
  if (bytes[inner] >>> 4 !== 4) return undefined;
  const innerIhl = (bytes[inner] & 0x0f) * 4;
  const protocol = bytes[inner + 9];
  if (innerIhl < 20 || inner + innerIhl + 8 > total) return undefined;
  if (protocol !== IpProtocol.UDP && protocol !== IpProtocol.TCP) return undefined;
  // Only an error about a first fragment (or a whole datagram) has the ports.
  if (((bytes[inner + 6] << 8) | bytes[inner + 7]) & 0x1fff) return undefined;
  const datagram = total === bytes.length ? bytes : bytes.subarray(0, total);
  return new IcmpError(datagram, ihl, inner, inner + innerIhl);
}
