/**
 * Removing labs: one lab by prefix (what `up()` does first, so setup is idempotent), and the
 * labs a crashed run left behind. Each lab records its owner (PID and start time) in
 * {@link OWNER_DIR}, so stale-lab cleanup never removes a lab whose owner still runs, such as
 * another test run working in parallel.
 *
 * @example
 * ```ts
 * import { cleanupStale } from "./cleanup.ts";
 * const removed = await cleanupStale(/^krt-/); // prefixes of the labs it removed
 * ```
 * @module
 */

import { allLabNamespaces, assertPrefix, parseLabNamespace, parseNetnsList } from "./names.ts";
import { run } from "./process.ts";
import { sleep } from "./wait.ts";

/** Where labs record their owner, one `<prefix>.json` each. */
export const OWNER_DIR = "/run/krelay-lab";

/** Who owns a lab, written when the lab comes up and removed with it. */
export interface OwnerRecord {
  prefix: string;
  /** PID of the process that built the lab. */
  pid: number;
  /** That process's start time (field 22 of /proc/PID/stat), so a reused PID is not taken for it. */
  pidStart: string | undefined;
  /** The lab's run directory. */
  runDir: string;
  /** Whether the run directory is to be kept when the lab is removed. */
  keepRunDir: boolean;
  /** ISO time the lab was built. */
  createdAt: string;
}

/**
 * Start time of a live process (clock ticks since boot), or undefined when there is no such
 * process or it has already exited (a zombie nobody reaped yet).
 */
export async function processStartTime(pid: number): Promise<string | undefined> {
  try {
    const stat = parseStat(await Deno.readTextFile(`/proc/${pid}/stat`));
    return stat.state === "Z" || stat.state === "X" ? undefined : stat.startTime;
  } catch {
    return undefined;
  }
}

/**
 * Fields 3 (state) and 22 (starttime) of a /proc/PID/stat line; the command name before them
 * may hold spaces and ")".
 */
export function parseStat(stat: string): { state?: string; startTime?: string } {
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // Fields after the name start at field 3.
  return { state: fields[0], startTime: fields[22 - 3] };
}

function ownerPath(prefix: string): string {
  return `${OWNER_DIR}/${prefix}.json`;
}

/** Writes the owner record of a lab (this process). Best effort: labs work without it. */
export async function writeOwner(
  prefix: string,
  runDir: string,
  keepRunDir: boolean,
): Promise<void> {
  const rec: OwnerRecord = {
    prefix,
    pid: Deno.pid,
    pidStart: await processStartTime(Deno.pid),
    runDir,
    keepRunDir,
    createdAt: new Date().toISOString(),
  };
  try {
    await Deno.mkdir(OWNER_DIR, { recursive: true });
    await Deno.writeTextFile(ownerPath(prefix), JSON.stringify(rec) + "\n");
  } catch {
    // Without a record the lab simply counts as stale once its namespaces are seen unowned.
  }
}

/** The owner record of a lab, if there is a readable one. */
export async function readOwner(prefix: string): Promise<OwnerRecord | undefined> {
  try {
    return JSON.parse(await Deno.readTextFile(ownerPath(prefix))) as OwnerRecord;
  } catch {
    return undefined;
  }
}

/** True when the process that wrote `rec` still runs. */
export async function ownerAlive(rec: OwnerRecord): Promise<boolean> {
  const start = await processStartTime(rec.pid);
  return start !== undefined && (rec.pidStart === undefined || start === rec.pidStart);
}

/** Names of all network namespaces that `ip netns` knows. */
export async function listNamespaces(): Promise<string[]> {
  const r = await run(["ip", "netns", "list"], { timeoutMs: 5_000, check: true });
  return parseNetnsList(r.stdout);
}

/** PIDs of the processes inside namespace `ns` ([] when it does not exist). */
export async function namespacePids(ns: string): Promise<number[]> {
  const r = await run(["ip", "netns", "pids", ns], { timeoutMs: 5_000 });
  if (!r.success) return [];
  return r.stdout.split("\n").map((s) => Number(s.trim())).filter((n) =>
    Number.isInteger(n) && n > 0 && n !== Deno.pid
  );
}

/**
 * Stops every process inside one of our namespaces, by PID: SIGTERM, then SIGKILL for those
 * still there after `graceMs`. Anything running in a lab namespace was started for that lab.
 * Returns the PIDs it signalled.
 */
