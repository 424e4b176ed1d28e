/**
 * The {@link Packet} scripts see: getters and setters over the bytes of an IPv4 or IPv6
 * datagram with a UDP or TCP header (IPv6 without extension headers: the host shows scripts
 * no other). Setters write in place and mark the packet changed; checksums are left to the
 * host, which recomputes them for changed packets. A UDP payload of a new size gets a new
 * buffer, with the IP total (IPv6: payload) length and the UDP length following.
 *
 * IPv6's header maps onto the IPv4 fields: `tos` is the traffic class, `ttl` the hop limit,
 * `headerLength` 40; `id` reads 0 and cannot be set, and `dontFragment` is true (routers never
 * fragment IPv6).
 *
 * @example
 * ```ts
 * import { ScriptPacket } from "./script_packet.ts";
 * declare const datagram: Uint8Array;
 * const p = new ScriptPacket(datagram);
 * p.ttl = 10;
 * p.payload = new TextEncoder().encode("hello");
 * p.changed; // true; p.data holds the new datagram
 * ```
 * @module
 */

import { formatIpv4, parseIpv4 } from "../packet/address.ts";
import { formatIpv6, isIpv6, parseIpv6 } from "../packet/ipv6_address.ts";
import type { Packet, Protocol, TcpFlagName } from "./api.ts";

const FLAG_BITS: Record<TcpFlagName, number> = {
  FIN: 0x01,
  SYN: 0x02,
  RST: 0x04,
  PSH: 0x08,
  ACK: 0x10,
  URG: 0x20,
  ECE: 0x40,
  CWR: 0x80,
};

/** The largest IPv4 datagram. */
const MAX_DATAGRAM = 0xffff;

/** IPv6's fixed header: the length of the whole header krelay shows scripts. */
const IPV6_HEADER = 40;

/**
 * A {@link Packet} over `data`, which the host has checked to be IPv4 with a UDP/TCP header,
 * or IPv6 with one right after its fixed header.
 */
export class ScriptPacket implements Packet {
  #data: Uint8Array;
  #view: DataView;
  #changed = false;
  readonly family: 4 | 6;
  readonly headerLength: number;
  readonly protocol: Protocol;

  constructor(data: Uint8Array) {
    this.#data = data;
    this.#view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    this.family = data[0] >>> 4 === 6 ? 6 : 4;
    this.headerLength = this.family === 6 ? IPV6_HEADER : (data[0] & 0x0f) * 4;
    this.protocol = data[this.family === 6 ? 6 : 9] === 6 ? "tcp" : "udp";
  }

  /** The datagram as it is now (a new buffer after a UDP payload changed size). */
  get data(): Uint8Array {
    return this.#data;
  }
  get changed(): boolean {
    return this.#changed;
  }

