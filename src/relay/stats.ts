/**
 * A TCP relay's connection counters, summed over relay threads and over closed and live relays.
 *
 * @example
 * ```ts
 * import { addStats, NO_STATS } from "./stats.ts";
 * addStats(NO_STATS, { ...NO_STATS, total: 2 }).total; // 2
 * ```
 * @module
 */

/** Connection counters. */
export interface TcpRelayStats {
  /** Connections being relayed now. */
  active: number;
  /** Connections accepted since start. */
  total: number;
  /** Connections that could not be relayed (no service, server refused or silent, no fd). */
  failed: number;
  /** Bytes relayed client -> server and server -> client, of finished and live connections. */
  bytesToServer: number;
  bytesToClient: number;
  /** Clients reset because no file descriptor was left (EMFILE/ENFILE). */
  fdLimit: number;
  /** Of those failed, connections reset at once because no server of their service was up. */
  noServer: number;
  /** Of `active` and `total`: the IPv6 clients' connections. */
  ipv6Active: number;
  ipv6Total: number;
}

/** Counters of no connection at all. */
export const NO_STATS: Readonly<TcpRelayStats> = {
  active: 0,
  total: 0,
  failed: 0,
  bytesToServer: 0,
  bytesToClient: 0,
  fdLimit: 0,
  noServer: 0,
  ipv6Active: 0,
  ipv6Total: 0,
};

/** The counters of several relays (threads, or closed and live ones) together. */
export function addStats(...all: TcpRelayStats[]): TcpRelayStats {
  const sum = { ...NO_STATS };
  for (const s of all) {
    for (const k of Object.keys(sum) as (keyof TcpRelayStats)[]) sum[k] += s[k];
  }
  return sum;
}
