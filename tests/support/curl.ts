/**
 * curl from the lab's client, as the end-to-end tests ask it: quiet but for errors, with a
 * bounded time.
 *
 * @module
 */

import type { RunResult } from "../../src/lab/process.ts";
import type { Lab } from "../../src/lab/topology.ts";

/**
 * curl `args` (flags and URL) from the client, given `timeoutMs` in all (--max-time); the
 * command itself is killed 5 s after.
 */
export function curl(lab: Lab, args: readonly string[], timeoutMs = 30_000): Promise<RunResult> {
  return lab.exec("client", ["curl", "-sS", "--max-time", String(timeoutMs / 1000), ...args], {
    timeoutMs: timeoutMs + 5_000,
  });
}
