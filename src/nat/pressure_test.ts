import { deepStrictEqual as assertEquals } from "node:assert/strict";
import type { NatTableStats } from "./nat_table.ts";
import { TablePressure } from "./pressure.ts";

const stats = (evicted: number, evictedUnanswered: number, refused: number): NatTableStats => ({
  entries: 100,
  created: 0,
  expired: 0,
  evicted,
  evictedUnanswered,
  refused,
});

Deno.test("TablePressure notes evictions and refusals at most once per interval", () => {
  const p = new TablePressure(10_000);
  assertEquals(p.check(stats(0, 0, 0), 0), undefined, "nothing happened");
  assertEquals(p.check(stats(500, 490, 0), 1000), {
    evicted: 500,
    evictedUnanswered: 490,
    refused: 0,
    entries: 100,
    seconds: 1,
  });
  assertEquals(p.check(stats(900, 880, 2), 5000), undefined, "too soon");
  assertEquals(p.check(stats(1000, 980, 3), 11_000)?.evicted, 500, "the rest, once due");
  assertEquals(p.check(stats(1000, 980, 3), 30_000), undefined, "quiet again");
});
