/**
 * dig from the lab's client, as the end-to-end tests ask it: a bounded number of tries of a
 * bounded time each, and an assertion for a query the relay must refuse at once.
 *
 * @module
 */

import { ok as assert } from "node:assert/strict";
import type { RunResult } from "../../src/lab/process.ts";
import type { Lab } from "../../src/lab/topology.ts";

/** How dig asks. */
export interface DigOptions {
  /** Seconds per try (+time); default 2. */
  time?: number;
  /** Tries (+tries); default 1. */
  tries?: number;
  /** +short (the answer only); default true. */
  short?: boolean;
  /** The server's port (-p); default 53. */
  port?: number;
  /** The client's address#port (-b). */
  from?: string;
}

/** dig `@server` `args` (name, type) from the client; the command is killed after its tries. */
export function dig(
  lab: Lab,
  server: string,
  args: readonly string[],
  opts: DigOptions = {},
): Promise<RunResult> {
  const { time = 2, tries = 1, short = true } = opts;
  const argv = ["dig", `+time=${time}`, `+tries=${tries}`];
  if (short) argv.push("+short");
  if (opts.port !== undefined) argv.push("-p", String(opts.port));
  if (opts.from !== undefined) argv.push("-b", opts.from);
  return lab.exec("client", [...argv, `@${server}`, ...args], {
    timeoutMs: (time * tries + 10) * 1000,
  });
}

/**
 * Asserts that dig, with one try of 5 s, says "connection refused" within `withinMs`: the
 * server's port unreachable came back through the relay instead of dig waiting out its
 * timeout.
 */
export async function assertDigRefused(
  lab: Lab,
  server: string,
  args: readonly string[],
  withinMs: number,
  port?: number,
): Promise<void> {
  const started = performance.now();
  const r = await dig(lab, server, args, { time: 5, short: false, port });
  const ms = performance.now() - started;
  assert(/refused/i.test(r.stdout + r.stderr), r.stdout + r.stderr);
  assert(ms < withinMs, `dig took ${ms} ms`);
}
