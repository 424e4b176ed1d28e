/**
 * The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
 *
 * Sums are kept as plain numbers: a 64 KiB datagram adds at most 32768 words of 0xffff,
 * well below 2^32, so `>>> 16` folding is exact.
 *
 * @example
 * ```ts
 * import { internetChecksum } from "./checksum.ts";
 * const header = new Uint8Array(20);
 * internetChecksum(header, 0, 20); // 0xffff
 * ```
 * @module
 */

/** Adds the 16-bit big-endian words of `bytes[start, end)` to `initial`; an odd last byte is padded with zero. */
export function sumWords(bytes: Uint8Array, start: number, end: number, initial = 0): number {
  // Long runs (TCP segments, GSO super-packets) go 32 bits at a time.
  if (end - start >= WIDE_MIN && ((bytes.byteOffset + start) & 1) === 0) {
    return sumWordsWide(bytes, start, end, initial);
  }
  let sum = initial;
  let i = start;
  const last = end - 1;
  for (; i < last; i += 2) sum += (bytes[i] << 8) | bytes[i + 1];
  if (i < end) sum += bytes[i] << 8;
  return sum;
}

const WIDE_MIN = 256;

/**
 * {@link sumWords} over 32-bit words in host (little-endian) order. The one's complement sum
 * does not depend on byte order (RFC 1071, 2.B): the sum of little-endian words is the
 * byte-swapped sum of big-endian ones.
 */
function sumWordsWide(bytes: Uint8Array, start: number, end: number, initial: number): number {
  let sum = initial;
  let i = start;
  // Up to a 4-byte boundary in big-endian 16-bit steps (the start is even).
  while (((bytes.byteOffset + i) & 3) !== 0) {
    sum += (bytes[i] << 8) | bytes[i + 1];
    i += 2;
  }
  const words = (end - i) >>> 2;
  const u32 = new Uint32Array(bytes.buffer, bytes.byteOffset + i, words);
  // At most 16384 words of < 2^32 each: the total stays exact in a double.
  let wide = 0;
  for (let k = 0; k < words; k++) wide += u32[k];
  i += words * 4;
  wide = (wide % 4294967296) + Math.floor(wide / 4294967296);
  wide = (wide % 4294967296) + Math.floor(wide / 4294967296);
  let little = (wide & 0xffff) + (wide >>> 16);
  little = (little & 0xffff) + (little >>> 16);
  sum += ((little & 0xff) << 8) | (little >>> 8);
  const last = end - 1;
  for (; i < last; i += 2) sum += (bytes[i] << 8) | bytes[i + 1];
  if (i < end) sum += bytes[i] << 8;
  return sum;
}

/** Folds a sum of words into 16 bits with end-around carry. */
export function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

/** The checksum of `bytes[start, end)`, seeded with `initial` (e.g. a pseudo-header sum). */
export function internetChecksum(
  bytes: Uint8Array,
  start: number,
  end: number,
  initial = 0,
): number {
  return ~fold(sumWords(bytes, start, end, initial)) & 0xffff;
}

/** The sum of the IPv4 pseudo-header used by TCP and UDP checksums. */
export function pseudoHeaderSum(
  src: number,
  dst: number,
  protocol: number,
  length: number,
): number {
  return (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + protocol + length;
}

/**
 * RFC 1624 eqn. 3: the checksum after one 16-bit word of the covered data changes from
 * `oldWord` to `newWord`: HC' = ~(~HC + ~m + m').
 */
export function updateChecksum16(check: number, oldWord: number, newWord: number): number {
  return ~fold((~check & 0xffff) + (~oldWord & 0xffff) + (newWord & 0xffff)) & 0xffff;
}

/** {@link updateChecksum16} for a 32-bit field such as an IPv4 address. */
export function updateChecksum32(check: number, oldValue: number, newValue: number): number {
  const sum = (~check & 0xffff) +
    (~(oldValue >>> 16) & 0xffff) + (~oldValue & 0xffff) +
    (newValue >>> 16) + (newValue & 0xffff);
  return ~fold(sum) & 0xffff;
}
