/**
 * Running commands for the lab: one-shot commands with captured output and a timeout, and
 * long-running processes tracked by PID with their output in a log file. Both work in the
 * current namespace or, through `ip netns exec`, inside a lab namespace.
 *
 * @example
 * ```ts
 * import { runIn } from "./process.ts";
 * const r = await runIn("krl-cli", ["ip", "-br", "addr"], { timeoutMs: 2000 });
 * console.log(r.stdout);
 * ```
 * @module
 */

/** Options for {@link run} and {@link runIn}. */
export interface RunOptions {
  /** Kill the command (TERM, then KILL after a second) when it runs longer. Default 10 s. */
  timeoutMs?: number;
  /** Written to the command's standard input, which is then closed. */
  stdin?: string | Uint8Array;
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Throw a {@link CommandError} when the command fails or times out. Default false. */
  check?: boolean;
}

/** What a finished command did. */
export interface RunResult {
  /** The argv that ran (with the `ip netns exec NS` part for {@link runIn}). */
  command: string[];
  /** Exit code (128 + signal number when killed by a signal). */
  code: number;
  /** Exit code 0 and not timed out. */
  success: boolean;
  /** The signal that ended it, if one did. */
  signal: Deno.Signal | null;
  stdout: string;
  stderr: string;
  /** True when the timeout killed it. */
  timedOut: boolean;
  durationMs: number;
}

/** A command that failed or timed out under `check: true`. */
export class CommandError extends Error {
  /** The failed command's result. */
  readonly result: RunResult;
  constructor(result: RunResult) {
    const why = result.timedOut ? "timed out" : `exited with code ${result.code}`;
    const err = result.stderr.trim().split("\n").slice(-5).join("\n");
    super(`${result.command.join(" ")} ${why}${err ? `: ${err}` : ""}`);
    this.name = "CommandError";
    this.result = result;
  }
}

const DEFAULT_TIMEOUT_MS = 10_000;
const KILL_AFTER_TERM_MS = 1_000;
const decoder = new TextDecoder();

/** The argv that runs `cmd` inside network namespace `ns`. */
export function nsArgv(ns: string, cmd: readonly string[]): string[] {
  return ["ip", "netns", "exec", ns, ...cmd];
}

/**
 * Runs a command to completion in the current namespace and captures its output. The command
 * gets a session of its own, so a timeout kills whatever it started too.
 */
export async function run(cmd: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  if (cmd.length === 0) throw new RangeError("run(): empty command");
  const started = performance.now();
  const child = new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    stdin: opts.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    env: opts.env,
    detached: true,
  }).spawn();
  let timedOut = false;
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  let killTimer: ReturnType<typeof setTimeout> | undefined;
  const termTimer = setTimeout(() => {
    timedOut = true;
    signalGroup(child.pid, "SIGTERM");
    killTimer = setTimeout(() => signalGroup(child.pid, "SIGKILL"), KILL_AFTER_TERM_MS);
  }, timeoutMs);
  try {
    if (opts.stdin !== undefined) {
      const w = child.stdin.getWriter();
      try {
        await w.write(
          typeof opts.stdin === "string" ? new TextEncoder().encode(opts.stdin) : opts.stdin,
        );
      } catch {
        // The command may exit without reading its input; its status says what happened.
      } finally {
        await w.close().catch(() => {});
      }
    }
    const out = await child.output();
    const result: RunResult = {
      command: [...cmd],
      code: out.code,
      success: out.success && !timedOut,
      signal: out.signal,
      stdout: decoder.decode(out.stdout),
      stderr: decoder.decode(out.stderr),
      timedOut,
      durationMs: performance.now() - started,
    };
    if (opts.check && !result.success) throw new CommandError(result);
    return result;
  } finally {
    clearTimeout(termTimer);
    clearTimeout(killTimer);
  }
}

/** Runs a command inside network namespace `ns` (see {@link run}). */
export function runIn(ns: string, cmd: readonly string[], opts?: RunOptions): Promise<RunResult> {
  return run(nsArgv(ns, cmd), opts);
}

