import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import type { ScriptInfo } from "./protocol.ts";
import { renderScripts } from "./render_scripts.ts";

const info: ScriptInfo = {
  name: "blocklist",
  file: "/etc/krelay/blocklist.ts",
  services: "udp:53",
  state: "disabled",
  disabledReason: "10 errors within 60 s",
  exports: { match: true, target: true },
  loadedAt: "2025-01-01T00:00:00.000Z",
  packets: 12_345,
  matched: 17,
  verdicts: { accepted: 12_300, changed: 10, dropped: 7, default: 28 },
  errors: 10,
  timeouts: 1,
  restarts: 1,
  usPerPacket: 3.25,
  lastError: "Error: boom",
};

Deno.test("renderScripts: one row per script, reasons and last errors after the table", () => {
  const text = renderScripts([info]);
  const lines = text.split("\n");
  assert(lines[1].includes("name") && lines[1].includes("µs/packet"), lines[1]);
  const row = lines.find((l) => l.includes("blocklist"))!;
  for (const cell of ["udp:53", "disabled", "12,345", "12,300", "28", "3.3"]) {
    assert(row.includes(cell), `${cell} in ${row}`);
  }
  assertEquals(lines.slice(-2), [
    "blocklist: disabled (10 errors within 60 s)",
    "blocklist: last error: Error: boom",
  ]);
});

Deno.test("renderScripts: none loaded", () => {
  assertEquals(renderScripts([]), "no scripts loaded");
});
