/**
 * A relay thread (a Worker's entry module): a transparent {@link TcpRelay} of its own, with its
 * own poller and its own gateway-port listener in the port's SO_REUSEPORT group, so that the
 * kernel spreads new connections over the threads. Driven by {@link RelayThreads} in the main
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
import { TcpRelay } from "./tcp_relay.ts";
import { UpstreamRegistry } from "./upstream_registry.ts";
import { warmUp } from "./warm_up.ts";
import type { ThreadReport, ThreadRequest, ThreadSettings } from "./relay_threads.ts";

/** How often a thread reports its counters and live ports, when they changed. */
export const REPORT_MS = 200;

let settings: ThreadSettings | undefined;
let relay: TcpRelay | undefined;
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

async function serve(request: ThreadRequest): Promise<unknown> {
  switch (request.op) {
    case "init": {
      await setupLogging(request.log);
      settings = request.settings;
      const cpu = keepTo(request.cpu);
      relay = new TcpRelay({
        targets: new TcpTargets(() => settings!.nat),
        settings: () => settings!.relay,
        now: () => performance.now(),
        reusePort: true,
        dedicated: true,
        cpu,
        registry: request.registry && new UpstreamRegistry(request.registry),
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
    case "close":
      await relay?.close();
      clearInterval(reporter);
      clearTimeout(failedReport);
      report(true);
      return undefined;
  }
}

self.onmessage = (e: MessageEvent<ThreadRequest>) => {
  const request = e.data;
  serve(request).then(
    (value) => self.postMessage({ id: request.id, ok: true, value }),
    (error) =>
      self.postMessage({ id: request.id, ok: false, error: String(error?.message ?? error) }),
  );
};
