/**
 * A steering spec over the lab's addresses, for the steering tests; override what a test is about.
 *
 * @module
 */

import type { SteeringSpec } from "./steering.ts";

/** Relay 198.51.100.1, real server 203.0.113.10, UDP 53, TCP 80, gateway port 16000, queue 0. */
export function labSpec(overrides: Partial<SteeringSpec> = {}): SteeringSpec {
  return {
    queue: 0,
    relayIp: "198.51.100.1",
    realIp: "203.0.113.10",
    gport: 16000,
    udpPorts: [53],
    tcpPorts: [80],
    scriptedUdpPorts: [],
    scriptedTcpPorts: [],
    tcpConntrack: true,
    udpTimeout: 30,
    natMaxEntries: 65536,
    ...overrides,
  };
}
