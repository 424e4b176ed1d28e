import { deepStrictEqual as assertEquals, throws } from "node:assert/strict";
import { type NatEntry, NatTable, type NewEntry, type RemoveReason } from "./nat_table.ts";

function fixture(capacity = 4) {
  let clock = 1000;
  const removed: [number, RemoveReason][] = [];
  const table = new NatTable({
    capacity,
    now: () => clock,
    onRemove: (e, why) => removed.push([e.id, why]),
  });
  const flow = (n: number, timeoutMs = 30_000): NewEntry => ({
    protocol: "udp",
    client: n,
    clientPort: 1000 + n,
    relay: 1,
    servicePort: 53,
    server: 2,
    serverPort: 53,
    state: "unreplied",
    timeoutMs,
  });
  const add = (n: number, timeoutMs?: number) =>
    table.add(flow(n, timeoutMs), [`f${n}`, `r${n}`]) as NatEntry;
  return { table, add, removed, tick: (ms: number) => (clock += ms) };
}

Deno.test("NatTable.add() makes an entry reachable under each of its keys", () => {
  const { table, add } = fixture();
  const e = add(1);
  assertEquals(table.get("f1"), e);
  assertEquals(table.get("r1"), e);
  assertEquals(table.get("f2"), undefined);
  assertEquals(table.size, 1);
});

Deno.test("NatTable.add() refuses a key that a live entry holds", () => {
  const { table, add } = fixture();
  add(1);
  throws(() => table.add({ ...table.get("f1")! }, ["f1"]), /already in use/);
});

Deno.test("NatTable.get() expires an idle entry after its timeout, not before", () => {
  const { table, add, tick, removed } = fixture();
  const e = add(1, 30_000);
  tick(30_000);
  assertEquals(table.get("f1"), e);
  tick(1);
  assertEquals(table.get("r1"), undefined);
  assertEquals(removed, [[e.id, "expired"]]);
  assertEquals(table.size, 0);
});

Deno.test("NatTable.sweep() removes only expired entries", () => {
  const { table, add, tick } = fixture();
  add(1, 1000);
  const keep = add(2, 5000);
  tick(2000);
  assertEquals(table.sweep(), 1);
  assertEquals([...table.entries()], [keep]);
  assertEquals(table.stats().expired, 1);
});

Deno.test("NatTable evicts the oldest unassured entry when full", () => {
  const { table, add, removed } = fixture(3);
  const a = add(1);
  const b = add(2);
  add(3);
  table.assure(a);
  const d = add(4);
  assertEquals(removed, [[b.id, "evicted"]]);
  assertEquals(table.get("f4"), d);
  assertEquals(table.get("f1"), a);
  assertEquals(table.stats().evicted, 1);
});

Deno.test("NatTable evicts the oldest unanswered entry before any answered one", () => {
  const { table, add, removed } = fixture(3);
  const a = add(1);
  const b = add(2);
  const c = add(3);
  // The oldest two were answered; the newest was not: it goes first, then the older answer.
  table.answered(b);
  table.answered(a);
  const d = add(4);
  assertEquals(removed, [[c.id, "evicted"]]);
  const e = add(5);
  assertEquals(removed, [[c.id, "evicted"], [d.id, "evicted"]]);
  table.assure(a);
  table.answered(add(6));
  assertEquals(removed.at(-1), [e.id, "evicted"]);
  add(7);
  assertEquals(removed.at(-1), [b.id, "evicted"], "then the oldest answered, never assured a");
  assertEquals(table.get("f1"), a);
  assertEquals(table.stats().evicted, 4);
  assertEquals(table.stats().evictedUnanswered, 3);
});

Deno.test("NatTable under a flood of unanswered flows keeps every answered one", () => {
  const { table, add } = fixture(100);
  const live = Array.from({ length: 50 }, (_, i) => add(i));
  for (const e of live) table.answered(e);
  for (let i = 1000; i < 11_000; i++) add(i);
  for (const e of live) assertEquals(table.get(`f${e.client}`), e);
  assertEquals(table.stats().evictedUnanswered, 10_000 - 50);
});

Deno.test("NatTable refuses a new flow when every entry is assured", () => {
  const { table, add } = fixture(2);
  table.assure(add(1));
  table.assure(add(2));
  assertEquals(table.add({ ...table.get("f1")! }, ["f9"]), undefined);
  assertEquals(table.stats().refused, 1);
  assertEquals(table.size, 2);
});

Deno.test("NatTable makes room from expired entries before evicting live ones", () => {
  const { table, add, tick, removed } = fixture(2);
  const old = add(1, 100);
  const live = add(2, 60_000);
  tick(5000);
  add(3);
  assertEquals(removed, [[old.id, "expired"]]);
  assertEquals(table.get("f2"), live);
});

Deno.test("NatTable.remove() and flush() call onRemove with the reason", () => {
  const { table, add, removed } = fixture();
  const a = add(1);
  const b = add(2);
  table.remove(a);
  table.remove(a);
  table.flush();
  assertEquals(removed, [[a.id, "closed"], [b.id, "flushed"]]);
  assertEquals(table.size, 0);
});
