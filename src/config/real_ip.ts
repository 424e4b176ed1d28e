/**
 * The rule on `real_ip`, wherever it comes from (flags, the config file, `config set`): the
 * real server must be an address packets can be relayed to. A loopback, unspecified,
 * broadcast or multicast address, or one of the relay's own addresses, would send clients'
 * packets back into the relay or nowhere. Packet scripts are held to the same rule
 * ({@link unusableAddress}) for the addresses of the datagrams they change.
 *
 * @example
 * ```ts
 * import { realIpProblem } from "./real_ip.ts";
 * realIpProblem("127.0.0.1"); // "is a loopback address (127.0.0.0/8)"
 * realIpProblem("203.0.113.10", ["198.51.100.1"]); // undefined: fine
 * ```
 * @module
 */

import { isIpv4, parseIpv4 } from "../packet/address.ts";
import { parseServerList } from "../servers/list.ts";
import { unusableIpv6 } from "./addresses.ts";

/**
 * Why `ip` cannot be the real server, or undefined when it can. `own` lists the relay's own
 * addresses (known only at run time; the schema checks the rest without them).
 */
export function realIpProblem(ip: string, own: readonly string[] = []): string | undefined {
  if (!isIpv4(ip)) return "must be an IPv4 address like 203.0.113.10";
  const why = unusableAddress(parseIpv4(ip));
  if (why !== undefined) return why;
  if (own.includes(ip)) return "is one of the relay's own addresses";
  return undefined;
}

/**
 * Why the address `a` (an unsigned 32-bit number) can be no relayed packet's source or
 * destination: loopback, unspecified, broadcast or multicast; else undefined.
 */
export function unusableAddress(a: number): string | undefined {
  const first = (a >>> 24) & 255;
  if (first === 127) return "is a loopback address (127.0.0.0/8)";
  if (first === 0) return "is an unspecified address (0.0.0.0/8)";
  if (a >>> 0 === 0xffffffff) return "is the broadcast address";
  if (first >= 224 && first <= 239) return "is a multicast address (224.0.0.0/4)";
  return undefined;
}

/**
 * Why the server list `text` (real_ip: `ADDRESS[@WEIGHT][@backup],...`, servers/list.ts)
 * cannot be relayed to, or undefined: its form, or {@link realIpProblem} for a server (named
 * when the list has more than one).
 */
export function realIpListProblem(text: string, own: readonly string[] = []): string | undefined {
  const list = parseServerList(text);
  if (typeof list === "string") return list;
  const one = list.length === 1;
  for (const server of list) {
    const why = server.family === 4 ? realIpProblem(server.address, own) : (
      unusableIpv6(server.address) ??
        (own.includes(server.address) ? "is one of the relay's own addresses" : undefined)
    );
    if (why !== undefined) return one && server.family === 4 ? why : `${server.address} ${why}`;
  }
  return undefined;
}

/** Throws `real_ip: <why>` when {@link realIpListProblem} finds one. */
export function checkRealIp(text: string, own: readonly string[] = []): void {
  const why = realIpListProblem(text, own);
  if (why !== undefined) throw new Error(`real_ip: ${why}`);
}
