/**
 * One script's sandbox: a Deno process of its own with no permission and a memory limit
 * (`--max-old-space-size`), whose entry module imports the script and serves batches
 * ({@link serve} in worker_runtime.ts) over its stdin and stdout (frame.ts). One batch at a
 * time, each with a time budget: past it the process is killed (a runaway loop cannot be
 * interrupted any other way) and the batch reported as timed out.
 *
 * A process, not a Worker, because a Worker shares krelay's process: its memory has no limit
 * (an allocating timer ends krelay with "out of memory"), its threads outlive `terminate` when
 * it started workers of its own, and its output floods krelay's. A process is watched from
 * outside ({@link ScriptWatch}): its resident memory, the CPU it uses outside batches (a
 * spinning timer) and the bytes it writes; past a limit it is killed with everything it
 * started, and the host disables the script. krelay's own loop never waits on it.
 *
 * Longer than 400 lines: a script's process, its framed pipe and its watchdog (memory, CPU,
 * output) share one lifecycle that must end them together.
 *
 * @module
 */

import { decodeFrame, encodeFrame, FrameReader } from "./frame.ts";
import {
  type BatchPacket,
  encodeBatch,
  type LogLine,
  type ResultMessage,
  type WorkerMessage,
} from "./wire.ts";

const RUNTIME_URL = new URL("./worker_runtime.ts", import.meta.url).href;

/** util-linux's setpriv, when installed (it sets the parent-death signal). */
const PDEATHSIG = ["/usr/bin/setpriv", "/bin/setpriv"].find((path) => {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
});

/** How long a new process may take to load its script. */
export const READY_TIMEOUT_MS = 15_000;

/** The limits a script's process runs under. */
export interface ScriptLimits {
  /** V8 heap (`--max-old-space-size`), MB; the resident set may exceed it by {@link RSS_SLACK_MB}. */
  memoryMb: number;
  /** CPU time (ms) the process may use per second outside batches (timers, GC it causes). */
  idleCpuMsPerS: number;
  /** Bytes of console output (log messages, stderr) per second. */
  outputBytesPerS: number;
}

/** The defaults: 128 MB, 200 ms of CPU a second outside batches, 1 MB of output a second. */
export const DEFAULT_LIMITS: ScriptLimits = {
  memoryMb: 128,
  idleCpuMsPerS: 200,
  outputBytesPerS: 1 << 20,
};

/** Resident memory above the heap limit a process may use: Deno's own, and buffers. */
export const RSS_SLACK_MB = 96;
/** How often the process's memory and CPU are read. */
export const WATCH_INTERVAL_MS = 200;

/** How a batch ended. */
export type BatchResult =
  | { kind: "result"; result: ResultMessage }
  | { kind: "timeout" }
  | { kind: "crashed"; error: string };

/** The entry module of a script's process, as a data: URL (it needs no file). */
export function entryModule(scriptUrl: string, name: string): string {
  const source = [
    // The runtime first: it captures the console (and takes Worker away) before the script's
    // top-level code runs.
    `import { serve } from ${JSON.stringify(RUNTIME_URL)};`,
    `import * as script from ${JSON.stringify(scriptUrl)};`,
    `serve(script, ${JSON.stringify(name)});`,
  ].join("\n");
  return `data:application/javascript;base64,${btoa(source)}`;
}

/** What a {@link ScriptWorker} reports outside batches. */
export interface ScriptWorkerEvents {
  /** Console lines of the script. */
  onLog(lines: LogLine[]): void;
  /** The process failed outside a batch (an exception in a timer, say); it is gone. */
  onCrash(error: string): void;
  /**
   * The process went past a limit (memory, CPU outside batches, output) and was killed: the
   * script must not simply be restarted.
   */
  onLimit(why: string): void;
}

