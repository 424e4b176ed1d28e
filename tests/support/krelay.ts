/**
 * Runs `krelay run` in a lab's relay namespace, the way a user would (through the launcher),
 * and reads its JSON log.
 *
 * @module
 */

import type { Lab } from "../../src/lab/topology.ts";
import type { LabProcess } from "../../src/lab/process.ts";
import { waitFor } from "../../src/lab/wait.ts";
import { LAB_ADDR } from "../../src/lab/addresses.ts";

/** The launcher at the repository root. */
export const KRELAY = new URL("../../krelay", import.meta.url).pathname;

/** The flags every lab test gives: the lab's addresses, never the defaults. */
export const LAB_FLAGS = ["--real-ip", LAB_ADDR.server, "--relay-ip", LAB_ADDR.relay];

/** One JSON log record. */
export interface LogRecord {
  level: string;
  message: string;
  properties?: Record<string, unknown>;
  [k: string]: unknown;
}

/** A running krelay. */
export class KrelayRun {
  constructor(readonly process: LabProcess) {}

  /** Every JSON log line so far. */
  async records(): Promise<LogRecord[]> {
    const text = await this.process.readLog();
    return text.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
  }

  /** Stops it with SIGTERM and returns its exit code. */
  async stop(): Promise<number> {
    return (await this.process.stop(10_000)).code;
  }

  /** The engine counters it logged when it stopped. */
  async finalCounters(): Promise<Record<string, number>> {
    const stopped = (await this.records()).find((r) => r.message.startsWith("stopped"));
    if (!stopped) {
      throw new Error(`no "stopped" record in the log:\n${await this.process.logTail()}`);
    }
    return stopped.properties?.counters as Record<string, number>;
  }
}

/** Starts krelay in the relay namespace and waits until it relays (or fails with its log). */
export async function startKrelay(
  lab: Lab,
  args: string[] = LAB_FLAGS,
  name = "krelay",
): Promise<KrelayRun> {
  const proc = lab.spawn("relay", name, [KRELAY, "run", "--log-json", ...args]);
  const run = new KrelayRun(proc);
  await waitFor(async () => {
    if (!proc.running) throw new Error(`krelay exited early:\n${await proc.logTail(30)}`);
    return (await proc.readLog()).includes('"message":"relaying');
  }, { timeoutMs: 20_000, what: "krelay to start relaying" });
  return run;
}

/** krelay's chains present in the relay namespace's raw and mangle tables. */
export async function krelayRules(lab: Lab): Promise<string[]> {
  const out: string[] = [];
  for (const table of ["raw", "mangle", "nat", "filter"]) {
    const r = await lab.exec("relay", ["iptables", "-w", "-t", table, "-S"], { check: true });
    out.push(...r.stdout.split("\n").filter((l) => /krelay|KRELAY/.test(l)));
  }
  return out;
}
