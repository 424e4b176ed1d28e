/**
 * Runs `krelay run` in a lab's relay namespace, the way a user would (through the launcher),
 * and reads its JSON log.
 *
 * @module
 */

import type { Lab } from "../../src/lab/topology.ts";
import type { LabProcess, RunResult } from "../../src/lab/process.ts";
import { KRELAY_LAUNCHER, LAB_RELAY_FLAGS, spawnKrelay } from "../../src/lab/krelay_process.ts";
import { routeShowCommands } from "../../src/steering/tproxy_route.ts";

/** The launcher at the repository root. */
export const KRELAY = KRELAY_LAUNCHER;

/** The flags every lab test gives: the lab's addresses, never the defaults. */
export const LAB_FLAGS: string[] = [...LAB_RELAY_FLAGS];

/** One JSON log record. */
export interface LogRecord {
  level: string;
  message: string;
  properties?: Record<string, unknown>;
  [k: string]: unknown;
}

/** A running krelay. */
export class KrelayRun {
  constructor(readonly process: LabProcess, readonly socket: string) {}

  /** Every JSON log line so far. */
  async records(): Promise<LogRecord[]> {
    const text = await this.process.readLog();
    return text.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
  }

  /** Stops it with SIGTERM and returns its exit code. */
  async stop(): Promise<number> {
    return (await this.process.stop(10_000)).code;
  }

  /** The record it logged when it closed, with its final counters. */
  async finalRecord(): Promise<LogRecord> {
    const closed = (await this.records()).find((r) => r.message.startsWith("closed;"));
    if (!closed) {
      throw new Error(`no "closed" record in the log:\n${await this.process.logTail()}`);
    }
    return closed;
  }

  /** The engine counters it logged when it closed. */
  async finalCounters(): Promise<Record<string, number>> {
    return (await this.finalRecord()).properties?.counters as Record<string, number>;
  }
}

/** A control socket of the lab's own, so that labs in parallel never share one. */
/**
 * Flags for one TCP service alone (no UDP service), its servers checked every second: what the
 * refusal tests relay.
 */
export function tcpServiceFlags(port: number): string[] {
  return ["--tcp-ports", String(port), "--udp-ports", "", "--health-interval", "1"];
}

export function controlSocket(lab: Lab, name = "krelay"): string {
  return `${lab.runDir}/${name}.sock`;
}

/**
 * `krelay ARGS --socket <the lab's control socket>` in the relay namespace, through the
 * launcher; with `check`, it throws when the command fails.
 */
export function krelayCommand(
  lab: Lab,
  args: readonly string[],
  check = false,
): Promise<RunResult> {
  return lab.exec("relay", [KRELAY, ...args, "--socket", controlSocket(lab)], { check });
}

/** `krelay config set KEY VALUE` in the relay namespace; asserts it succeeds, gives its output. */
export async function krelayConfigSet(lab: Lab, key: string, value: string): Promise<string> {
  const r = await krelayCommand(lab, ["config", "set", key, value]);
  if (!r.success) throw new Error(`config set ${key} ${value}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

/**
 * Starts krelay in the relay namespace and waits until it relays (or, with --stopped among the
 * args, until it is up and stopped), or fails with its log.
 */
export async function startKrelay(
  lab: Lab,
  args: string[] = LAB_FLAGS,
  name = "krelay",
  wrap?: readonly string[],
): Promise<KrelayRun> {
  const socket = controlSocket(lab, name);
  const proc = await spawnKrelay(lab, ["--log-json", "--control-socket", socket, ...args], {
    name,
    wrap,
  });
  return new KrelayRun(proc, socket);
}

/**
 * krelay's rules in the relay namespace: its iptables chains, its nftables table, and its
 * policy rule and route (the kernel path's TPROXY).
 */
export async function krelayRules(lab: Lab): Promise<string[]> {
  const out: string[] = [];
  for (const table of ["raw", "mangle", "nat", "filter"]) {
    const r = await lab.exec("relay", ["iptables", "-w", "-t", table, "-S"], { check: true });
    out.push(...r.stdout.split("\n").filter((l) => /krelay|KRELAY/.test(l)));
  }
  const nft = await lab.exec("relay", ["nft", "list", "tables"]);
  out.push(...nft.stdout.split("\n").filter((l) => /krelay/.test(l)));
  for (const args of routeShowCommands()) {
    // An absent table is an error to `ip route show`: nothing of krelay's there either.
    const r = await lab.exec("relay", ["ip", ...args]);
    out.push(...r.stdout.split("\n").filter((l) => l.trim() !== ""));
  }
  return out;
}
