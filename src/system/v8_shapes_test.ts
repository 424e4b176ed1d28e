import { deepStrictEqual as assertEquals } from "node:assert/strict";

const PROBE = new URL("./_fixtures/v8_shapes_probe.ts", import.meta.url).pathname;

Deno.test("v8_shapes: code V8 optimised on warm-up values survives clients' values, and only by the rules", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", "--v8-flags=--allow-natives-syntax", PROBE],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assertEquals(out.success, true, new TextDecoder().decode(out.stderr));
  // With the rules, the code survives; with each rule broken, V8 throws it away (so this test
  // would see a file that breaks one).
  assertEquals(JSON.parse(text), { signed: true, unsigned: false, double: true, smi: false });
});
