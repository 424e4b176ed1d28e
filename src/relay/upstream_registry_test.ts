import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { SLOTS, UpstreamRegistry } from "./upstream_registry.ts";

const C = 0xc6336410 | 0; // 198.51.100.16, signed as socket.ts reads it

Deno.test("a connection put is taken once, by its own client, port and service", () => {
  const r = new UpstreamRegistry();
  assertEquals(r.put(C, 40000, 80, 17, 0), true);
  assertEquals([r.take(C, 40001, 80), r.take(C, 40000, 8080), r.take(C + 1, 40000, 80)], [
    -1,
    -1,
    -1,
  ]);
  assertEquals(r.size, 1);
  assertEquals([r.has(C, 40000, 80), r.has(C, 40001, 80)], [true, false]);
  assertEquals(r.take(C, 40000, 80), 17);
  assertEquals(r.has(C, 40000, 80), false);
  assertEquals(r.take(C, 40000, 80), -1);
  assertEquals(r.size, 0);
});

Deno.test("another view of the same memory takes what the first put", () => {
  const r = new UpstreamRegistry();
  r.put(C, 40000, 80, 17, 0);
  const other = new UpstreamRegistry(r.buffer);
  assertEquals(other.take(C, 40000, 80), 17);
  assertEquals(r.take(C, 40000, 80), -1);
});

Deno.test("entries not taken in time expire, and their descriptors are handed back", () => {
  const r = new UpstreamRegistry();
  r.put(C, 1, 80, 10, 1_000);
  r.put(C, 2, 80, 11, 5_000);
  assertEquals(r.expire(3_000), [10]);
  assertEquals(r.take(C, 2, 80), 11);
});

Deno.test("a full bucket refuses a put; the others go on", () => {
  const r = new UpstreamRegistry();
  // The same key collides with itself: one bucket takes SLOTS entries of it.
  for (let i = 0; i < SLOTS; i++) assertEquals(r.put(C, 40000, 80, 100 + i, 0), true);
  assertEquals(r.put(C, 40000, 80, 200, 0), false);
  assertEquals(r.put(C, 40001, 80, 201, 0), true);
});

Deno.test("IPv6 clients are keyed by their whole address, apart from IPv4 ones", () => {
  const r = new UpstreamRegistry();
  const a = new Uint8Array(16);
  a.set([0x20, 0x01, 0x0d, 0xb8, 0, 1], 0);
  a[15] = 0x10;
  const b = a.slice();
  b[7] = 1; // differs in one word only
  // ::ffff:198.51.100.16 is the IPv4 client itself (the form an IPv4 key is kept in).
  const mapped = new Uint8Array(16);
  mapped.set([0xff, 0xff, 0xc6, 0x33, 0x64, 0x10], 10);
  assertEquals(r.put6(a, 40000, 80, 21, 0), true);
  assertEquals([r.take6(b, 40000, 80), r.take(C, 40000, 80), r.has6(a, 40000, 80)], [
    -1,
    -1,
    true,
  ]);
  assertEquals(r.take6(a, 40000, 80), 21);
  assertEquals(r.has6(a, 40000, 80), false);
  r.put(C, 40000, 80, 22, 0);
  assertEquals(r.take6(mapped, 40000, 80), 22);
});
