import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { SynDoubt } from "./syn_doubt.ts";

function doubt() {
  const clock = { now: 0 };
  let changes = 0;
  const d = new SynDoubt({
    now: () => clock.now,
    rule: () => ({ rise: 2, quietMs: 2000 }),
    onChange: () => changes++,
  });
  return { d, clock, changes: () => changes };
}

const counts = (failed: number) => ({ active: 0, total: failed, connected: 0, failed });

Deno.test("SynDoubt: a failed connection puts its service in doubt at once, and only it", () => {
  const { d, changes } = doubt();
  assertEquals(d.ports(), []);
  d.failed(443);
  assertEquals(d.ports(), [443]);
  d.failed(443);
  assertEquals(changes(), 1);
});

Deno.test("SynDoubt: out of doubt after `rise` successes and the quiet time since the last failure", () => {
  const { d, clock, changes } = doubt();
  d.failed(80);
  d.connected(80);
  d.connected(80);
  // Two successes, but the last failure was just now.
  assertEquals(d.ports(), [80]);
  clock.now = 1999;
  d.sweep();
  assertEquals(d.ports(), [80]);
  clock.now = 2000;
  d.sweep();
  assertEquals(d.ports(), []);
  assertEquals(changes(), 2);
});

Deno.test("SynDoubt: a failure between successes starts the count again; no success keeps the doubt", () => {
  const { d, clock } = doubt();
  d.failed(80);
  d.connected(80);
  clock.now = 5000;
  d.failed(80);
  d.connected(80);
  clock.now = 10_000;
  d.sweep();
  // One success since the last failure: still in doubt.
  assertEquals(d.ports(), [80]);
  d.connected(80);
  assertEquals(d.ports(), []);
  d.failed(81);
  clock.now = 1e9;
  d.sweep();
  assertEquals(d.ports(), [81]);
});

Deno.test("SynDoubt.relayCounts(): new failures of the relay's connections put their service in doubt", () => {
  const { d } = doubt();
  d.relayCounts({ "80/3405803786": counts(0), "443/3405803786": counts(0) });
  assertEquals(d.ports(), []);
  d.relayCounts({ "80/3405803786": counts(0), "443/3405803786": counts(1) });
  assertEquals(d.ports(), [443]);
  // The same count again is no new failure; counts that went back start anew.
  d.relayCounts({ "80/3405803786": counts(0), "443/3405803786": counts(1) });
  d.relayCounts({ "80/3405803786": counts(0) });
  d.relayCounts({ "80/3405803786": counts(0), "8080/3405803786": counts(1) });
  assertEquals(d.ports(), [443, 8080]);
});

Deno.test("SynDoubt.retain() forgets services no longer relayed", () => {
  const { d, changes } = doubt();
  d.failed(80);
  d.failed(443);
  d.retain([80]);
  assertEquals(d.ports(), [80]);
  assertEquals(changes(), 3);
  d.retain([80]);
  assertEquals(changes(), 3);
});
