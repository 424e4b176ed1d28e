/**
 * What a relay thread does (relay_thread.ts is the Worker's entry module): a transparent
 * {@link TcpRelay} of its own, with its own poller and its own gateway-port listener in the
 * port's SO_REUSEPORT group, so that the kernel spreads new connections over the threads. Driven by {@link RelayThreads} in the main
 * thread through the messages of relay_threads.ts; it reports its counters and live service
 * ports on its own, at most every {@link REPORT_MS}, and at once after a failed connection to a
 * server.
 *
 * A diverted connection needs nothing but the settings (where it goes) and, when the main
 * thread held its SYN, the connection made for it (the registry's shared memory).
 *
 * @module
 */

/// <reference lib="deno.worker" />

import { TcpTargets } from "../nat/tcp_targets.ts";
import { pinThisThread } from "../system/cpu_affinity.ts";
import { logger, setupLogging } from "../system/log.ts";
import { TcpRelay, type TcpRelaySettings } from "./tcp_relay.ts";
import { UpstreamRegistry } from "./upstream_registry.ts";
import { warmUp } from "./warm_up.ts";
import type { ThreadReport, ThreadRequest, ThreadSettings } from "./relay_threads.ts";

/** How often a thread reports its counters and live ports, when they changed. */
export const REPORT_MS = 200;

let settings: ThreadSettings | undefined;
let relay: TcpRelay | undefined;
let targets: TcpTargets | undefined;
let registry: UpstreamRegistry | undefined;
let pinnedCpu: number | undefined;
/** More for the report (see {@link addToReport}). */
let reportMore: (() => Record<string, unknown>) | undefined;
let reporter: ReturnType<typeof setInterval> | undefined;
let lastReport = "";
/** A report is due at once: a connection to a server failed (see TcpRelayOptions.onFailed). */
let failedReport: ReturnType<typeof setTimeout> | undefined;

/** Reports soon after a failed connection, once for the failures of one turn of the loop. */
function reportFailure(): void {
  failedReport ??= setTimeout(() => {
    failedReport = undefined;
    report();
  }, 0);
}

function report(force = false): void {
  if (relay === undefined) return;
  const r: ThreadReport = {
    report: true,
    stats: relay.stats(),
    ports: [...relay.divertedPorts()].sort((a, b) => a - b),
    servers: relay.serverCounts(),
    ...reportMore?.(),
  };
  const text = JSON.stringify(r);
  if (!force && text === lastReport) return;
  lastReport = text;
  self.postMessage(r);
}

/**
 * Keeps this thread to `cpu` when asked; where the kernel refuses (a CPU outside the process's
 * set, a cpuset changed since), the thread runs on any CPU and its listener takes connections
 * by hash, as without affinity: the relay goes on either way.
 */
function keepTo(cpu: number | undefined): number | undefined {
  if (cpu === undefined) return undefined;
  try {
    pinThisThread(cpu);
    return cpu;
  } catch (e) {
    logger("relay").warning("relay thread runs on any CPU: {error}", {
      error: (e as Error).message,
    });
    return undefined;
  }
}

/**
 * What this thread's relay is made of, once initialised: for a worker entry that adds to the
 * relay (the SYN gate per thread, daemon/gate_thread.ts).
 */
export function threadParts(): ThreadParts | undefined {
  if (relay === undefined || targets === undefined) return undefined;
  return {
    relay,
    targets,
    settings: () => settings!.relay,
    ...(registry === undefined ? {} : { registry }),
    ...(pinnedCpu === undefined ? {} : { cpu: pinnedCpu }),
  };
}

/** See {@link threadParts}. */
export interface ThreadParts {
  relay: TcpRelay;
  targets: TcpTargets;
  settings: () => TcpRelaySettings;
  /** The registry shared with the main thread, when it holds SYNs. */
  registry?: UpstreamRegistry;
  /** The CPU the thread keeps to. */
  cpu?: number;
}

/** Adds `more()`'s fields to every report (sent when anything in it changed). */
export function addToReport(more: () => Record<string, unknown>): void {
  reportMore = more;
}

/** Serves one request of relay_threads.ts (see the module documentation). */
export async function serveRelayRequest(request: ThreadRequest): Promise<unknown> {
  switch (request.op) {
    case "init": {
      await setupLogging(request.log);
      settings = request.settings;
      const cpu = pinnedCpu = keepTo(request.cpu);
      targets = new TcpTargets(() => settings!.nat);
      registry = request.registry && new UpstreamRegistry(request.registry);
      relay = new TcpRelay({
        targets,
        settings: () => settings!.relay,
        now: () => performance.now(),
        reusePort: true,
        dedicated: true,
        cpu,
        registry,
        onFailed: reportFailure,
      });
      reporter = setInterval(() => report(), REPORT_MS);
      return cpu ?? null;
    }
    case "settings":
      settings = request.settings;
      return undefined;
    case "listen":
      await relay!.listen(request.port);
      await warmUp(relay!, request.warmUp);
      // The IPv4 listener's descriptor, and the IPv6 one's (-1: none).
      return [relay!.listenerFd, relay!.listenerFd6];
    case "unlisten":
      return await relay!.unlisten();
    case "diverted": {
      // Ages, not clock values: a worker's clock starts when the worker does.
      const now = performance.now();
      return relay!.diverted().map((c) => ({
        ...c,
        created: c.created - now,
        lastSeen: c.lastSeen - now,
      }));
    }
    case "gate":
      // A plain relay thread holds no SYNs (see daemon/gate_thread.ts).
      return null;
    case "close":
      await relay?.close();
      clearInterval(reporter);
      clearTimeout(failedReport);
      report(true);
      return undefined;
  }
}

/** A worker's onmessage: answers each request with `serve`'s value or error. */
export function answer<R extends { id: number }>(
  serve: (request: R) => Promise<unknown>,
): (e: MessageEvent<R>) => void {
  return (e) => {
    const request = e.data;
    serve(request).then(
      (value) => self.postMessage({ id: request.id, ok: true, value }),
      (error) =>
        self.postMessage({ id: request.id, ok: false, error: String(error?.message ?? error) }),
    );
  };
}
