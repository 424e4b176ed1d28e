import { deepStrictEqual as assertEquals, ok as assert, rejects } from "node:assert/strict";
import { CommandError, nsArgv, pidExists, run, settlesWithin, spawnProcess } from "./process.ts";

Deno.test("nsArgv() wraps a command in ip netns exec", () => {
  assertEquals(nsArgv("krl-cli", ["dig", "x"]), ["ip", "netns", "exec", "krl-cli", "dig", "x"]);
});

Deno.test("run() captures output, exit code and standard input", async () => {
  const r = await run(["sh", "-c", "cat; echo err >&2; exit 3"], { stdin: "hello" });
  assertEquals(r.stdout, "hello");
  assertEquals(r.stderr, "err\n");
  assertEquals(r.code, 3);
  assertEquals(r.success, false);
  assertEquals(r.timedOut, false);
  await rejects(run(["false"], { check: true }), CommandError);
});

Deno.test("run() kills a command and what it started when the timeout passes", async () => {
  const t0 = performance.now();
  // The inner sleep holds the output pipe: only killing the whole group ends the wait.
  const r = await run(["sh", "-c", "sleep 30 & sleep 30"], { timeoutMs: 100 });
  assert(performance.now() - t0 < 5000);
  assertEquals(r.timedOut, true);
  assertEquals(r.success, false);
  await rejects(run(["sleep", "30"], { timeoutMs: 50, check: true }), /timed out/);
});

Deno.test("spawnProcess() logs to a file and stop() ends it with SIGTERM", async () => {
  const dir = await Deno.makeTempDir({ prefix: "krelay-process-test-" });
  try {
    const p = spawnProcess("echoer", ["sh", "-c", "echo started; echo oops >&2; exec sleep 30"], {
      logPath: `${dir}/echoer.log`,
    });
    assert(p.running);
    assert(pidExists(p.pid));
    for (let i = 0; i < 100 && !(await p.readLog()).includes("oops"); i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assertEquals(await p.readLog(), "started\noops\n");
    const status = await p.stop(2000);
    assertEquals(status.signal, "SIGTERM");
    assert(!p.running);
    assert(!pidExists(p.pid));
    assertEquals(await p.stop(), status);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("LabProcess.stop() falls back to SIGKILL when SIGTERM is ignored", async () => {
  const dir = await Deno.makeTempDir({ prefix: "krelay-process-test-" });
  try {
    const p = spawnProcess("stubborn", [
      "sh",
      "-c",
      "trap '' TERM; echo armed; while :; do sleep 0.05; done",
    ], {
      logPath: `${dir}/stubborn.log`,
    });
    for (let i = 0; i < 100 && !(await p.readLog()).includes("armed"); i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    const t0 = performance.now();
    const status = await p.stop(200);
    assertEquals(status.signal, "SIGKILL");
    assert(performance.now() - t0 < 3000);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("settlesWithin() tells a settled promise from a pending one", async () => {
  assertEquals(await settlesWithin(Promise.resolve(1), 10), true);
  assertEquals(await settlesWithin(Promise.reject(new Error("x")), 10), true);
  assertEquals(await settlesWithin(new Promise(() => {}), 10), false);
});
