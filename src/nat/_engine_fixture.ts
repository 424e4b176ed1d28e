/**
 * A rewrite engine over the lab's addresses with a fake clock, for the NAT tests and benches.
 *
 * @module
 */

import { onePool } from "../servers/balancer.ts";
import { parseIpv4 } from "../packet/address.ts";
import { Ipv4Packet, parseIpv4Packet } from "../packet/ipv4_packet.ts";
import { NatTable } from "./nat_table.ts";
import { Rewriter, type RewriterSettings } from "./rewriter.ts";

/** The lab's addresses as numbers: clients, relay (both sides), servers. */
export const ADDR = {
  C: parseIpv4("198.51.100.10"),
  C2: parseIpv4("198.51.100.11"),
  R: parseIpv4("198.51.100.1"),
  RS: parseIpv4("203.0.113.1"),
  S: parseIpv4("203.0.113.10"),
  S2: parseIpv4("203.0.113.20"),
};

/** Options of {@link engineFixture}. */
export interface FixtureOptions {
  capacity?: number;
  tcpPorts?: number[];
  /** UDP ports with a packet script: NATed here both ways (default none: first packets only). */
  scriptedUdpPorts?: number[];
}

/** An engine relaying UDP 53 and TCP `tcpPorts` (default 80) from R to S. */
export function engineFixture(opts: FixtureOptions = {}) {
  let clock = 0;
  const settings: RewriterSettings = {
    relayIp: ADDR.R,
    pool: onePool(ADDR.S),
    udpPorts: new Set([53]),
    udpTimeoutMs: 30_000,
    udpStreamTimeoutMs: 120_000,
    tcpPorts: new Set(opts.tcpPorts ?? [80]),
    scriptedUdpPorts: new Set(opts.scriptedUdpPorts ?? []),
  };
  const table = new NatTable({ capacity: opts.capacity ?? 1024, now: () => clock });
  const engine = new Rewriter({ table, settings: () => settings, now: () => clock });
  return {
    engine,
    table,
    settings,
    now: () => clock,
    tick: (ms: number) => (clock += ms),
  };
}

/** Parses bytes known to be a packet. */
export function view(bytes: Uint8Array): Ipv4Packet {
  return parseIpv4Packet(bytes) as Ipv4Packet;
}
