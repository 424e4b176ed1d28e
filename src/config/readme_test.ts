// The README's configuration table against the schema: the same keys, and where the table gives
// a literal default (`16000`, `[53]`), the schema's.
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { configKeys } from "./text_values.ts";

const README = new URL("../../README.md", import.meta.url).pathname;

/** The rows of the table under "## Configuration": key -> default cell. */
async function tableRows(): Promise<Map<string, string>> {
  const text = await Deno.readTextFile(README);
  const section = text.split(/^## Configuration$/m)[1].split(/^## /m)[0];
  const rows = new Map<string, string>();
  for (const m of section.matchAll(/^\| `([a-z_]+)` +\| ([^|]+?) +\|/gm)) rows.set(m[1], m[2]);
  return rows;
}

Deno.test("the README's configuration table has every key of the schema, and no other", async () => {
  const rows = await tableRows();
  const schema = configKeys().map(([k]) => k);
  assertEquals([...rows.keys()].sort(), schema.sort());
});

Deno.test("the README's literal defaults are the schema's", async () => {
  const rows = await tableRows();
  for (const [key, schema] of configKeys()) {
    const cell = rows.get(key);
    const literal = cell === undefined ? undefined : /^`([^`]*)`$/.exec(cell)?.[1];
    if (literal === undefined) continue;
    const expected = Array.isArray(schema.default)
      ? JSON.stringify(schema.default)
      : String(schema.default);
    assertEquals(literal, expected, key);
  }
});
