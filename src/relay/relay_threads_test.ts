import { deepStrictEqual as assertEquals, ok as assert, rejects } from "node:assert/strict";
import { allowedCpus } from "../system/cpu_affinity.ts";
import { RelayThreads, type ThreadSettings } from "./relay_threads.ts";
import { onePool } from "../servers/balancer.ts";

const settings: ThreadSettings = {
  nat: {
    pool: onePool(0xcb00710a),
    tcpPorts: new Set([80]),
  },
  relay: { connectTimeoutMs: 5_000, idleTimeoutMs: 300_000 },
};
const log = { level: "error" as const, json: false };
const failing = new URL("./_failing_thread.ts", import.meta.url);

Deno.test("RelayThreads reports a thread that fails, refuses it requests, and still closes", async () => {
  const failed = Promise.withResolvers<Error>();
  const threads = await RelayThreads.start(2, log, settings, {
    module: failing,
    onFailure: (e) => failed.resolve(e),
  });
  await threads.listen(16000);
  const error = await failed.promise;
  assert(error.message.includes("boom"), error.message);
  // The failed thread answers nothing any more: asking it fails at once instead of hanging.
  await rejects(threads.diverted(0), /relay thread failed/);
  await threads.close();
  assertEquals(threads.stats().total, 0);
});

Deno.test("RelayThreads.start() rejects and ends its threads when one cannot start", async () => {
  const missing = new URL("./_no_such_thread.ts", import.meta.url);
  await rejects(RelayThreads.start(1, log, settings, { module: missing }));
});

Deno.test("RelayThreads keeps each thread to its CPU, or to none where the kernel refuses", async () => {
  const mine = allowedCpus();
  // 1023: a CPU no machine this runs on has, so the kernel refuses it.
  const threads = await RelayThreads.start(3, log, settings, { cpus: [mine[0], 1023] });
  try {
    assertEquals(threads.threads().map((t) => t.cpu), [mine[0], null, mine[0]]);
    assertEquals(threads.threads().map((t) => t.total), [0, 0, 0]);
  } finally {
    await threads.close();
  }
  const free = await RelayThreads.start(1, log, settings);
  try {
    assertEquals(free.threads().map((t) => t.cpu), [null]);
  } finally {
    await free.close();
  }
});
