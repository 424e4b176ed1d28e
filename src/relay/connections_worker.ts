/**
 * A worker thread hosting relayed connections (connections.ts) on its own poller, so that the
 * bytes of the TCP relay move on another core than the one that accepts and connects. File
 * descriptors belong to the process, so the main thread hands over a connection as two fd
 * numbers; this worker reports back in batches, once per poller round.
 *
 * Messages in ({@link ToWorker}): init, add (flat [id, client, server, connecting] quads),
 * timeouts, abortAll, close. Out ({@link FromWorker}): events (connected ids, ended records,
 * live byte totals), closed.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import { setupLogging } from "../system/log.ts";
import type { LogOptions } from "../system/log.ts";
import { type ConnectionEnd, Connections, sweepPeriod } from "./connections.ts";
import { PipePool } from "./pipe_pool.ts";
import { Poller } from "./poller.ts";

/** Messages to the worker. */
export type ToWorker =
  | { t: "init"; log: LogOptions; pipeSize: number; copySize: number }
  | { t: "add"; quads: number[] }
  | { t: "timeouts"; connectTimeoutMs: number; idleTimeoutMs: number }
  | { t: "abortAll" }
  | { t: "close" };

/** Messages from the worker. */
export type FromWorker =
  | {
    t: "events";
    connected: number[];
    ended: [number, ConnectionEnd][];
    live?: [number, number];
  }
  | { t: "closed" };

let host: Connections | undefined;
let poller: Poller | undefined;
let pipes: PipePool | undefined;
let connected: number[] = [];
let ended: [number, ConnectionEnd][] = [];
let flushing = false;
let connectTimeoutMs = 5_000;
let idleTimeoutMs = 0;
let liveTimer: ReturnType<typeof setTimeout> | undefined;

function post(message: FromWorker): void {
  self.postMessage(message);
}

/** Sends what happened in this poller round, in one message. */
function flushSoon(): void {
  if (flushing) return;
  flushing = true;
  poller!.defer(() => {
    flushing = false;
    post({ t: "events", connected, ended });
    connected = [];
    ended = [];
  });
}

/** Reports the live byte totals while connections are open (status displays). */
function reportLive(): void {
  if (liveTimer !== undefined) return;
  liveTimer = setTimeout(() => {
    liveTimer = undefined;
    if (host === undefined) return;
    const live = host.live();
    post({ t: "events", connected: [], ended: [], live: [live.toServer, live.toClient] });
    if (host.size > 0) reportLive();
  }, sweepPeriod(connectTimeoutMs, idleTimeoutMs));
}

self.onmessage = async (e: MessageEvent<ToWorker>) => {
  const m = e.data;
  switch (m.t) {
    case "init": {
      await setupLogging(m.log);
      poller = new Poller();
      pipes = new PipePool(m.pipeSize);
      host = new Connections({ poller, pipes, scratch: new Uint8Array(m.copySize) }, {
        connected: (id) => {
          connected.push(id);
          flushSoon();
        },
        ended: (id, end) => {
          ended.push([id, end]);
          flushSoon();
        },
      });
      break;
    }
    case "add": {
      const q = m.quads;
      for (let i = 0; i < q.length; i += 4) host!.add(q[i], q[i + 1], q[i + 2], q[i + 3] === 1);
      reportLive();
      break;
    }
    case "timeouts":
      connectTimeoutMs = m.connectTimeoutMs;
      idleTimeoutMs = m.idleTimeoutMs;
      host?.setTimeouts(connectTimeoutMs, idleTimeoutMs);
      break;
    case "abortAll":
      host?.abortAll();
      break;
    case "close":
      clearTimeout(liveTimer);
      await host?.close();
      await poller?.close();
      pipes?.close();
      host = undefined;
      post({ t: "closed" });
      break;
  }
};
