/**
 * Relay threads (`relay_threads` > 1), which then do the main thread's TCP
 * relaying: each is a Worker running relay_thread.ts, a transparent TCP relay with its own
 * poller and its own gateway-port listener, all of them in the port's SO_REUSEPORT group, so
 * that the kernel spreads new connections over the threads and every core works. Given CPUs,
 * each thread keeps to one of them and its listener takes the connections whose handshake that
 * CPU handles (SO_INCOMING_CPU): a connection's packets, its relay thread and, most of the
 * time, its client then share a CPU, and waking the thread takes no interrupt to another CPU.
 *
 * The daemon's view stays synchronous where it was: each thread reports its counters and the
 * service ports of its live connections when they change (at most every 200 ms), and
 * {@link RelayThreads.stats} and {@link RelayThreads.divertedPorts} read the last reports. The
 * connection listing asks the threads ({@link RelayThreads.diverted}); listen, settings and
 * close are requests answered by each thread.
 *
 * @example
 * ```ts ignore
 * const threads = await RelayThreads.start(2, { level: "info", json: false }, settings);
 * await threads.listen(16000);
 * // ...
 * await threads.close();
 * ```
 * @module
 */

import type { FlowCounts, TcpTargetSettings } from "../nat/tcp_targets.ts";
import { cpuForThread } from "../system/cpu_affinity.ts";
import { logger, type LogOptions } from "../system/log.ts";
import type { DivertedConnection } from "./relayed.ts";
import { addGateCounters, type SynGateCounters } from "./syn_gate.ts";
import { addStats, NO_STATS, type TcpRelayStats } from "./stats.ts";
import type { TcpRelaySettings } from "./tcp_relay.ts";

/**
 * What a thread's relay reads: where diverted connections go (the servers and their health:
 * sent again when a server goes down or up), and the timeouts.
 */
export interface ThreadSettings {
  nat: TcpTargetSettings;
  relay: TcpRelaySettings;
}

/** A request to a thread; each is answered with a {@link ThreadReply} of the same id. */
export type ThreadRequest =
  & { id: number }
  & (
    | {
      op: "init";
      log: LogOptions;
      settings: ThreadSettings;
      cpu?: number;
      /** An UpstreamRegistry's memory (upstream_registry.ts). */
      registry?: SharedArrayBuffer;
    }
    | { op: "settings"; settings: ThreadSettings }
    | { op: "listen"; port: number; warmUp?: number }
    | { op: "unlisten" }
    | {
      op: "gate";
      /** The thread holds the SYNs of queue `base` + its CPU (daemon/thread_gate.ts). */
      base: number;
      /** The main thread's performance.timeOrigin: the registry's times are on its clock. */
      origin: number;
    }
    | { op: "diverted" }
    | { op: "close" }
  );

/** A request as the caller gives it; the id is added on the way. */
type RequestBody<R = ThreadRequest> = R extends unknown ? Omit<R, "id"> : never;

/** A thread's answer to a request. */
export type ThreadReply =
  | { id: number; ok: true; value: unknown }
  | { id: number; ok: false; error: string };

/** A relay thread as `krelay status` shows it. */
export interface RelayThreadView {
  /** The CPU it keeps to; null: any (relay_cpu_affinity off, or the kernel refused). */
  cpu: number | null;
  /** Its connections now, and since it started. */
  active: number;
  total: number;
}

/** What a thread reports on its own. */
export interface ThreadReport {
  report: true;
  stats: TcpRelayStats;
  ports: number[];
  /** Connections by "port/server" since the thread started (see TcpRelay.serverCounts). */
  servers: Record<string, FlowCounts>;
  /** The thread's SYN gate's counters, when it holds SYNs (daemon/thread_gate.ts). */
  gate?: SynGateCounters;
}

const log = logger("relay");

/** One Worker and its pending requests. */
class Thread {
  readonly #worker: Worker;
  readonly #pending = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: Error) => void }
  >();
  #nextId = 1;
  /** Why the thread ended, once it has failed: later requests are refused with it. */
  #failure?: Error;
  last: ThreadReport = { report: true, stats: NO_STATS, ports: [], servers: {} };
  /** The CPU the thread keeps to, null when it runs on any. */
  cpu: number | null = null;

  constructor(
    module: URL,
    onFailure: (error: Error) => void,
    onReport: () => void = () => {},
  ) {
    this.#worker = new Worker(module, { type: "module" });
    this.#worker.onmessage = (e: MessageEvent<ThreadReply | ThreadReport>) => {
      const m = e.data;
      if ("report" in m) {
        this.last = m;
        onReport();
        return;
      }
      const p = this.#pending.get(m.id);
      this.#pending.delete(m.id);
      if (m.ok) p?.resolve(m.value);
      else p?.reject(new Error(m.error));
    };
    this.#worker.onerror = (e) => {
      e.preventDefault();
      const error = this.#failure = new Error(`relay thread failed: ${e.message}`);
      log.error("{error}", { error: error.message });
      for (const p of this.#pending.values()) p.reject(error);
      this.#pending.clear();
      this.#worker.terminate();
      onFailure(error);
    };
  }

  request<T>(request: RequestBody): Promise<T> {
    if (this.#failure) return Promise.reject(this.#failure);
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.#worker.postMessage({ ...request, id });
    });
  }

  terminate(): void {
    this.#worker.terminate();
  }
}

/** The extra relay threads of a daemon. */
export class RelayThreads {
  readonly #threads: Thread[];
  #listeners: readonly number[] = [];
  #listeners6: readonly number[] = [];

  private constructor(threads: Thread[]) {
    this.#threads = threads;
  }

