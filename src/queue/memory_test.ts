import { deepStrictEqual as assertEquals, rejects } from "node:assert/strict";
import { Hook, Verdict } from "./queue.ts";
import { MemoryDatapath } from "./memory.ts";

Deno.test("MemoryDatapath.receive() returns what was injected, with defaults filled in", async () => {
  const dp = new MemoryDatapath();
  const a = dp.inject({ bytes: new Uint8Array([1]) });
  const b = dp.inject({ bytes: new Uint8Array([2]), hook: Hook.PostRouting, queue: 3 });
  const got = await dp.receive(1000);
  assertEquals(got, [a, b]);
  assertEquals([a.id, b.id, a.hook, b.hook, b.queue], [1, 2, Hook.PreRouting, Hook.PostRouting, 3]);
  assertEquals(await dp.receive(0), []);
  dp.close();
});

Deno.test("MemoryDatapath.receive() wakes on inject before its timeout", async () => {
  const dp = new MemoryDatapath();
  const t0 = performance.now();
  const pending = dp.receive(5000);
  setTimeout(() => dp.inject({ bytes: new Uint8Array([9]), id: 40 }), 10);
  const got = await pending;
  assertEquals(got.map((p) => p.id), [40]);
  assertEquals(performance.now() - t0 < 2000, true);
  assertEquals(dp.inject({ bytes: new Uint8Array(0) }).id, 41);
  dp.close();
});

Deno.test("MemoryDatapath.receive() resolves to [] after its timeout", async () => {
  const dp = new MemoryDatapath();
  assertEquals(await dp.receive(5), []);
  dp.close();
});

Deno.test("MemoryDatapath.send() records verdicts and counts them", async () => {
  const dp = new MemoryDatapath();
  dp.inject({ bytes: new Uint8Array([1]) });
  dp.inject({ bytes: new Uint8Array([2]) });
  const [p, q] = await dp.receive(0);
  dp.send([{ packet: p, verdict: Verdict.Accept, mangled: false }]);
  dp.send([{ packet: q, verdict: Verdict.Drop, mangled: false }]);
  assertEquals(dp.sent.map((v) => [v.packet.id, v.verdict]), [[1, Verdict.Accept], [
    2,
    Verdict.Drop,
  ]]);
  assertEquals(dp.stats(), { received: 2, verdicts: 2, enobufs: 0, errors: 0 });
  dp.close();
});

Deno.test("MemoryDatapath.close() resolves a waiting receive() with [] and is idempotent", async () => {
  const dp = new MemoryDatapath();
  const pending = dp.receive(5000);
  await rejects(dp.receive(10), /already in flight/);
  dp.close();
  dp.close();
  assertEquals(await pending, []);
  dp.inject({ bytes: new Uint8Array([1]) });
  assertEquals(await dp.receive(0), []);
});
