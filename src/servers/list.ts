/**
 * The real servers, as `real_ip` lists them: `203.0.113.10,203.0.113.20@3,203.0.113.30@backup`.
 * Each entry is an address, an optional weight (`@3`, 1-256, default 1) and an optional
 * `@backup` flag (a backup server gets new flows only while no other server is up). One address
 * alone is the one-server relay of earlier versions.
 *
 * Entries are {address, family, weight, backup}, of either family: a client is relayed within
 * its family, so each family's servers are a balancing pool of their own ({@link ofFamily}),
 * and a list may name servers of one family only (the other is then not relayed). Each
 * family's pool needs a server that is no backup.
 *
 * @example
 * ```ts
 * import { parseServerList } from "./list.ts";
 * const list = parseServerList("203.0.113.10,203.0.113.20@3");
 * if (typeof list !== "string") console.log(list[1].weight); // 3
 * ```
 * @module
 */

import { isIpv4, parseIpv4 } from "../packet/address.ts";
import { canonicalIpv6, isIpv6, parseIpv6 } from "../packet/ipv6_address.ts";

/** How many servers one list may hold. */
export const MAX_SERVERS = 64;
/** The highest weight. */
export const MAX_WEIGHT = 256;

/** One real server of the list. */
export interface ServerEntry {
  /** The address as written, normalised: "203.0.113.10", "2001:db8:2::10". */
  readonly address: string;
  readonly family: 4 | 6;
  /**
   * The IPv4 address as an unsigned number; for IPv6, the address folded to 32 bits
   * ({@link foldIpv6}): the balancer's hash seed only.
   */
  readonly ip: number;
  /** Its share of new flows relative to the others' (1-256). */
  readonly weight: number;
  /** Gets new flows only while no server without this flag is up. */
  readonly backup: boolean;
}

/**
 * An IPv6 address (16 bytes from `offset`) folded to an unsigned 32-bit number, the XOR of its
 * four words: what the balancer hashes of an IPv6 server or client.
 */
export function foldIpv6(bytes: Uint8Array, offset = 0): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset + offset, 16);
  return (view.getUint32(0) ^ view.getUint32(4) ^ view.getUint32(8) ^ view.getUint32(12)) >>> 0;
}

/** An address of a family krelay relays to; undefined if it is none. */
export function parseAddress(
  text: string,
): { family: 4 | 6; ip: number; address: string } | undefined {
  if (isIpv4(text)) {
    const ip = parseIpv4(text);
    return { family: 4, ip, address: text };
  }
  if (isIpv6(text)) {
    return { family: 6, ip: foldIpv6(parseIpv6(text)), address: canonicalIpv6(text) };
  }
  return undefined;
}

/** The entries of one family, in list order. */
export function ofFamily(list: readonly ServerEntry[], family: 4 | 6): ServerEntry[] {
  return list.filter((s) => s.family === family);
}

/**
 * Parses a server list; returns the entries, or why the text is not one (a message that names
 * the entry at fault).
 */
export function parseServerList(text: string): ServerEntry[] | string {
  const parts = text.split(",").map((p) => p.trim());
  if (parts.length === 0 || parts.every((p) => p === "")) return "must name a server";
  if (parts.length > MAX_SERVERS) return `at most ${MAX_SERVERS} servers`;
  const list: ServerEntry[] = [];
  for (const part of parts) {
    if (part === "") return "has an empty entry (two commas)";
    const [host, ...options] = part.split("@");
    const addr = parseAddress(host);
    if (addr === undefined) {
      const why = "must be an IPv4 or IPv6 address like 203.0.113.10 or 2001:db8:2::10";
      return parts.length === 1 && options.length === 0 ? why : `${host}: ${why}`;
    }
    let weight = 1;
    let backup = false;
    for (const option of options) {
      if (option === "backup") backup = true;
      else if (/^\d+$/.test(option) && Number(option) >= 1 && Number(option) <= MAX_WEIGHT) {
        weight = Number(option);
      } else {
        return `${part}: "@${option}" must be a weight 1-${MAX_WEIGHT} or "backup"`;
      }
    }
    if (list.some((s) => s.address === addr.address)) return `${addr.address}: listed twice`;
    list.push({ ...addr, weight, backup });
  }
  for (const family of [4, 6] as const) {
    const servers = ofFamily(list, family);
    if (servers.length > 0 && servers.every((s) => s.backup)) {
      const which = list.some((s) => s.family !== family) ? `IPv${family} ` : "";
      return `every ${which}server is a backup: at least one must not be`;
    }
  }
  return list;
}

/** Whether `text` is a valid server list. */
export function isServerList(text: string): boolean {
  return typeof parseServerList(text) !== "string";
}

/** Parses a list known to be valid (the config's); throws otherwise. */
export function serverList(text: string): ServerEntry[] {
  const list = parseServerList(text);
  if (typeof list === "string") throw new Error(`real_ip: ${list}`);
  return list;
}

/** An entry as written in a list. */
export function formatServer(s: ServerEntry): string {
  return s.address + (s.weight !== 1 ? `@${s.weight}` : "") + (s.backup ? "@backup" : "");
}
