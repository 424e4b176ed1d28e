/**
 * The real servers, as `real_ip` lists them: `203.0.113.10,203.0.113.20@3,203.0.113.30@backup`.
 * Each entry is an address, an optional weight (`@3`, 1-256, default 1) and an optional
 * `@backup` flag (a backup server gets new flows only while no other server is up). One address
 * alone is the one-server relay of earlier versions.
 *
 * Entries are {address, family, weight, backup} of IPv4 servers: the balancing pool. An IPv6
 * address in the list is the IPv6 clients' server (config/addresses.ts takes it): it is
 * accepted here, without weight or backup, and kept out of the IPv4 pool.
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
import { isIpv6 } from "../packet/ipv6_address.ts";

/** How many servers one list may hold. */
export const MAX_SERVERS = 64;
/** The highest weight. */
export const MAX_WEIGHT = 256;

/** One real server of the list. */
export interface ServerEntry {
  /** The address as written, normalised: "203.0.113.10". */
  readonly address: string;
  readonly family: 4;
  /** The IPv4 address as an unsigned number. */
  readonly ip: number;
  /** Its share of new flows relative to the others' (1-256). */
  readonly weight: number;
  /** Gets new flows only while no server without this flag is up. */
  readonly backup: boolean;
}

/** An address of a family krelay relays to; undefined if it is none. */
export function parseAddress(text: string): { family: 4; ip: number; address: string } | undefined {
  if (isIpv4(text)) {
    const ip = parseIpv4(text);
    return { family: 4, ip, address: text };
  }
  return undefined;
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
  let ipv6 = 0;
  for (const part of parts) {
    if (part === "") return "has an empty entry (two commas)";
    const [host, ...options] = part.split("@");
    if (isIpv6(host)) {
      if (options.length > 0) return `${part}: weights and backups are for IPv4 servers`;
      ipv6++;
      continue;
    }
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
    if (list.some((s) => s.ip === addr.ip)) return `${addr.address}: listed twice`;
    list.push({ ...addr, weight, backup });
  }
  if (list.length === 0) {
    return ipv6 > 0
      ? "must include an IPv4 address like 203.0.113.10 (IPv6 is relayed beside IPv4)"
      : "must name a server";
  }
  if (list.every((s) => s.backup)) return "every server is a backup: at least one must not be";
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
