import { deepStrictEqual as assertEquals, throws } from "node:assert/strict";
import { PortPool } from "./port_pool.ts";

Deno.test("PortPool.acquire() hands out every port once, then undefined", () => {
  const pool = new PortPool(100, 103);
  assertEquals([pool.acquire(), pool.acquire(), pool.acquire(), pool.acquire()], [
    100,
    101,
    102,
    103,
  ]);
  assertEquals(pool.acquire(), undefined);
  assertEquals(pool.free, 0);
});

Deno.test("PortPool reuses a released port only after the ports free longer", () => {
  const pool = new PortPool(100, 102);
  const a = pool.acquire()!;
  pool.release(a);
  assertEquals([pool.acquire(), pool.acquire(), pool.acquire()], [101, 102, 100]);
});

Deno.test("PortPool.release() ignores ports not in use and outside the range", () => {
  const pool = new PortPool(100, 101);
  pool.release(100);
  pool.release(5);
  assertEquals(pool.free, 2);
  const p = pool.acquire()!;
  pool.release(p);
  pool.release(p);
  assertEquals(pool.free, 2);
});

Deno.test("PortPool refuses an empty or impossible range", () => {
  throws(() => new PortPool(10, 9), RangeError);
  throws(() => new PortPool(0, 10), RangeError);
  throws(() => new PortPool(60000, 70000), RangeError);
});