  get tos(): number {
    if (this.family === 6) return (this.#view.getUint16(0) >>> 4) & 0xff;
    return this.#data[1];
  }
  set tos(v: number) {
    if (this.family === 4) {
      this.#u8(1, v);
      return;
    }
    // The traffic class sits across the first two bytes, after the version.
    const first = this.#view.getUint16(0);
    this.#view.setUint16(0, (first & 0xf00f) | (checked(v, 0xff) << 4));
    this.#changed = true;
  }
  get totalLength(): number {
    return this.family === 6 ? IPV6_HEADER + this.#view.getUint16(4) : this.#view.getUint16(2);
  }
  get id(): number {
    return this.family === 6 ? 0 : this.#view.getUint16(4);
  }
  set id(v: number) {
    if (this.family === 6) throw new TypeError("id is an IPv4 field; this is IPv6");
    this.#u16(4, v);
  }
  get dontFragment(): boolean {
    return this.family === 6 || (this.#data[6] & 0x40) !== 0;
  }
  get ttl(): number {
    return this.#data[this.family === 6 ? 7 : 8];
  }
  set ttl(v: number) {
    this.#u8(this.family === 6 ? 7 : 8, v);
  }
  get src(): string {
    return this.family === 6 ? formatIpv6(this.#data, 8) : formatIpv4(this.#view.getUint32(12));
  }
  set src(v: string) {
    this.#address(this.family === 6 ? 8 : 12, v);
  }
  get dst(): string {
    return this.family === 6 ? formatIpv6(this.#data, 24) : formatIpv4(this.#view.getUint32(16));
  }
  set dst(v: string) {
    this.#address(this.family === 6 ? 24 : 16, v);
  }

  /** Writes an address of the packet's own family at `at` (a RangeError for any other). */
  #address(at: number, v: string): void {
    if (this.family === 6) {
      if (typeof v !== "string" || !isIpv6(v)) {
        throw new RangeError(`${v} is no IPv6 address (this packet is IPv6)`);
      }
      this.#data.set(parseIpv6(v), at);
      this.#changed = true;
      return;
    }
    this.#u32(at, parseIpv4(v));
  }
  get srcPort(): number {
    return this.#view.getUint16(this.headerLength);
  }
  set srcPort(v: number) {
    this.#u16(this.headerLength, v);
  }
  get dstPort(): number {
    return this.#view.getUint16(this.headerLength + 2);
  }
  set dstPort(v: number) {
    this.#u16(this.headerLength + 2, v);
  }
  get seq(): number {
    return this.protocol === "tcp" ? this.#view.getUint32(this.headerLength + 4) : 0;
  }
  set seq(v: number) {
    this.#u32(this.#tcp("seq") + 4, v);
  }
  get ackNumber(): number {
    return this.protocol === "tcp" ? this.#view.getUint32(this.headerLength + 8) : 0;
  }
  set ackNumber(v: number) {
    this.#u32(this.#tcp("ackNumber") + 8, v);
  }
  get window(): number {
    return this.protocol === "tcp" ? this.#view.getUint16(this.headerLength + 14) : 0;
  }
  set window(v: number) {
    this.#u16(this.#tcp("window") + 14, v);
  }
  get flags(): number {
    return this.protocol === "tcp" ? this.#data[this.headerLength + 13] : 0;
  }
  set flags(v: number) {
    this.#u8(this.#tcp("flags") + 13, v);
  }

  hasFlag(flag: TcpFlagName): boolean {
    return (this.flags & flagBit(flag)) !== 0;
  }

  setFlag(flag: TcpFlagName, on: boolean): void {
    const bit = flagBit(flag);
    this.flags = on ? this.flags | bit : this.flags & ~bit;
  }

  /** Offset of the payload. */
  get #payloadOffset(): number {
    const l4 = this.headerLength;
    return this.protocol === "tcp" ? l4 + (this.#data[l4 + 12] >>> 4) * 4 : l4 + 8;
  }

  get payload(): Uint8Array {
    return this.#data.slice(this.#payloadOffset, this.totalLength);
  }

  set payload(bytes: Uint8Array) {
    if (!(bytes instanceof Uint8Array)) throw new TypeError("payload must be a Uint8Array");
    const at = this.#payloadOffset;
    const old = this.totalLength - at;
    if (bytes.length === old) {
      this.#data.set(bytes, at);
      this.#changed = true;
      return;
    }
    if (this.protocol === "tcp") {
      throw new RangeError(
        `a TCP payload must keep its size (${old} bytes, not ${bytes.length})`,
      );
    }
    const total = at + bytes.length;
    if (total > MAX_DATAGRAM) {
      throw new RangeError(`payload too large: the datagram would be ${total} bytes`);
    }
    const next = new Uint8Array(total);
    next.set(this.#data.subarray(0, at));
    next.set(bytes, at);
    this.#data = next;
    this.#view = new DataView(next.buffer);
    if (this.family === 6) this.#view.setUint16(4, total - IPV6_HEADER);
    else this.#view.setUint16(2, total);
    this.#view.setUint16(this.headerLength + 4, total - this.headerLength);
    this.#changed = true;
  }

  bytes(): Uint8Array {
    return this.#data.slice(0, this.totalLength);
  }

  #tcp(field: string): number {
    if (this.protocol !== "tcp") throw new TypeError(`${field} is a TCP field; this is UDP`);
    return this.headerLength;
  }

  #u8(at: number, v: number): void {
    this.#data[at] = checked(v, 0xff);
    this.#changed = true;
  }

  #u16(at: number, v: number): void {
    this.#view.setUint16(at, checked(v, 0xffff));
    this.#changed = true;
  }

  #u32(at: number, v: number): void {
    this.#view.setUint32(at, checked(v, 0xffffffff));
    this.#changed = true;
  }
}

function flagBit(flag: TcpFlagName): number {
  const bit = FLAG_BITS[flag];
  if (bit === undefined) throw new TypeError(`unknown TCP flag ${String(flag)}`);
  return bit;
}

/** `v` as a whole number in 0..max, or a RangeError. */
function checked(v: number, max: number): number {
  if (!Number.isInteger(v) || v < 0 || v > max) {
    throw new RangeError(`${v} is not a whole number from 0 to ${max}`);
  }
  return v;
}
