import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { locate, MUTANTS } from "./mutate.ts";

const root = new URL("..", import.meta.url).pathname;

Deno.test("locate() finds text once, and says when it is missing or found twice", () => {
  assertEquals(locate("a b c", "b"), 2);
  assertEquals(locate("a b c", "d"), "NOT FOUND");
  assertEquals(locate("b b", "b"), "AMBIGUOUS");
});

Deno.test("every mutant's text is in its file exactly once and its tests exist", async () => {
  const stale: string[] = [];
  for (const m of MUTANTS) {
    const at = locate(await Deno.readTextFile(`${root}${m.file}`), m.find);
    if (typeof at !== "number") stale.push(`${m.name}: ${at} in ${m.file}`);
    if (m.find === m.replace) stale.push(`${m.name}: changes nothing`);
    for (const t of m.tests) {
      try {
        await Deno.stat(`${root}${t}`);
      } catch {
        stale.push(`${m.name}: no test file ${t}`);
      }
    }
  }
  assertEquals(stale, []);
  assertEquals(new Set(MUTANTS.map((m) => m.name)).size, MUTANTS.length, "names are unique");
});
