import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { loadConfig } from "./load.ts";

Deno.test("the example config file shipped for systemd is valid", async () => {
  const file = new URL("../../systemd/krelay.toml.example", import.meta.url).pathname;
  const r = await loadConfig({ file });
  assertEquals(r.ok ? [] : r.errors, []);
});
