import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { parseConfig } from "../config/schema.ts";
import { Hook, Verdict } from "../datapath/datapath.ts";
import { MemoryDatapath } from "../datapath/memory.ts";
import type { Steering, SteeringSpec } from "../datapath/steering.ts";
import { parseIpv4 } from "../packet/address.ts";
import { buildUdpPacket } from "../packet/build.ts";
import { runDaemon } from "./daemon.ts";

const config = (() => {
  const r = parseConfig({ real_ip: "203.0.113.10", relay_ip: "198.51.100.1", queue: 5 });
  if (!r.ok) throw new Error(r.errors.join());
  return r.config;
})();

function harness(opts: { installFails?: boolean; openFails?: boolean } = {}) {
  const events: string[] = [];
  const datapath = new MemoryDatapath();
  const closeOrig = datapath.close.bind(datapath);
  datapath.close = () => {
    events.push("close");
    closeOrig();
  };
  const steering: Steering = {
    install: (spec: SteeringSpec) => {
      events.push(`install q${spec.queue} ${spec.relayIp}->${spec.realIp}`);
      return opts.installFails ? Promise.reject(new Error("iptables said no")) : Promise.resolve();
    },
    remove: () => {
      events.push("remove");
      return Promise.resolve();
    },
  };
  let stop!: (why: string) => void;
  const stopSignal = new Promise<string>((r) => (stop = r));
  const deps = {
    openDatapath: () => {
      events.push("open");
      return opts.openFails ? Promise.reject(new Error("EPERM")) : Promise.resolve(datapath);
    },
    steering,
    run: () => Promise.resolve({ code: 1, stdout: "", stderr: "" }),
    now: () => 0,
    stopSignal,
  };
  return { events, datapath, deps, stop };
}

Deno.test("runDaemon() binds the queue, installs steering, relays, and undoes both on stop", async () => {
  const { events, datapath, deps, stop } = harness();
  const done = runDaemon(config, deps);
  const bytes = buildUdpPacket({
    src: parseIpv4("198.51.100.10"),
    dst: parseIpv4("198.51.100.1"),
    srcPort: 4000,
    dstPort: 53,
  });
  datapath.inject({ bytes, hook: Hook.PreRouting });
  for (let i = 0; i < 50 && datapath.sent.length === 0; i++) {
    await new Promise((r) => setTimeout(r, 10));
  }
  stop("test");
  assertEquals(await done, 0);
  assertEquals(events, ["open", "install q5 198.51.100.1->203.0.113.10", "remove", "close"]);
  assertEquals(datapath.sent.map((v) => [v.verdict, v.mangled]), [[Verdict.Accept, true]]);
});

Deno.test("runDaemon() installs nothing when the queue cannot be bound", async () => {
  const { events, deps } = harness({ openFails: true });
  assertEquals(await runDaemon(config, deps), 1);
  assertEquals(events, ["open"]);
});

Deno.test("runDaemon() releases the queue and removes partial steering when install fails", async () => {
  const { events, deps } = harness({ installFails: true });
  assertEquals(await runDaemon(config, deps), 1);
  assertEquals(events, ["open", "install q5 198.51.100.1->203.0.113.10", "remove", "close"]);
});
