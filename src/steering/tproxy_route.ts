/**
 * The policy routes of earlier versions, for removal only: a packet marked with
 * {@link TPROXY_MARK} was delivered to a local socket whatever its destination, which is how
 * the servers' answers to a client's address reached the relay's transparent socket bound to
 * it. No family has one now: nft.ts hands those answers over by `tproxy` and readdresses them
 * to the relay (T4_DELIVERY), since any policy rule costs every routed packet of the namespace
 * two rule lookups. A run still removes what an earlier version's crashed run left.
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
 * `ip` argument lists that remove an earlier version's rule and route (`ipv6`: IPv6's). Each
 * may fail harmlessly when there is nothing to remove; the rule's deletion is repeated by the
 * caller until it fails, since a crashed run may have left more than one.
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