/** The host's handle on one script's process. */
export class ScriptWorker {
  #child: Deno.ChildProcess;
  #stdin: WritableStreamDefaultWriter<Uint8Array>;
  #seq = 0;
  #pending?: {
    seq: number;
    resolve: (r: BatchResult) => void;
    timer: ReturnType<typeof setTimeout>;
  };
  #dead = false;
  #retiring = false;
  /** Set once a limit killed the process: its exit is then no crash of its own. */
  #limited = false;
  #ready?: (m: WorkerMessage) => void;
  #stderrTail = "";
  #watch: ScriptWatch;
  /** What the script exports. */
  exports = { match: false, target: false };

  private constructor(
    child: Deno.ChildProcess,
    private readonly events: ScriptWorkerEvents,
    private readonly limits: ScriptLimits,
  ) {
    this.#child = child;
    this.#stdin = child.stdin.getWriter();
    this.#watch = new ScriptWatch(child.pid, limits);
  }

  /**
   * Starts a process for the script at `scriptUrl` and waits until the script is loaded.
   * Rejects with the reason when the script throws while loading, exports neither function,
   * or does not load within `readyTimeoutMs`.
   */
  static start(
    scriptUrl: string,
    name: string,
    events: ScriptWorkerEvents,
    limits: ScriptLimits = DEFAULT_LIMITS,
    readyTimeoutMs = READY_TIMEOUT_MS,
  ): Promise<ScriptWorker> {
    const deno = [Deno.execPath(), "run"];
    // Killed with krelay, even by SIGKILL (a script spinning in a timer never sees its stdin
    // close): setpriv sets the parent-death signal, then becomes Deno.
    const command = PDEATHSIG === undefined ? deno : [PDEATHSIG, "--pdeathsig", "KILL", ...deno];
    const child = new Deno.Command(command[0], {
      args: [
        ...command.slice(1),
        // No --allow flag: no files, network, subprocesses, FFI, environment or system info.
        "--no-prompt",
        "--no-config",
        "--quiet",
        `--v8-flags=--max-old-space-size=${limits.memoryMb}`,
        entryModule(scriptUrl, name),
      ],
      cwd: "/",
      env: { NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" },
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const handle = new ScriptWorker(child, events, limits);
    // The kernel's OOM killer takes the script before krelay (best effort).
    Deno.writeTextFile(`/proc/${child.pid}/oom_score_adj`, "1000").catch(() => {});
    return new Promise<ScriptWorker>((resolve, reject) => {
      let settled = false;
      const fail = (why: string) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        handle.terminate();
        reject(new Error(why));
      };
      const timer = setTimeout(
        () => fail(`the script did not load within ${readyTimeoutMs / 1000} s`),
        readyTimeoutMs,
      );
      handle.#ready = (m) => {
        if (m.kind === "failed") fail(m.error);
        else if (m.kind === "ready" && !settled) {
          settled = true;
          clearTimeout(timer);
          handle.exports = { match: m.match, target: m.target };
          handle.#ready = undefined;
          handle.#watch.start((why) => handle.#overLimit(why));
          resolve(handle);
        }
      };
      handle.#readStdout();
      handle.#readStderr();
      child.status.then(() => {
        const why = handle.#stderrError();
        fail(`the script failed while loading: ${why}`);
        handle.#exited(why);
      });
    });
  }

  /** False once the process is gone (after a timeout, a crash, or {@link terminate}). */
  get alive(): boolean {
    return !this.#dead;
  }

  /** The process id (for tests). */
  get pid(): number {
    return this.#child.pid;
  }

  /**
   * Sends `packets` to the script and resolves with its answer, or with `timeout` after
   * `budgetMs` (the process is then killed), or `crashed`. One batch at a time.
   */
  run(packets: readonly BatchPacket[], budgetMs: number): Promise<BatchResult> {
    if (this.#dead) {
      return Promise.resolve({ kind: "crashed", error: "the script's process is gone" });
    }
    if (this.#pending) throw new Error("a batch is already in flight");
    const message = encodeBatch(++this.#seq, packets);
    return new Promise<BatchResult>((resolve) => {
      const timer = setTimeout(() => {
        this.#settle({ kind: "timeout" });
        this.terminate();
      }, budgetMs);
      this.#pending = { seq: message.seq, resolve, timer };
      this.#watch.batchStarted();
      // Not awaited: a script that stopped reading is ended by the budget's timer.
      this.#stdin.write(encodeFrame(message)).catch(() => {});
    });
  }

  /** Kills the process (and everything it runs) now; a batch in flight ends `crashed`. */
  terminate(): void {
    if (this.#dead) return;
    this.#dead = true;
    this.#watch.stop();
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
    this.#stdin.close().catch(() => {});
    this.#settle({ kind: "crashed", error: "the script's process was ended" });
  }

  /** Ends the process once the batch in flight (if any) is answered. */
  retire(): void {
    if (this.#pending) this.#retiring = true;
    else this.terminate();
  }

  /** Resolves once the process has exited (after {@link terminate}, say). */
  get exited(): Promise<unknown> {
    return this.#child.status;
  }

  #settle(result: BatchResult): void {
    const pending = this.#pending;
    if (!pending) return;
    this.#pending = undefined;
    clearTimeout(pending.timer);
    this.#watch.batchEnded();
    pending.resolve(result);
    if (this.#retiring) this.terminate();
  }

  #overLimit(why: string): void {
    if (this.#dead) return;
    this.#limited = true;
    this.terminate();
    this.events.onLimit(why);
  }

  #message(m: WorkerMessage): void {
    if (m.kind === "log") return this.events.onLog(m.logs);
    if (this.#ready) return this.#ready(m);
    if (m.kind === "result") {
      if (m.logs.length > 0) this.events.onLog(m.logs);
      if (this.#pending?.seq === m.seq) this.#settle({ kind: "result", result: m });
    }
  }

  async #readStdout(): Promise<void> {
    const frames = new FrameReader();
    try {
      for await (const chunk of this.#child.stdout) {
        for (const body of frames.push(chunk)) {
          const m = decodeFrame(body) as WorkerMessage;
          // Console output is what a script controls: its bytes count against the limit.
          if (m.kind !== "ready" && m.kind !== "failed" && m.kind !== "result") {
            this.#watch.output(body.length);
          } else if (m.kind === "result") {
            for (const l of m.logs) this.#watch.output(l.text.length);
          }
          if (this.#dead) return;
          this.#message(m);
        }
      }
    } catch (e) {
      // Garbage on stdout (the script wrote there itself): the process cannot be trusted.
      if (!this.#dead) {
        this.#overLimit(`it wrote something else than messages: ${(e as Error).message}`);
      }
    }
  }

  async #readStderr(): Promise<void> {
    const decoder = new TextDecoder();
    try {
      for await (const chunk of this.#child.stderr) {
        this.#watch.output(chunk.length);
        this.#stderrTail = (this.#stderrTail + decoder.decode(chunk, { stream: true })).slice(
          -4096,
        );
      }
    } catch {
      // The process is gone.
    }
  }

  /** The error in what the process wrote to stderr last, for messages. */
  #stderrError(): string {
    const text = this.#stderrTail; // NO_COLOR: plain text
    if (/out of memory|heap limit/i.test(text)) {
      return `it ran out of memory (limit ${this.limits.memoryMb} MB)`;
    }
    const line = text.split("\n").find((l) => /^error: /.test(l.trim()));
    return (line ?? text.trim().split("\n").at(-1) ?? "").replace(/^\s*error: /, "") ||
      "its process ended";
  }

  /** The process ended: a crash, unless krelay ended it. */
  #exited(why: string): void {
    // Let the last stdout bytes (an answer) be read first.
    setTimeout(() => {
      if (this.#dead) return;
      const inBatch = this.#pending !== undefined;
      this.#dead = true;
      this.#watch.stop();
      this.#settle({ kind: "crashed", error: why });
      if (this.#limited) return;
      if (why.startsWith("it ran out of memory")) this.events.onLimit(why);
      else if (!inBatch) this.events.onCrash(why);
    }, 20);
  }
}

/**
 * Watches a script's process from outside: its resident memory and the CPU it uses outside
 * batches, read from /proc every {@link WATCH_INTERVAL_MS}, and the bytes it writes.
 */
export class ScriptWatch {
  #timer?: ReturnType<typeof setInterval>;
  #onLimit?: (why: string) => void;
  #lastCpuMs = -1;
  #batchSince = -1;
  #batchMs = 0;
  /** CPU used outside batches within the current second, and when that second began. */
  #idleCpu = 0;
  #output = 0;
  #windowStart = 0;

  constructor(private readonly pid: number, private readonly limits: ScriptLimits) {}

  /** Starts watching; `onLimit` is called once, with the reason, when a limit is passed. */
  start(onLimit: (why: string) => void): void {
    this.#onLimit = onLimit;
    this.#windowStart = performance.now();
    this.#timer = setInterval(() => this.#check(), WATCH_INTERVAL_MS);
    // Never keeps krelay (or a test) alive on its own.
    Deno.unrefTimer(this.#timer);
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#onLimit = undefined;
  }

  batchStarted(): void {
    this.#batchSince = performance.now();
  }

  batchEnded(): void {
    if (this.#batchSince >= 0) this.#batchMs += performance.now() - this.#batchSince;
    this.#batchSince = -1;
  }

  /** Counts `bytes` of console output; past the limit within a second, the process ends. */
  output(bytes: number): void {
    this.#output += bytes;
    if (this.#output > this.limits.outputBytesPerS) {
      this.#limit(
        `it wrote more than ${this.limits.outputBytesPerS} bytes of console output in a second`,
      );
    }
  }

  #limit(why: string): void {
    const onLimit = this.#onLimit;
    this.stop();
    onLimit?.(why);
  }

  #check(): void {
    const stat = readProc(this.pid);
    if (stat === undefined) return;
    const limitMb = this.limits.memoryMb + RSS_SLACK_MB;
    if (stat.rssMb > limitMb) {
      return this.#limit(`it used ${Math.round(stat.rssMb)} MB of memory (limit ${limitMb} MB)`);
    }
    const now = performance.now();
    if (this.#batchSince >= 0) {
      this.#batchMs += now - this.#batchSince;
      this.#batchSince = now;
    }
    if (this.#lastCpuMs >= 0) {
      this.#idleCpu += Math.max(0, stat.cpuMs - this.#lastCpuMs - this.#batchMs);
    }
    this.#lastCpuMs = stat.cpuMs;
    this.#batchMs = 0;
    if (this.#idleCpu > this.limits.idleCpuMsPerS) {
      return this.#limit(
        `it used ${Math.round(this.#idleCpu)} ms of CPU within a second outside packet batches ` +
          `(limit ${this.limits.idleCpuMsPerS} ms: a timer that runs too long)`,
      );
    }
    if (now - this.#windowStart >= 1000) {
      this.#windowStart = now;
      this.#idleCpu = 0;
      this.#output = 0;
    }
  }
}

const CLOCK_TICKS = 100;

/** A process's resident memory (MB) and CPU time (ms, user + system, all its threads). */
export function readProc(pid: number): { rssMb: number; cpuMs: number } | undefined {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // Fields after the command name (which may hold spaces), from field 3 (state) on.
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const cpuMs = ((Number(f[11]) + Number(f[12])) * 1000) / CLOCK_TICKS;
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const rss = /VmRSS:\s+(\d+) kB/.exec(status);
    return { rssMb: rss ? Number(rss[1]) / 1024 : 0, cpuMs };
  } catch {
    return undefined;
  }
}
