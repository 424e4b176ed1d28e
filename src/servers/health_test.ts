import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { Checker } from "./checker.ts";
import { type HealthChange, HealthCheck, ServerHealth } from "./health.ts";

Deno.test("HealthCheck goes down after `fall` failures in a row, and up after `rise` successes", () => {
  const c = new HealthCheck({ rise: 2, fall: 3 }, 0);
  assertEquals(c.state, "up");
  // A success between failures resets the count.
  assertEquals([c.record(false, 1), c.record(false, 2), c.record(true, 3)], [false, false, false]);
  assertEquals([c.record(false, 4), c.record(false, 5)], [false, false]);
  assertEquals([c.record(false, 6), c.state, c.since], [true, "down", 6]);
  // Down: one success is not enough, a failure starts again.
  assertEquals([c.record(true, 7), c.record(false, 8), c.record(true, 9)], [false, false, false]);
  assertEquals([c.record(true, 10), c.state, c.since], [true, "up", 10]);
  assertEquals([c.checks, c.checkFailures, c.passiveFailures], [10, 6, 0]);
});

Deno.test("HealthCheck counts passive failures toward `fall`, and ignores them while down", () => {
  const c = new HealthCheck({ rise: 1, fall: 2 }, 0);
  c.record(false, 1, true);
  assertEquals(c.record(false, 2, true), true);
  assertEquals(c.state, "down");
  // A flow's result while down (an old connection) neither helps nor hurts.
  assertEquals(c.record(true, 3, true), false);
  assertEquals(c.state, "down");
  assertEquals(c.record(true, 4), true);
  assertEquals([c.passiveFailures, c.checks], [2, 1]);
});

/** Two servers' TCP 80 checked with probes that answer as `alive` says, on a fake clock. */
function harness(settings = { intervalMs: 2000, timeoutMs: 1000, rise: 2, fall: 3 }) {
  let clock = 0;
  const alive = new Map([["203.0.113.10", true], ["203.0.113.20", true]]);
  const changes: (HealthChange & { at: number })[] = [];
  const health = new ServerHealth(settings, (c) => changes.push({ ...c, at: clock }));
  health.configure([...alive.keys()], [{ protocol: "tcp", port: 80 }], settings, clock);
  const checker = new Checker(health, {
    now: () => clock,
    udpProbe: () => "none",
    // A dead server's probe takes the whole timeout, as a silent one's would.
    probeTcp: (address, _port, timeoutMs) => {
      if (alive.get(address)) return Promise.resolve(undefined);
      clock += timeoutMs;
      return Promise.resolve(`no answer in ${timeoutMs} ms`);
    },
  });
  const run = async (ms: number) => {
    const end = clock + ms;
    while (clock < end) {
      checker.poll();
      await checker.settled();
      clock += 100;
    }
  };
  return { health, alive, changes, run, now: () => clock };
}

Deno.test("with default settings a dead server is out within 10 s and back after it recovers", async () => {
  const { health, alive, changes, run, now } = harness();
  await run(5000);
  assertEquals(changes.length, 0);
  assertEquals(health.up(), { "tcp/80": [true, true] });
  alive.set("203.0.113.20", false);
  const died = now();
  await run(10_000);
  assertEquals(changes.length, 1);
  assertEquals([changes[0].address, changes[0].state], ["203.0.113.20", "down"]);
  assert(changes[0].at - died <= 10_000, `down after ${changes[0].at - died} ms`);
  assertEquals(health.up(), { "tcp/80": [true, false] });
  alive.set("203.0.113.20", true);
  const back = now();
  await run(10_000);
  assertEquals(changes.map((c) => c.state), ["down", "up"]);
  // rise 2 at a 2 s interval.
  assert(changes[1].at - back <= 4_100, `up after ${changes[1].at - back} ms`);
  assertEquals(health.up(), { "tcp/80": [true, true] });
});

Deno.test("ServerHealth probes each check once per interval, never two at once", async () => {
  const { health, run } = harness();
  await run(10_000);
  const c = health.check({ protocol: "tcp", port: 80 }, "203.0.113.10")!;
  // 10 s at 2 s: 5 probes (the first at once).
  assert(c.health.checks >= 5 && c.health.checks <= 6, `${c.health.checks} probes`);
});

Deno.test("ServerHealth keeps the state of checks that stay when reconfigured", () => {
  const s = { intervalMs: 1000, timeoutMs: 500, rise: 1, fall: 1 };
  const health = new ServerHealth(s, () => {});
  const tcp80 = { protocol: "tcp" as const, port: 80 };
  health.configure(["203.0.113.10", "203.0.113.20"], [tcp80], s, 0);
  const [c] = health.due(0);
  health.probed(c, false, 0, 10);
  assertEquals(health.up(), { "tcp/80": [false, true] });
  const before = health.generation;
  health.configure(["203.0.113.30", "203.0.113.10"], [tcp80, { protocol: "udp", port: 53 }], s, 20);
  assert(health.generation > before);
  assertEquals(health.up(), { "tcp/80": [true, false], "udp/53": [true, true] });
  // Passive failures of the relay take a server down too.
  health.passive(tcp80, "203.0.113.30", 1, 0, 30);
  assertEquals(health.up()["tcp/80"], [false, false]);
});
