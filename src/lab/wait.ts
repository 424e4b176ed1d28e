/**
 * Bounded waiting: poll a condition until it holds or a deadline passes, and the conditions
 * the lab needs (a socket listens in a namespace, a log file shows a line).
 *
 * @example
 * ```ts
 * import { waitForListen } from "./wait.ts";
 * await waitForListen("krl-srv", "tcp", 80, { address: "203.0.113.10", timeoutMs: 5000 });
 * ```
 * @module
 */

import { runIn } from "./process.ts";

/** A condition that did not hold in time. */
export class WaitTimeoutError extends Error {
  constructor(what: string, timeoutMs: number, detail?: string) {
    super(`timed out after ${timeoutMs} ms waiting for ${what}${detail ? `: ${detail}` : ""}`);
    this.name = "WaitTimeoutError";
  }
}

/** Options for {@link waitFor}. */
export interface WaitOptions {
  /** Give up after this long. Default 5 s. */
  timeoutMs?: number;
  /** Pause between checks. Default 50 ms. */
  intervalMs?: number;
  /** Named in the timeout error. */
  what?: string;
  /**
   * Checked before every poll: a string ends the wait at once with that reason (e.g. the
   * process that should open the port has exited).
   */
  abort?: () => string | undefined | Promise<string | undefined>;
}

/**
 * Polls `check` until it returns true; throws a {@link WaitTimeoutError} when `timeoutMs`
 * passes first, or an Error with the abort reason. A check that throws counts as false.
 */
export async function waitFor(
  check: () => boolean | Promise<boolean>,
  opts: WaitOptions = {},
): Promise<void> {
  const timeoutMs = opts.timeoutMs ?? 5_000;
  const intervalMs = opts.intervalMs ?? 50;
  const what = opts.what ?? "a condition";
  const deadline = performance.now() + timeoutMs;
  // The count bound backs up the time bound in case a check itself returns instantly forever.
  const maxPolls = Math.ceil(timeoutMs / Math.max(intervalMs, 1)) + 2;
  for (let i = 0; i < maxPolls; i++) {
    const reason = await opts.abort?.();
    if (reason) throw new Error(`gave up waiting for ${what}: ${reason}`);
    let ok = false;
    try {
      ok = await check();
    } catch {
      ok = false;
    }
    if (ok) return;
    const left = deadline - performance.now();
    if (left <= 0) break;
    await sleep(Math.min(intervalMs, left));
  }
  throw new WaitTimeoutError(what, timeoutMs);
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** One listening socket, as `ss -l` shows it. */
export interface Listener {
  /** Local address, without brackets or `%interface`; `*` and `0.0.0.0` mean any. */
  address: string;
  port: number;
}

/** Parses `ss -H -l -n -t` (or `-u`) output into local address and port pairs. */
export function parseSsListeners(text: string): Listener[] {
  const out: Listener[] = [];
  for (const line of text.split("\n")) {
    const cols = line.trim().split(/\s+/);
    // State Recv-Q Send-Q Local:Port Peer:Port [Process]
    if (cols.length < 5) continue;
    const local = cols[3];
    const colon = local.lastIndexOf(":");
    if (colon <= 0) continue;
    const port = Number(local.slice(colon + 1));
    if (!Number.isInteger(port)) continue;
    let address = local.slice(0, colon).replace(/^\[|\]$/g, "");
    const pct = address.indexOf("%");
    if (pct >= 0) address = address.slice(0, pct);
    out.push({ address, port });
  }
  return out;
}

const WILDCARDS = new Set(["*", "0.0.0.0", "::"]);

/** True when one of `listeners` accepts `port` on `address` (any address when omitted). */
export function listensOn(listeners: Listener[], port: number, address?: string): boolean {
  return listeners.some((l) =>
    l.port === port &&
    (address === undefined || l.address === address || WILDCARDS.has(l.address))
  );
}

/** The TCP or UDP sockets listening inside namespace `ns`. */
export async function listeners(ns: string, proto: "tcp" | "udp"): Promise<Listener[]> {
  const r = await runIn(ns, ["ss", "-H", "-l", "-n", proto === "tcp" ? "-t" : "-u"], {
    timeoutMs: 3_000,
    check: true,
  });
  return parseSsListeners(r.stdout);
}

/** Options for {@link waitForListen}. */
export interface ListenWaitOptions extends Omit<WaitOptions, "what"> {
  /** The address the socket must accept (a wildcard bind also does). */
  address?: string;
}

/** Waits until a TCP or UDP socket listens on `port` inside namespace `ns`. */
export function waitForListen(
  ns: string,
  proto: "tcp" | "udp",
  port: number,
  opts: ListenWaitOptions = {},
): Promise<void> {
  return waitFor(async () => listensOn(await listeners(ns, proto), port, opts.address), {
    intervalMs: 50,
    ...opts,
    what: `${proto} ${opts.address ?? "*"}:${port} to listen in ${ns}`,
  });
}

/**
 * Waits until the file at `path` has a line matching `pattern` and returns that line (the
 * first one that matches).
 */
export async function waitForLine(
  path: string,
  pattern: RegExp,
  opts: Omit<WaitOptions, "what"> = {},
): Promise<string> {
  let found: string | undefined;
  await waitFor(async () => {
    let text: string;
    try {
      text = await Deno.readTextFile(path);
    } catch {
      return false;
    }
    found = text.split("\n").find((l) => pattern.test(l));
    return found !== undefined;
  }, { ...opts, what: `a line matching ${pattern} in ${path}` });
  return found!;
}

/** Outcome of {@link probeTcp}: a connection, a refusal (so the host was reached), or neither. */
export type ProbeResult = "open" | "refused" | "failed";

/**
 * Tries one TCP connection from namespace `ns` to `address:port` (bash's /dev/tcp, so no
 * client tool is needed). "refused" proves the host was reached: it answered with a reset.
 */
export async function probeTcp(
  ns: string,
  address: string,
  port: number,
  timeoutMs = 2_000,
): Promise<ProbeResult> {
  const r = await runIn(ns, ["bash", "-c", `exec 3<>"/dev/tcp/$0/$1"`, address, String(port)], {
    timeoutMs,
    env: { LC_ALL: "C" },
  });
  if (r.success) return "open";
  return /connection refused/i.test(r.stderr) ? "refused" : "failed";
}
