import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { scriptUrl } from "./check.ts";
import { ScriptWorker } from "./script_worker.ts";
import type { LogLine } from "./wire.ts";

Deno.test("a script's process may not read or write files, use the network, run, FFI, env or workers", async () => {
  const lines: LogLine[] = [];
  const file = new URL("./_fixtures/sandbox_probe.ts", import.meta.url).pathname;
  const worker = await ScriptWorker.start(scriptUrl(file), "probe", {
    onLog: (l) => lines.push(...l),
    onCrash: () => {},
    onLimit: () => {},
  });
  try {
    // The probe's lines come with the ready message or just before it.
    for (let i = 0; i < 100 && lines.length < 10; i++) await new Promise((r) => setTimeout(r, 20));
    const results = Object.fromEntries(
      lines.map((l) => /^sandbox (\w+): (\w+)/.exec(l.text)).filter((m) => m !== null).map((
        m,
      ) => [m![1], m![2]]),
    );
    assertEquals(results, {
      read: "denied",
      write: "denied",
      fetch: "denied",
      connect: "denied",
      listen: "denied",
      run: "denied",
      ffi: "denied",
      env: "denied",
      import: "denied",
      worker: "denied",
    });
  } finally {
    worker.terminate();
  }
});
