/**
 * IPv4 addresses as unsigned 32-bit numbers, the form the packet path uses (no allocation).
 *
 * @example
 * ```ts
 * import { formatIpv4, parseIpv4 } from "./address.ts";
 * formatIpv4(parseIpv4("198.51.100.1")); // "198.51.100.1"
 * ```
 * @module
 */

const DOTTED_QUAD = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** Parses a dotted-quad IPv4 address; throws a RangeError naming the text when it is not one. */
export function parseIpv4(text: string): number {
  const m = DOTTED_QUAD.exec(text);
  if (!m) throw new RangeError(`not an IPv4 address: "${text}"`);
  let value = 0;
  for (let i = 1; i <= 4; i++) {
    const part = m[i];
    const octet = Number(part);
    if (octet > 255 || (part.length > 1 && part[0] === "0")) {
      throw new RangeError(`not an IPv4 address: "${text}"`);
    }
    value = value * 256 + octet;
  }
  return value >>> 0;
}

/** True when `text` is a dotted-quad IPv4 address. */
export function isIpv4(text: string): boolean {
  return parses(parseIpv4, text);
}

/** True when `parse` takes `text` without throwing. */
export function parses(parse: (text: string) => unknown, text: string): boolean {
  try {
    parse(text);
    return true;
  } catch {
    return false;
  }
}

/** Formats an unsigned 32-bit address as a dotted quad. */
export function formatIpv4(addr: number): string {
  return `${addr >>> 24}.${(addr >>> 16) & 255}.${(addr >>> 8) & 255}.${addr & 255}`;
}

/** Formats `addr:port`. */
export function formatEndpoint(addr: number, port: number): string {
  return `${formatIpv4(addr)}:${port}`;
}
