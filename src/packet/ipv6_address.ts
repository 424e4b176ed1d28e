/**
 * IPv6 addresses: text (RFC 4291 forms, with an embedded IPv4 tail) to 16 bytes and back, in
 * the canonical text form of RFC 5952 (lower case, the longest run of two or more zero groups
 * as `::`, the first such run on a tie). The IPv6 side of the relay carries addresses as that
 * text outside the packet path, so that equal addresses are equal strings.
 *
 * @example
 * ```ts
 * import { canonicalIpv6, formatIpv6, parseIpv6 } from "./ipv6_address.ts";
 * formatIpv6(parseIpv6("2001:DB8:0:0:0:0:0:1")); // "2001:db8::1"
 * canonicalIpv6("2001:db8:1:0::10"); // "2001:db8:1::10"
 * ```
 * @module
 */

import { parses } from "./address.ts";

const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;
const IPV4_TAIL = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** Parses an IPv6 address into 16 bytes; throws a RangeError naming the text when it is not one. */
export function parseIpv6(text: string): Uint8Array {
  const bad = () => new RangeError(`not an IPv6 address: "${text}"`);
  if (text.length > 45 || text.length < 2) throw bad();
  const halves = text.split("::");
  if (halves.length > 2) throw bad();
  const groupsOf = (part: string, last: boolean): number[] => {
    if (part === "") return [];
    const items = part.split(":");
    const out: number[] = [];
    items.forEach((item, i) => {
      const v4 = last && i === items.length - 1 ? IPV4_TAIL.exec(item) : null;
      if (v4) {
        const b = v4.slice(1).map((o) => {
          if (Number(o) > 255 || (o.length > 1 && o[0] === "0")) throw bad();
          return Number(o);
        });
        out.push((b[0] << 8) | b[1], (b[2] << 8) | b[3]);
      } else if (HEX_GROUP.test(item)) out.push(parseInt(item, 16));
      else throw bad();
    });
    return out;
  };
  let groups: number[];
  if (halves.length === 2) {
    const head = groupsOf(halves[0], false);
    const tail = groupsOf(halves[1], true);
    // "::" stands for at least one zero group.
    if (head.length + tail.length > 7) throw bad();
    groups = [...head, ...new Array(8 - head.length - tail.length).fill(0), ...tail];
  } else {
    groups = groupsOf(text, true);
    if (groups.length !== 8) throw bad();
  }
  const bytes = new Uint8Array(16);
  groups.forEach((g, i) => {
    bytes[2 * i] = g >> 8;
    bytes[2 * i + 1] = g & 255;
  });
  return bytes;
}

/** True when `text` is an IPv6 address. */
export function isIpv6(text: string): boolean {
  return parses(parseIpv6, text);
}

/** Formats 16 bytes (from `offset` of `bytes`) in RFC 5952's canonical form. */
export function formatIpv6(bytes: Uint8Array, offset = 0): string {
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push((bytes[offset + 2 * i] << 8) | bytes[offset + 2 * i + 1]);
  // The longest run of zero groups (two or more), the first on a tie.
  let best = -1, bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  const hex = (gs: number[]) => gs.map((g) => g.toString(16)).join(":");
  if (best < 0) return hex(groups);
  return `${hex(groups.slice(0, best))}::${hex(groups.slice(best + bestLen))}`;
}

/** The canonical text of an IPv6 address given in any form; throws when it is not one. */
export function canonicalIpv6(text: string): string {
  return formatIpv6(parseIpv6(text));
}

/** Formats `[addr]:port`, the way URLs and logs write an IPv6 endpoint. */
export function formatEndpoint6(addr: string, port: number): string {
  return `[${addr}]:${port}`;
}
