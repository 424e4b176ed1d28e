// The cost of a packet script: batches of 64 UDP requests decided as the packet loop does it,
// by the engine alone (no script), and through a trivial accept-all script in its worker first
// (one round trip per batch) and then the engine. Same run, same packets: compare the two.
// Packets per second = 64 / time per iteration.
import { ADDR, engineFixture } from "../nat/_engine_fixture.ts";
import { Hook } from "../nat/hook.ts";
import { buildUdpPacket } from "../packet/build.ts";
import { ScriptHost, type ScriptJob } from "./host.ts";
import { parseServices } from "./services.ts";

const BATCH = 64;
const { C, R, S } = ADDR;
const { engine } = engineFixture({ capacity: 1 << 16 });
const payload = new Uint8Array(36);
const requests = Array.from(
  { length: BATCH },
  (_, i) => buildUdpPacket({ src: C, dst: R, srcPort: 10000 + i, dstPort: 53, payload }),
);
// Packets are rewritten in place; each batch works on fresh copies, as the kernel's would be.
const scratch = requests.map((p) => new Uint8Array(p.length));
const fresh = () => scratch.forEach((s, i) => s.set(requests[i]));

const host = new ScriptHost({
  policy: () => ({
    defaultVerdict: "accept",
    budgetMs: 1000,
    maxErrors: 1_000_000,
    errorWindowMs: 1000,
  }),
  relayIp: () => R,
  serverOf: (_p, _c, _cp, _s, port) => [S, port],
  now: () => performance.now(),
  check: () => Promise.resolve(),
});
await host.load(
  "accept_all",
  new URL("./_fixtures/accept_all.ts", import.meta.url).pathname,
  parseServices("udp:53"),
);

Deno.bench({ name: "64 UDP requests, no script", group: "batch", baseline: true }, () => {
  fresh();
  for (const bytes of scratch) engine.process(Hook.PreRouting, bytes, false);
});

Deno.bench({ name: "64 UDP requests, accept-all script", group: "batch" }, async (b) => {
  fresh();
  b.start();
  const jobs: ScriptJob[] = [];
  for (const bytes of scratch) jobs.push(host.request(bytes)!);
  await host.run(jobs);
  for (const job of jobs) engine.process(Hook.PreRouting, job.bytes, false);
  b.end();
});