export async function stopNamespaceProcesses(ns: string, graceMs = 2_000): Promise<number[]> {
  const pids = await namespacePids(ns);
  if (pids.length === 0) return [];
  for (const pid of pids) kill(pid, "SIGTERM");
  const polls = Math.ceil(graceMs / 50);
  let left = pids;
  for (let i = 0; i < polls && left.length > 0; i++) {
    await sleep(50);
    const now = new Set(await namespacePids(ns));
    left = left.filter((p) => now.has(p));
  }
  for (const pid of left) kill(pid, "SIGKILL");
  return pids;
}

function kill(pid: number, signal: Deno.Signal): void {
  try {
    Deno.kill(pid, signal);
  } catch {
    // Already gone.
  }
}

/** Options for {@link removeLab}. */
export interface RemoveOptions {
  /** How long processes get between SIGTERM and SIGKILL. Default 2 s. */
  graceMs?: number;
  /** Namespace names known to exist (saves one `ip netns list`). */
  existing?: string[];
  /** Leave the run directory alone even when the owner record says to remove it. */
  keepRunDir?: boolean;
}

/**
 * Removes every namespace of the lab with this prefix, after stopping the processes inside
 * them, and its owner record; also its run directory unless that was to be kept. Returns the
 * namespaces it deleted. A no-op when nothing of that lab exists.
 */
export async function removeLab(prefix: string, opts: RemoveOptions = {}): Promise<string[]> {
  assertPrefix(prefix);
  const existing = new Set(opts.existing ?? await listNamespaces());
  const ours = allLabNamespaces(prefix).filter((n) => existing.has(n));
  await Promise.all(ours.map((ns) => stopNamespaceProcesses(ns, opts.graceMs)));
  const failed: string[] = [];
  for (const ns of ours) {
    const r = await run(["ip", "netns", "delete", ns], { timeoutMs: 5_000 });
    if (!r.success) failed.push(`${ns}: ${r.stderr.trim()}`);
  }
  const rec = await readOwner(prefix);
  if (rec && !rec.keepRunDir && !opts.keepRunDir && isLabRunDir(rec.runDir)) {
    await Deno.remove(rec.runDir, { recursive: true }).catch(() => {});
  }
  await Deno.remove(ownerPath(prefix)).catch(() => {});
  if (failed.length > 0) throw new Error(`could not delete namespaces: ${failed.join("; ")}`);
  return ours;
}

/** Run directories are named `krelay-lab-<prefix>-XXXX`; refuse to delete anything else. */
export function isLabRunDir(path: string): boolean {
  return /(^|\/)krelay-lab-[a-z0-9-]+$/.test(path);
}

/**
 * Removes labs left by runs that are gone: namespaces named `<prefix>-cli|rly|srv|srv2` where
 * `prefixPattern` matches the prefix and the lab's owner no longer runs (or left no record).
 * Labs whose owner is alive are left alone. Returns the prefixes of the labs it removed.
 */
export async function cleanupStale(
  prefixPattern: RegExp,
  opts: { graceMs?: number } = {},
): Promise<string[]> {
  const names = await listNamespaces();
  const prefixes = new Set<string>();
  for (const name of names) {
    const parsed = parseLabNamespace(name);
    if (parsed && prefixPattern.test(parsed.prefix)) prefixes.add(parsed.prefix);
  }
  // A run that crashed between writing its record and creating namespaces left only the record.
  for (const prefix of await recordedPrefixes()) {
    if (prefixPattern.test(prefix)) prefixes.add(prefix);
  }
  const removed: string[] = [];
  for (const prefix of prefixes) {
    const rec = await readOwner(prefix);
    if (rec && await ownerAlive(rec)) continue;
    await removeLab(prefix, { graceMs: opts.graceMs, existing: names });
    removed.push(prefix);
  }
  return removed;
}

async function recordedPrefixes(): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(OWNER_DIR)) {
      const prefix = e.name.endsWith(".json") ? e.name.slice(0, -5) : "";
      if (e.isFile && prefix && parseLabNamespace(`${prefix}-cli`)?.prefix === prefix) {
        out.push(prefix);
      }
    }
  } catch {
    // No records yet.
  }
  return out;
}