  /**
   * Starts `count` threads; rejects (and stops those started) if any cannot start. A thread
   * that fails later (an uncaught error) is ended and reported to `onFailure`: its listener and
   * connections are beyond repair from outside, so the daemon gives up and exits.
   */
  static async start(
    count: number,
    log: LogOptions,
    settings: ThreadSettings,
    options: {
      onFailure?: (error: Error) => void;
      /** A thread reported its counters (at once after a failed connection to a server). */
      onReport?: () => void;
      module?: URL;
      /** Each thread keeps to one of these CPUs, in turn (see {@link cpuForThread}). */
      cpus?: readonly number[];
      /** Connections made before the client's handshake, shared with the threads. */
      registry?: SharedArrayBuffer;
    } = {},
  ): Promise<RelayThreads> {
    const module = options.module ?? new URL("./relay_thread.ts", import.meta.url);
    const onFailure = options.onFailure ?? (() => {});
    const cpus = options.cpus ?? [];
    const threads = Array.from(
      { length: count },
      () => new Thread(module, onFailure, options.onReport),
    );
    try {
      await Promise.all(threads.map(async (t, i) => {
        const cpu = cpus.length > 0 ? cpuForThread(cpus, i) : undefined;
        const registry = options.registry;
        const init = { op: "init" as const, log, settings, cpu, registry };
        t.cpu = (await t.request<number | null>(init)) ?? null;
      }));
    } catch (e) {
      for (const t of threads) t.terminate();
      throw e;
    }
    return new RelayThreads(threads);
  }

  /** Passes new settings on; each thread's next connection reads them. */
  async configure(settings: ThreadSettings): Promise<void> {
    await Promise.all(this.#threads.map((t) => t.request({ op: "settings", settings })));
  }

  /**
   * Every thread listens on `port` (see {@link TcpRelay.listen}); the first time, each then
   * relays `warmUp` loopback connections before this resolves (see {@link TcpRelay.warmUp}).
   */
  async listen(port: number, warmUp = 0): Promise<void> {
    const answers = await Promise.all(
      this.#threads.map((t) => t.request<[number, number]>({ op: "listen", port, warmUp })),
    );
    // A thread without IPv6 listener answers -1 for it.
    const fds = answers.map((a) => Array.isArray(a) ? a : [a, -1]);
    this.#listeners = fds.map(([v4]) => v4);
    this.#listeners6 = fds.map(([, v6]) => v6).filter((fd) => fd >= 0);
  }

  /**
   * Each thread holds the SYNs of queue `base` + its CPU, when its module can (see
   * daemon/gate_thread.ts): the queue each bound, null where one did not (no CPU of its own, a
   * plain relay thread, a queue taken).
   */
  async gate(base: number): Promise<(number | null)[]> {
    const origin = performance.timeOrigin;
    return await Promise.all(
      this.#threads.map((t) => t.request<number | null>({ op: "gate", base, origin })),
    );
  }

  /** The threads' SYN gates' counters, as last reported, added up; undefined: none holds. */
  gateCounters(): SynGateCounters | undefined {
    let sum: SynGateCounters | undefined;
    for (const t of this.#threads) {
      const g = t.last.gate;
      if (g === undefined) continue;
      sum = sum === undefined ? { ...g } : addGateCounters(sum, g);
    }
    return sum;
  }

  /** Every thread stops listening; relayed connections go on. */
  async unlisten(): Promise<void> {
    this.#listeners = [];
    this.#listeners6 = [];
    await Promise.all(this.#threads.map((t) => t.request({ op: "unlisten" })));
  }

  /** The threads' listeners' descriptors (threads share the process's descriptors). */
  get listeners(): readonly number[] {
    return this.#listeners;
  }

  /** The threads' IPv6 listeners' descriptors (none where the host has no IPv6). */
  get listeners6(): readonly number[] {
    return this.#listeners6;
  }

  /** The threads' counters, as last reported. */
  stats(): TcpRelayStats {
    return addStats(...this.#threads.map((t) => t.last.stats));
  }

  /** Each thread's CPU and connection counters, as last reported. */
  threads(): RelayThreadView[] {
    return this.#threads.map((t) => ({
      cpu: t.cpu,
      active: t.last.stats.active,
      total: t.last.stats.total,
    }));
  }

  /** The threads' connections by "port/server", as last reported, added up. */
  serverCounts(): Record<string, FlowCounts> {
    return sumCounts(...this.#threads.map((t) => t.last.servers));
  }

  /** The service ports of the threads' live connections, as last reported. */
  divertedPorts(): Set<number> {
    return new Set(this.#threads.flatMap((t) => t.last.ports));
  }

  /** The threads' connections now, with clock values on `now`'s clock. */
  async diverted(now: number): Promise<DivertedConnection[]> {
    const lists = await Promise.all(
      this.#threads.map((t) => t.request<DivertedConnection[]>({ op: "diverted" })),
    );
    return lists.flat().map((c) => ({
      ...c,
      created: now + c.created,
      lastSeen: now + c.lastSeen,
    }));
  }

  /** Closes every thread's relay (resetting its connections) and ends the threads. */
  async close(): Promise<void> {
    await Promise.allSettled(this.#threads.map((t) => t.request({ op: "close" })));
    for (const t of this.#threads) t.terminate();
  }
}

/** Counts by "port/server" of several relays, added up. */
export function sumCounts(...all: Record<string, FlowCounts>[]): Record<string, FlowCounts> {
  const sum: Record<string, FlowCounts> = {};
  for (const counts of all) {
    for (const [key, c] of Object.entries(counts)) {
      const s = sum[key] ??= { active: 0, total: 0, connected: 0, failed: 0 };
      s.active += c.active;
      s.total += c.total;
      s.connected += c.connected;
      s.failed += c.failed;
    }
  }
  return sum;
}
