/**
 * A relay thread that can hold SYNs (the Worker's entry module the daemon starts): a relay
 * thread (relay/relay_thread_serve.ts) that also answers `gate`, opening its
 * {@link ThreadGate} on queue `base` + the CPU it keeps to.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import {
  addToReport,
  answer,
  serveRelayRequest,
  threadParts,
} from "../relay/relay_thread_serve.ts";
import type { ThreadRequest } from "../relay/relay_threads.ts";
import { logger } from "../system/log.ts";
import { ThreadGate } from "./thread_gate.ts";

let gate: ThreadGate | undefined;

async function serve(request: ThreadRequest): Promise<unknown> {
  if (request.op === "close") {
    // Held SYNs get their verdict (dropped) before the relay's poller goes.
    await gate?.close();
    gate = undefined;
  }
  if (request.op !== "gate") return await serveRelayRequest(request);
  if (gate !== undefined) return gate.queue;
  const parts = threadParts();
  if (parts?.cpu === undefined || parts.registry === undefined) return null;
  const queue = request.base + parts.cpu;
  // The registry's times are on the main thread's clock; a worker's starts with the worker.
  const offset = performance.timeOrigin - request.origin;
  try {
    gate = await ThreadGate.open(queue, {
      relay: parts.relay,
      targets: parts.targets,
      registry: parts.registry,
      settings: parts.settings,
      now: () => performance.now() + offset,
    });
  } catch (e) {
    logger("relay").warning("relay thread holds no SYNs: {error}", { error: String(e) });
    return null;
  }
  const g = gate;
  addToReport(() => ({ gate: { ...g.counters } }));
  return queue;
}

self.onmessage = answer(serve);
