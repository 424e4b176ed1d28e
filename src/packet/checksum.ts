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
  let sum = initial;
  let i = start;
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
