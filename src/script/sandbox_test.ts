import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { ATTEMPTS, isDenied, probeScript } from "./_fixtures/sandbox_probe.ts";
import { scriptUrl } from "./check.ts";
import { ScriptWorker } from "./script_worker.ts";
import type { LogLine } from "./wire.ts";

Deno.test("a script's process may not read or write files, use the network, run, FFI, env or workers", async () => {
  // Everything the probe tries would succeed with the permission: a live HTTP listener, a real
  // module, a file that exists.
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () => new Response("up\n"),
  );
  const dir = await Deno.makeTempDir({ prefix: "krelay-sandbox-" });
  const file = `${dir}/sandbox_probe.ts`;
  await Deno.writeTextFile(
    file,
    probeScript({
      hostname: "127.0.0.1",
      port: server.addr.port,
      module: new URL("./_fixtures/accept_all.ts", import.meta.url).href,
      file: new URL(import.meta.url).pathname,
    }),
  );
  const lines: LogLine[] = [];
  let worker: ScriptWorker | undefined;
  try {
    worker = await ScriptWorker.start(scriptUrl(file), "probe", {
      onLog: (l) => lines.push(...l),
      onCrash: () => {},
      onLimit: () => {},
    });
    // The probe's lines come with the ready message or just before it.
    for (let i = 0; i < 100 && lines.length < ATTEMPTS.length; i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const results = Object.fromEntries(
      lines.map((l) => /^sandbox (\w+): (.*)$/.exec(l.text)).filter((m) => m !== null)
        .map((m) => [m![1], m![2]]),
    );
    // Only the permission error itself counts as denied (the probe says which one it got);
    // any other outcome shows in the diff as the probe wrote it.
    const outcomes = ATTEMPTS.map((a) => {
      const r = results[a] ?? "no line";
      return [
        a,
        isDenied(r) ? "denied" : r,
      ];
    });
    assertEquals(
      Object.fromEntries(outcomes),
      Object.fromEntries(ATTEMPTS.map((a) => [a, "denied"])),
    );
  } finally {
    worker?.terminate();
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});
