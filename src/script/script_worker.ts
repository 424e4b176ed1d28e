/**
 * One script's sandbox: a Deno Worker with no permissions whose entry module imports the
 * script and serves batches ({@link serve} in worker_runtime.ts). One batch at a time, each
 * with a time budget: past it the worker is terminated (a runaway loop cannot be interrupted
 * any other way) and the batch reported as timed out.
 *
 * @module
 */

import {
  type BatchPacket,
  encodeBatch,
  type LogLine,
  type ResultMessage,
  type WorkerMessage,
} from "./wire.ts";

const RUNTIME_URL = new URL("./worker_runtime.ts", import.meta.url).href;

/** How long a new worker may take to load its script. */
export const READY_TIMEOUT_MS = 15_000;

/** How a batch ended. */
export type BatchResult =
  | { kind: "result"; result: ResultMessage }
  | { kind: "timeout" }
  | { kind: "crashed"; error: string };

/** The entry module of a script's worker, as a data: URL (it needs no file). */
export function entryModule(scriptUrl: string, name: string): string {
  const source = [
    // The runtime first: it captures the console before the script's top-level code runs.
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
  /** The worker failed outside a batch (an exception in a timer, say); it is terminated. */
  onCrash(error: string): void;
}

/** The host's handle on one script's worker. */
export class ScriptWorker {
  #worker: Worker;
  #seq = 0;
  #pending?: {
    seq: number;
    resolve: (r: BatchResult) => void;
    timer: ReturnType<typeof setTimeout>;
  };
  #dead = false;
  #retiring = false;
  /** What the script exports. */
  exports = { match: false, target: false };

  private constructor(worker: Worker, private readonly events: ScriptWorkerEvents) {
    this.#worker = worker;
  }

  /**
   * Starts a worker for the script at `scriptUrl` and waits until the script is loaded.
   * Rejects with the reason when the script throws while loading, exports neither function,
   * or does not load within `readyTimeoutMs`.
   */
  static start(
    scriptUrl: string,
    name: string,
    events: ScriptWorkerEvents,
    readyTimeoutMs = READY_TIMEOUT_MS,
  ): Promise<ScriptWorker> {
    const worker = new Worker(entryModule(scriptUrl, name), {
      type: "module",
      name: `krelay-script-${name}`,
      // No permission at all: no files, network, subprocesses, FFI, environment or system info.
      deno: { permissions: "none" },
    } as WorkerOptions);
    const handle = new ScriptWorker(worker, events);
    return new Promise<ScriptWorker>((resolve, reject) => {
      const fail = (why: string) => {
        clearTimeout(timer);
        handle.terminate();
        reject(new Error(why));
      };
      const timer = setTimeout(
        () => fail(`the script did not load within ${readyTimeoutMs / 1000} s`),
        readyTimeoutMs,
      );
      worker.onerror = (e: ErrorEvent) => {
        e.preventDefault();
        fail(`the script failed while loading: ${e.message}`);
      };
      worker.onmessage = (e: MessageEvent<WorkerMessage>) => {
        const m = e.data;
        if (m.kind === "log") events.onLog(m.logs);
        else if (m.kind === "failed") fail(m.error);
        else if (m.kind === "ready") {
          clearTimeout(timer);
          handle.exports = { match: m.match, target: m.target };
          handle.#listen();
          resolve(handle);
        }
      };
    });
  }

  /** False once terminated (after a timeout, a crash, or {@link terminate}). */
  get alive(): boolean {
    return !this.#dead;
  }

  /**
   * Sends `packets` to the script and resolves with its answer, or with `timeout` after
   * `budgetMs` (the worker is then terminated), or `crashed`. One batch at a time.
   */
  run(packets: readonly BatchPacket[], budgetMs: number): Promise<BatchResult> {
    if (this.#dead) return Promise.resolve({ kind: "crashed", error: "the worker is gone" });
    if (this.#pending) throw new Error("a batch is already in flight");
    const message = encodeBatch(++this.#seq, packets);
    return new Promise<BatchResult>((resolve) => {
      const timer = setTimeout(() => {
        this.#settle({ kind: "timeout" });
        this.terminate();
      }, budgetMs);
      this.#pending = { seq: message.seq, resolve, timer };
      this.#worker.postMessage(message, [message.data, message.meta.buffer as ArrayBuffer]);
    });
  }

  /** Terminates the worker now; a batch in flight ends as `crashed`. Idempotent. */
  terminate(): void {
    if (this.#dead) return;
    this.#dead = true;
    this.#worker.terminate();
    this.#settle({ kind: "crashed", error: "the worker was terminated" });
  }

  /** Terminates the worker once the batch in flight (if any) is answered. */
  retire(): void {
    if (this.#pending) this.#retiring = true;
    else this.terminate();
  }

  #settle(result: BatchResult): void {
    const pending = this.#pending;
    if (!pending) return;
    this.#pending = undefined;
    clearTimeout(pending.timer);
    pending.resolve(result);
    if (this.#retiring) this.terminate();
  }

  #listen(): void {
    this.#worker.onmessage = (e: MessageEvent<WorkerMessage>) => {
      const m = e.data;
      if (m.kind === "result") {
        if (m.logs.length > 0) this.events.onLog(m.logs);
        if (this.#pending?.seq === m.seq) this.#settle({ kind: "result", result: m });
      } else if (m.kind === "log") {
        this.events.onLog(m.logs);
      }
    };
    this.#worker.onerror = (e: ErrorEvent) => {
      // Handled here, so that it never reaches (and ends) krelay's own process.
      e.preventDefault();
      const error = e.message;
      const inBatch = this.#pending !== undefined;
      this.#settle({ kind: "crashed", error });
      this.terminate();
      if (!inBatch) this.events.onCrash(error);
    };
    this.#worker.onmessageerror = () => {
      this.#settle({ kind: "crashed", error: "a message from the worker could not be read" });
      this.terminate();
    };
  }
}
