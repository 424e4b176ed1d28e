/**
 * A steering spec over the lab's addresses, for the steering tests; override what a test is about.
 *
 * @module
 */

import type { CommandResult, CommandRunner } from "../system/command.ts";
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

/** A runner that records calls; jump deletions succeed `staleJumps` times, then fail. */
export function recorder(opts: { staleJumps?: number; restoreFails?: boolean } = {}) {
  const calls: string[] = [];
  let stale = opts.staleJumps ?? 0;
  const run: CommandRunner = (cmd, args) => {
    calls.push(`${cmd} ${args.join(" ")}`);
    let r: CommandResult = { code: 0, stdout: "", stderr: "" };
    if (args.includes("-D")) r = stale-- > 0 ? r : { code: 1, stdout: "", stderr: "no rule" };
    if (cmd.endsWith("-restore") && opts.restoreFails) r = { code: 2, stdout: "", stderr: "bad" };
    return Promise.resolve(r);
  };
  return { run, calls };
}
