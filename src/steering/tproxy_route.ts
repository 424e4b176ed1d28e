/**
 * The kernel path's policy route for TPROXY: a packet the nft rules mark with {@link TPROXY_MARK}
 * (see nft.ts) is delivered to a local socket whatever its destination. That is how the
 * server's answers to a client's IPv6 address reach the relay's transparent socket bound to it.
 * IPv4 has none (nft.ts delivers those answers by `tproxy` itself, as any rule costs every
 * routed packet); its removal stays, for what an earlier version's crashed run left.
 *
 * The mark, the routing table and the rule's priority are one fixed number, so that a run can
 * remove what a crashed run left without knowing its configuration.
 *
 * @module
 */

import { TPROXY_MARK } from "./marks.ts";

/** The mark of diverted packets, the routing table and the rule's priority: 0x4b52, "KR". */
const TABLE = String(TPROXY_MARK);
const MARK = `0x${TPROXY_MARK.toString(16)}`;

/**
 * `ip` argument lists that install the rule and the table's one route; `ipv6`: IPv6's (`ip -6`:
 * its own rule and table, same numbers), for the IPv6 servers' answers.
 */
export function routeInstallCommands(ipv6 = false): string[][] {
  if (ipv6) {
    return [
      ["-6", "rule", "add", "fwmark", MARK, "lookup", TABLE, "priority", TABLE],
      ["-6", "route", "replace", "local", "::/0", "dev", "lo", "table", TABLE],
    ];
  }
  return [
    ["rule", "add", "fwmark", MARK, "lookup", TABLE, "priority", TABLE],
    ["route", "replace", "local", "0.0.0.0/0", "dev", "lo", "table", TABLE],
  ];
}

/**
 * `ip` argument lists that remove them. Each may fail harmlessly when there is nothing to
 * remove; the rule's deletion is repeated by the caller until it fails, since a crashed run
 * may have left more than one.
 */
export function routeRemovalCommands(ipv6 = false): { rule: string[]; routes: string[] } {
  const six = ipv6 ? ["-6"] : [];
  return {
    rule: [...six, "rule", "del", "fwmark", MARK, "lookup", TABLE, "priority", TABLE],
    routes: [...six, "route", "flush", "table", TABLE],
  };
}

/** `ip` argument lists whose output shows the rules and the routes (both families), for checks. */
export function routeShowCommands(): string[][] {
  return [
    ["rule", "show", "priority", TABLE],
    ["route", "show", "table", TABLE],
    ["-6", "rule", "show", "priority", TABLE],
    ["-6", "route", "show", "table", TABLE],
  ];
}
