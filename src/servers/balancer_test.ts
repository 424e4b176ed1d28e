import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { type BalancedServer, Balancer, ServiceBalancers } from "./balancer.ts";

const CLIENTS = 20_000;
/** Client addresses 10.x.y.z-like spread, as a relay's clients would be. */
const clients = Array.from({ length: CLIENTS }, (_, i) => (0xc6336400 + i * 7919) | 0);

function servers(weights: number[], backup: boolean[] = []): BalancedServer[] {
  return weights.map((weight, i) => ({
    ip: 0xcb007100 + 10 * (i + 1),
    weight,
    backup: backup[i] ?? false,
  }));
}

function shares(b: Balancer, n: number): number[] {
  const counts = new Array(n).fill(0);
  for (const c of clients) counts[b.pick(c)]++;
  return counts.map((x) => x / CLIENTS);
}

Deno.test("client-hash: a client always gets the same server", () => {
  const b = new Balancer(servers([1, 1, 1]), undefined, "client-hash");
  for (const c of clients.slice(0, 500)) assertEquals(b.pick(c), b.pick(c));
  // Signed or unsigned addresses are the same client.
  assertEquals(b.pick(0xcb00710a), b.pick(0xcb00710a | 0));
});

Deno.test("client-hash: a server going down moves only its own clients", () => {
  const list = servers([1, 1, 1, 1]);
  const all = new Balancer(list, undefined, "client-hash");
  const without2 = new Balancer(list, [true, true, false, true], "client-hash");
  let moved = 0;
  for (const c of clients) {
    const before = all.pick(c);
    const after = without2.pick(c);
    assert(after !== 2);
    if (before !== 2) assertEquals(after, before, `client ${c} moved from ${before} to ${after}`);
    else moved++;
  }
  // Its clients, about a quarter, went elsewhere, spread over the three others.
  assert(moved > CLIENTS * 0.2 && moved < CLIENTS * 0.3, `moved ${moved}`);
  // Back up: everyone is where they were.
  const back = new Balancer(list, [true, true, true, true], "client-hash");
  for (const c of clients) assertEquals(back.pick(c), all.pick(c));
});

Deno.test("client-hash: shares follow the weights within 2 points", () => {
  const weights = [1, 3, 2, 4];
  const got = shares(new Balancer(servers(weights), undefined, "client-hash"), 4);
  const total = weights.reduce((a, b) => a + b);
  weights.forEach((w, i) => {
    assert(Math.abs(got[i] - w / total) < 0.02, `server ${i}: ${got[i]} for ${w / total}`);
  });
});

Deno.test("client-hash: the list's order does not change who goes where", () => {
  const list = servers([1, 2, 1]);
  const a = new Balancer(list, undefined, "client-hash");
  const b = new Balancer([list[2], list[0], list[1]], undefined, "client-hash");
  const inB = [1, 2, 0];
  for (const c of clients.slice(0, 2000)) assertEquals(inB[a.pick(c)], b.pick(c));
});

Deno.test("round-robin: flows go in turn, spread by weight (smooth)", () => {
  const b = new Balancer(servers([1, 1]), undefined, "round-robin");
  assertEquals(Array.from({ length: 6 }, () => b.pick(1)), [0, 1, 0, 1, 0, 1]);
  const w = new Balancer(servers([3, 1]), undefined, "round-robin");
  const seq = Array.from({ length: 8 }, () => w.pick(1));
  assertEquals(seq.filter((i) => i === 0).length, 6);
  // Spread out: never the light server twice in a row.
  for (let i = 1; i < seq.length; i++) assert(!(seq[i] === 1 && seq[i - 1] === 1));
  const down = new Balancer(servers([1, 1, 1]), [true, false, true], "round-robin");
  assertEquals(Array.from({ length: 4 }, () => down.pick(1)), [0, 2, 0, 2]);
});

Deno.test("backups get flows only while no other server is up; none up picks -1", () => {
  const list = servers([1, 1, 1], [false, false, true]);
  const normal = new Balancer(list, undefined, "client-hash");
  for (const c of clients.slice(0, 1000)) assert(normal.pick(c) !== 2);
  const primariesDown = new Balancer(list, [false, false, true], "client-hash");
  for (const c of clients.slice(0, 100)) assertEquals(primariesDown.pick(c), 2);
  const allDown = new Balancer(list, [false, false, false], "round-robin");
  assertEquals([allDown.pick(1), allDown.candidates], [-1, 0]);
});

Deno.test("ServiceBalancers keeps a balancer per service until the pool changes", () => {
  const pool = {
    servers: servers([1, 1]),
    balance: "round-robin" as const,
    up: { "udp/53": [false, true] },
  };
  const cache = new ServiceBalancers();
  const b = cache.get(pool, "udp/53");
  assert(cache.get(pool, "udp/53") === b);
  assertEquals(b.pick(1), 1);
  // A service with no health listed has every server up.
  assertEquals(cache.get(pool, "udp/5353").candidates, 2);
  const next = { ...pool, up: {} };
  assert(cache.get(next, "udp/53") !== b);
  assertEquals(cache.get(next, "udp/53").candidates, 2);
});
