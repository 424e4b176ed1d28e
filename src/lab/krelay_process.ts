/**
 * Runs `krelay run` in a lab's relay namespace, through the repository's launcher, and waits
 * until it relays (or, with `--stopped`, until it is up), failing with its log if it exits.
 * The lab command, the benchmarks, the tests and the VM fixture all start krelay this way.
 *
 * @module
 */

import { LAB_ADDR, LAB_ADDR6 } from "./addresses.ts";
import type { LabProcess } from "./process.ts";
import type { Lab } from "./topology.ts";
import { waitFor } from "./wait.ts";

/** The launcher at the repository root. */
export const KRELAY_LAUNCHER = new URL("../../krelay", import.meta.url).pathname;

/** The flags that point krelay at the lab: its real server and relay address. */
export const LAB_RELAY_FLAGS: readonly string[] = [
  "--real-ip",
  LAB_ADDR.server,
  "--relay-ip",
  LAB_ADDR.relay,
];

/** {@link LAB_RELAY_FLAGS} with the lab's IPv6 server and relay addresses too (dual stack). */
export const LAB_RELAY_FLAGS_DUAL: readonly string[] = [
  "--real-ip",
  `${LAB_ADDR.server},${LAB_ADDR6.server}`,
  "--relay-ip",
  `${LAB_ADDR.relay},${LAB_ADDR6.relay}`,
];

/** Options of {@link spawnKrelay}. */
export interface SpawnKrelayOptions {
  /** Process name (and log file name) in the lab; default "krelay". */
  name?: string;
  /** How long krelay may take to start; default 30 s. */
  timeoutMs?: number;
  /** A command that runs the launcher, e.g. `setpriv` with fewer capabilities. */
  wrap?: readonly string[];
}

/** Starts `krelay run ARGS` in the relay namespace and waits until it is ready. */
export async function spawnKrelay(
  lab: Lab,
  args: readonly string[],
  opts: SpawnKrelayOptions = {},
): Promise<LabProcess> {
  const argv = [...opts.wrap ?? [], KRELAY_LAUNCHER, "run", ...args];
  const proc = lab.spawn("relay", opts.name ?? "krelay", argv);
  // Both log formats carry the message text: "relaying on ..." or "started stopped: ...".
  const ready = args.includes("--stopped") ? "started stopped" : "relaying on";
  await waitFor(async () => {
    if (!proc.running) throw new Error(`krelay exited early:\n${await proc.logTail(30)}`);
    return (await proc.readLog()).includes(ready);
  }, { timeoutMs: opts.timeoutMs ?? 30_000, what: "krelay to start" });
  return proc;
}
