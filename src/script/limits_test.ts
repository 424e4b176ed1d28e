/**
 * Hostile scripts against the script host: each is contained in its own process (memory,
 * CPU outside batches, console output, workers) and disabled, and the host goes on deciding
 * other scripts' packets.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { buildUdpPacket } from "../packet/build.ts";
import { C, fixture, R, testHost } from "./_host_fixture.ts";
import { type LogBucket, rateLimitLines, ScriptHost, type ScriptPolicy } from "./host.ts";
import { parseServices } from "./services.ts";

/** Hostile scripts make many errors and get a small memory limit. */
const host = (policy: Partial<ScriptPolicy> = {}) =>
  testHost({ maxErrors: 100, limits: { memoryMb: 64 }, ...policy });

const request = (srcPort: number, dstPort: number) =>
  buildUdpPacket({ src: C, dst: R, srcPort, dstPort, payload: new Uint8Array(12) });

async function until(what: string, cond: () => boolean, ms = 15_000): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const gone = (pid: number) => {
  try {
    // A zombie is gone too: it runs nothing.
    return /^State:\s+Z/m.test(Deno.readTextFileSync(`/proc/${pid}/status`));
  } catch {
    return true;
  }
};

/** Loads `hostile` on udp:53 and accept_all on udp:54; returns the hostile script's pid. */
async function withHostile(
  hostile: string,
  check: (h: ScriptHost, pid: number) => Promise<void>,
  policy: Partial<ScriptPolicy> = {},
): Promise<void> {
  const h = host(policy);
  try {
    const info = await h.load("bad", fixture(hostile), parseServices("udp:53"));
    await h.load("good", fixture("accept_all"), parseServices("udp:54"));
    assert(info.pid !== undefined);
    await check(h, info.pid!);
    // The other script still decides, and the hostile one's packets get the default verdict.
    const good = h.request(request(1000, 54))!;
    const bad = h.request(request(1000, 53))!;
    await h.run([good, bad]);
    const [b, g] = h.list();
    assertEquals(g.verdicts.accepted, 1);
    assertEquals(b.state, "disabled");
    assertEquals(b.verdicts.default >= 1, true);
  } finally {
    await h.close();
  }
}

for (
  const [name, file, reason] of [
    ["a heap that grows from a timer", "heap_hog", /memory/],
    ["buffers filled from a timer", "buffer_hog", /memory/],
    ["a timer that spins", "spin_timer", /CPU .* outside packet batches/],
    ["a timer that logs megabytes", "log_flood", /console output/],
  ] as const
) {
  Deno.test(`a script's process is killed and the script disabled for ${name}`, async () => {
    // A hog's allocations cost CPU too (GC): on a loaded machine the CPU limit could stop it
    // before its memory does, so only the limit under test stays low.
    const onlyMemory = { limits: { memoryMb: 64, idleCpuMsPerS: 1e9 } };
    await withHostile(file, async (h, pid) => {
      await until("the script disabled", () => h.list()[0].state === "disabled");
      const info = h.list()[0];
      assert(reason.test(info.disabledReason ?? ""), String(info.disabledReason));
      assertEquals(info.pid, undefined);
      await until("its process gone", () => gone(pid), 5_000);
    }, reason.source === "memory" ? onlyMemory : {});
  });
}

Deno.test("a script cannot start a worker; unload leaves no process of it", async () => {
  const h = host();
  try {
    const info = await h.load("w", fixture("worker_spawner"), parseServices("udp:53"));
    const pid = info.pid!;
    assert(!gone(pid));
    // (sandbox_test.ts shows the worker refused.)
    assertEquals(await h.unload("w"), true);
    await until("its process gone", () => gone(pid), 5_000);
  } finally {
    await h.close();
  }
});

Deno.test("rateLimitLines passes a burst, then a steady rate, and counts the rest once a second", () => {
  const b: LogBucket = { logTokens: 100, logRefilled: 0, logSuppressed: 0, logNotedAt: 0 };
  assertEquals(rateLimitLines(b, 150, 0), { pass: 100, note: 0 });
  // Half a second later: 25 new tokens; the 50 suppressed so far are told once a second.
  assertEquals(rateLimitLines(b, 30, 500), { pass: 25, note: 0 });
  assertEquals(rateLimitLines(b, 0, 1000), { pass: 0, note: 55 });
  assertEquals(rateLimitLines(b, 10, 1100), { pass: 10, note: 0 });
});

Deno.test("a chatty script within the output limit keeps running", async () => {
  const h = host();
  try {
    await h.load("chatty", fixture("chatty"), parseServices("udp:53"));
    await new Promise((r) => setTimeout(r, 1500));
    const info = h.list()[0];
    assertEquals([info.state, info.errors], ["enabled", 0]);
  } finally {
    await h.close();
  }
});

Deno.test("a script's process dies with krelay, even when krelay is killed with SIGKILL", async () => {
  const fixture = new URL("./_orphan_fixture.ts", import.meta.url).pathname;
  const parent = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--no-prompt", fixture],
    stdout: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const reader = parent.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const pid = Number((await reader.read()).value?.trim());
  assert(pid > 0 && !gone(pid), `the script's pid: ${pid}`);
  parent.kill("SIGKILL");
  await parent.status;
  await reader.cancel();
  try {
    await until("the script's process gone", () => gone(pid), 5_000);
  } finally {
    // Never leave it spinning, even when the test fails.
    if (!gone(pid)) Deno.kill(pid, "SIGKILL");
  }
});
