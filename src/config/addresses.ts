/**
 * Address lists of either family, as `real_ip` and `relay_ip` take them:
 * `203.0.113.10,2001:db8:2::10`. A client is relayed within its own family (no translation
 * between IPv4 and IPv6), so a list is split per family; a family with no address is not
 * steered. Kept apart from the schema, so that the list of real servers (with weights) and
 * this split per family can be joined in one place.
 *
 * @example
 * ```ts
 * import { addressFamilies } from "./addresses.ts";
 * addressFamilies("203.0.113.10,2001:DB8:2::10"); // { v4: ["203.0.113.10"], v6: ["2001:db8:2::10"] }
 * ```
 * @module
 */

import { isIpv4 } from "../packet/address.ts";
import { canonicalIpv6, isIpv6, parseIpv6 } from "../packet/ipv6_address.ts";

/** A list's addresses per family, IPv6 ones in canonical text. */
export interface AddressFamilies {
  v4: string[];
  v6: string[];
}

/**
 * The addresses of a comma-separated list, trimmed, empty ones dropped, without a server's
 * `@weight` and `@backup` (servers/list.ts reads those).
 */
function items(text: string): string[] {
  return text.split(",").map((s) => s.trim().split("@")[0]).filter((s) => s !== "");
}

/**
 * Splits a comma-separated list into its IPv4 and IPv6 addresses. Throws a RangeError naming
 * the first item that is neither.
 */
export function addressFamilies(text: string): AddressFamilies {
  const out: AddressFamilies = { v4: [], v6: [] };
  for (const item of items(text)) {
    if (isIpv4(item)) out.v4.push(item);
    else if (isIpv6(item)) out.v6.push(canonicalIpv6(item));
    else throw new RangeError(`"${item}" is not an IPv4 or IPv6 address`);
  }
  return out;
}

/**
 * Why `text` is no list of addresses (`onePerFamily`: at most one address of each family, as
 * the relay's own addresses are), or undefined when it is one.
 */
export function addressListProblem(text: string, onePerFamily: boolean): string | undefined {
  let families: AddressFamilies;
  try {
    families = addressFamilies(text);
  } catch (e) {
    const item = /"[^"]*"/.exec((e as Error).message)?.[0] ?? "an item";
    return `must be IPv4 or IPv6 addresses like 203.0.113.10,2001:db8:2::10 (${item} is not one)`;
  }
  if (families.v4.length + families.v6.length === 0) return "must name an address";
  if (onePerFamily && (families.v4.length > 1 || families.v6.length > 1)) {
    return "at most one address per family (one IPv4, one IPv6)";
  }
  const all = [...families.v4, ...families.v6];
  if (new Set(all).size !== all.length) return "has an address twice";
  return undefined;
}

/** The first address of each family in `text` (each undefined when the list has none). */
export function firstOfEach(text: string | undefined): { v4?: string; v6?: string } {
  if (text === undefined) return {};
  const f = addressFamilies(text);
  return { v4: f.v4[0], v6: f.v6[0] };
}

/**
 * Why the IPv6 address `text` can be no relayed packet's source or destination (unspecified,
 * loopback, multicast, or IPv4-mapped), or undefined: IPv6's side of real_ip.ts's rule.
 */
export function unusableIpv6(text: string): string | undefined {
  const b = parseIpv6(text);
  const zeroUpTo = (n: number) => b.subarray(0, n).every((x) => x === 0);
  if (zeroUpTo(16)) return "is the unspecified address (::)";
  if (zeroUpTo(15) && b[15] === 1) return "is the loopback address (::1)";
  if (b[0] === 0xff) return "is a multicast address (ff00::/8)";
  if (zeroUpTo(10) && b[10] === 0xff && b[11] === 0xff) return "is an IPv4-mapped address";
  return undefined;
}