/** Sends a signal to a process group, falling back to the process; false when neither exists. */
export function signalGroup(pid: number, signal: Deno.Signal): boolean {
  try {
    Deno.kill(-pid, signal);
    return true;
  } catch {
    try {
      Deno.kill(pid, signal);
      return true;
    } catch {
      return false;
    }
  }
}

/** True when a process with this PID exists (a zombie counts). */
export function pidExists(pid: number): boolean {
  try {
    Deno.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Options for {@link spawnProcess}. */
export interface SpawnOptions {
  /** Standard output and error are appended here. */
  logPath: string;
  /** Extra environment variables. */
  env?: Record<string, string>;
}

/**
 * A long-running process started by {@link spawnProcess}: its PID is also its process group
 * (it runs in a session of its own), so stopping it also stops what it forked.
 */
export class LabProcess {
  /** A short name for logs and messages, e.g. "nginx-srv1". */
  readonly name: string;
  /** The argv as given (without the log redirection wrapper). */
  readonly command: readonly string[];
  /** Where its standard output and error go. */
  readonly logPath: string;
  /** PID (and process group id). */
  readonly pid: number;
  /** Resolves when the process has exited and been reaped. */
  readonly status: Promise<Deno.CommandStatus>;
  #exit: Deno.CommandStatus | undefined;

  constructor(name: string, command: readonly string[], logPath: string, child: Deno.ChildProcess) {
    this.name = name;
    this.command = command;
    this.logPath = logPath;
    this.pid = child.pid;
    this.status = child.status.then((s) => (this.#exit = s));
  }

  /** False once the process has exited. */
  get running(): boolean {
    return this.#exit === undefined;
  }

  /** The exit status, once it has exited. */
  get exitStatus(): Deno.CommandStatus | undefined {
    return this.#exit;
  }

  /**
   * Stops the process group: SIGTERM, then SIGKILL when it is still there after `graceMs`.
   * Resolves with the exit status; safe to call more than once.
   */
  async stop(graceMs = 3_000): Promise<Deno.CommandStatus> {
    if (this.#exit) return this.#exit;
    signalGroup(this.pid, "SIGTERM");
    if (await settlesWithin(this.status, graceMs)) return this.status;
    signalGroup(this.pid, "SIGKILL");
    // A process in uninterruptible sleep may outlive SIGKILL for a while; never hang on it.
    if (await settlesWithin(this.status, 5_000)) return this.status;
    throw new Error(`${this.name} (pid ${this.pid}) did not exit after SIGKILL`);
  }

  /** The log so far ("" when it does not exist yet). */
  async readLog(): Promise<string> {
    try {
      return await Deno.readTextFile(this.logPath);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return "";
      throw e;
    }
  }

  /** The last `lines` lines of the log, for error messages. */
  async logTail(lines = 15): Promise<string> {
    const text = (await this.readLog()).trimEnd();
    return text.split("\n").slice(-lines).join("\n");
  }
}

/**
 * Starts a long-running command in the current namespace with its output appended to
 * `opts.logPath`. Standard input is /dev/null. Deno keeps no pipe to it, so the log stays
 * complete even when the process outlives us.
 */
export function spawnProcess(name: string, cmd: readonly string[], opts: SpawnOptions): LabProcess {
  if (cmd.length === 0) throw new RangeError("spawnProcess(): empty command");
  // sh only redirects and then becomes the command (exec), so the PID is the command's.
  const child = new Deno.Command("sh", {
    args: ["-c", 'log=$1; shift; exec "$@" >>"$log" 2>&1 </dev/null', "sh", opts.logPath, ...cmd],
    stdin: "null",
    stdout: "null",
    stderr: "null",
    env: opts.env,
    detached: true,
  }).spawn();
  return new LabProcess(name, cmd, opts.logPath, child);
}

/** Starts a long-running command inside network namespace `ns` (see {@link spawnProcess}). */
export function spawnIn(
  ns: string,
  name: string,
  cmd: readonly string[],
  opts: SpawnOptions,
): LabProcess {
  return spawnProcess(name, nsArgv(ns, cmd), opts);
}

/** True when `p` settles within `ms` (its rejection counts as settling). */
export async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([p.then(() => true, () => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
