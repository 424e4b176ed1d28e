/**
 * Relayed connections hosted by worker threads (connections_worker.ts): the main thread
 * accepts and connects, the workers move the bytes and close, so a relay uses more than one
 * core. Connections go to the worker with the fewest; hand-overs made in one accept round leave
 * in one message per worker ({@link WorkerConnections.flush}).
 *
 * @example
 * ```ts ignore
 * const host = new WorkerConnections(2, events, { level: "info", json: false });
 * host.add(1, clientFd, serverFd, true);
 * host.flush();
 * ```
 *
 * @module
 */

import type { LogOptions } from "../system/log.ts";
import type { ConnectionEvents, ConnectionHost } from "./connections.ts";
import type { FromWorker, ToWorker } from "./connections_worker.ts";
import type { PumpCounters } from "./pump.ts";

/** One worker and what the main thread knows of it. */
interface Hosted {
  worker: Worker;
  /** Connections handed over and not ended yet. */
  open: number;
  /** [id, client, server, connecting] quads not sent yet. */
  pending: number[];
  live: [number, number];
  closed?: () => void;
}

/** Connections spread over `count` workers. */
export class WorkerConnections implements ConnectionHost {
  readonly #workers: Hosted[] = [];

  constructor(
    count: number,
    private readonly events: ConnectionEvents,
    log: LogOptions,
    sizes: { pipeSize: number; copySize: number },
  ) {
    for (let i = 0; i < count; i++) {
      const worker = new Worker(new URL("./connections_worker.ts", import.meta.url), {
        type: "module",
        name: `krelay-connections-${i}`,
      });
      const hosted: Hosted = { worker, open: 0, pending: [], live: [0, 0] };
      worker.onmessage = (e: MessageEvent<FromWorker>) => this.#receive(hosted, e.data);
      worker.onerror = (e) => {
        // A worker that dies takes its connections' sockets with it only at process exit;
        // say so loudly rather than silently.
        e.preventDefault();
        console.error(`krelay: connection worker ${i} failed: ${e.message}`);
      };
      this.#send(hosted, { t: "init", log, ...sizes });
      this.#workers.push(hosted);
    }
  }

  add(id: number, client: number, server: number, connecting: boolean): void {
    let to = this.#workers[0];
    for (const w of this.#workers) if (w.open + w.pending.length / 4 < to.open) to = w;
    to.pending.push(id, client, server, connecting ? 1 : 0);
  }

  /** Sends the hand-overs made since the last flush. */
  flush(): void {
    for (const w of this.#workers) {
      if (w.pending.length === 0) continue;
      w.open += w.pending.length / 4;
      this.#send(w, { t: "add", quads: w.pending });
      w.pending = [];
    }
  }

  setTimeouts(connectTimeoutMs: number, idleTimeoutMs: number): void {
    for (const w of this.#workers) {
      this.#send(w, { t: "timeouts", connectTimeoutMs, idleTimeoutMs });
    }
  }

  abortAll(): void {
    this.flush();
    for (const w of this.#workers) this.#send(w, { t: "abortAll" });
  }

  live(): PumpCounters {
    let toServer = 0;
    let toClient = 0;
    for (const w of this.#workers) {
      toServer += w.live[0];
      toClient += w.live[1];
    }
    return { toServer, toClient };
  }

  async close(): Promise<void> {
    await Promise.all(this.#workers.map((w) =>
      new Promise<void>((resolve) => {
        // Bounded: a worker that does not answer is terminated anyway.
        const timer = setTimeout(resolve, 2_000);
        w.closed = () => {
          clearTimeout(timer);
          resolve();
        };
        this.#send(w, { t: "close" });
      })
    ));
    for (const w of this.#workers) w.worker.terminate();
    this.#workers.length = 0;
  }

  #send(w: Hosted, message: ToWorker): void {
    w.worker.postMessage(message);
  }

  #receive(w: Hosted, m: FromWorker): void {
    if (m.t === "closed") {
      w.closed?.();
      return;
    }
    for (const id of m.connected) this.events.connected(id);
    for (const [id, end] of m.ended) {
      w.open--;
      this.events.ended(id, end);
    }
    if (m.live !== undefined) w.live = m.live;
    else if (w.open === 0) w.live = [0, 0];
  }
}
