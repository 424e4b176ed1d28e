import { deepStrictEqual as assertEquals, rejects } from "node:assert/strict";
import { type Config, parseConfig } from "../config/schema.ts";
import { Hook, Verdict } from "../queue/queue.ts";
import { MemoryDatapath } from "../queue/memory.ts";
import type { Steering, SteeringSpec } from "../steering/steering.ts";
import { parseIpv4 } from "../packet/address.ts";
import { buildUdpPacket } from "../packet/build.ts";
import { waitFor } from "../lab/wait.ts";
import { Daemon } from "./daemon.ts";
import { relayThreadCount, steeringSpec } from "./settings.ts";

function config(extra: Record<string, unknown> = {}): Config {
  // No TCP service: these tests bind no port on the machine.
  const r = parseConfig({
    real_ip: "203.0.113.10",
    relay_ip: "198.51.100.1",
    queue: 5,
    tcp_ports: [],
    ...extra,
  });
  if (!r.ok) throw new Error(r.errors.join());
  return r.config;
}

function harness(opts: { installFails?: boolean; openFails?: boolean } = {}) {
  const events: string[] = [];
  /** Servers whose probes fail; the others' succeed (no probe leaves the machine). */
  const dead = new Set<string>();
  const probe = (address: string) =>
    Promise.resolve(dead.has(address) ? "connection refused" : undefined);
  const specs: SteeringSpec[] = [];
  const datapath = new MemoryDatapath();
  const closeOrig = datapath.close.bind(datapath);
  datapath.close = () => {
    events.push("close");
    closeOrig();
  };
  const steering: Steering = {
    install: (spec) => {
      events.push(`install udp ${spec.udpPorts}`);
      specs.push(spec);
      return opts.installFails ? Promise.reject(new Error("iptables said no")) : Promise.resolve();
    },
    update: (spec) => {
      events.push(`update udp ${spec.udpPorts}`);
      specs.push(spec);
      return Promise.resolve();
    },
    remove: () => {
      events.push("remove");
      return Promise.resolve();
    },
  };
  const deps = {
    openDatapath: () => {
      events.push("open");
      return opts.openFails ? Promise.reject(new Error("EPERM")) : Promise.resolve(datapath);
    },
    steering,
    run: () => Promise.resolve({ code: 1, stdout: "", stderr: "" }),
    now: () => performance.now(),
    probes: { probeTcp: probe, probeUdp: probe },
  };
  return { events, specs, datapath, deps, dead };
}

const query = (srcPort: number, dstPort = 53) =>
  buildUdpPacket({
    src: parseIpv4("198.51.100.10"),
    dst: parseIpv4("198.51.100.1"),
    srcPort,
    dstPort,
  });

/**
 * Waits for `cond` for up to 5 s (room for a loaded machine, no wait once it holds); the
 * caller's assertion then says what did not happen.
 */
function until(cond: () => boolean | Promise<boolean>): Promise<void> {
  return waitFor(cond, { timeoutMs: 5_000, intervalMs: 10 }).catch(() => {});
}

Deno.test("Daemon binds the queue, steers, relays, and undoes both on close", async () => {
  const { events, datapath, deps } = harness();
  const daemon = await Daemon.create(config(), deps);
  await daemon.open();
  await daemon.start();
  datapath.inject({ bytes: query(4000), hook: Hook.PreRouting });
  await until(() => datapath.sent.length > 0);
  await daemon.close();
  assertEquals(events, ["open", "install udp 53", "remove", "close"]);
  assertEquals(datapath.sent.map((v) => [v.verdict, v.mangled]), [[Verdict.Accept, true]]);
  assertEquals(daemon.status().packets.udpRequests, 1);
});

Deno.test("Daemon.start() removes partial steering when the install fails", async () => {
  const { events, deps } = harness({ installFails: true });
  const daemon = await Daemon.create(config(), deps);
  await daemon.open();
  await rejects(daemon.start(), /iptables said no/);
  assertEquals(daemon.state, "stopped");
  await daemon.close();
  assertEquals(events, ["open", "install udp 53", "remove", "close"]);
});

Deno.test("Daemon.stop() removes the steering and empties the NAT table; start() steers again", async () => {
  const { events, datapath, deps } = harness();
  const daemon = await Daemon.create(config(), deps);
  await daemon.open();
  await daemon.start();
  datapath.inject({ bytes: query(4000), hook: Hook.PreRouting });
  await until(async () => (await daemon.nat()).length > 0);
  await daemon.stop();
  assertEquals([daemon.state, (await daemon.nat()).length], ["stopped", 0]);
  await daemon.start();
  assertEquals(daemon.state, "started");
  await daemon.close();
  assertEquals(events, ["open", "install udp 53", "remove", "install udp 53", "remove", "close"]);
});

Deno.test("Daemon.setConfig() refuses a bad value or a key that cannot change, changing nothing", async () => {
  const { events, deps } = harness();
  const daemon = await Daemon.create(config(), deps);
  await daemon.open();
  await daemon.start();
  await rejects(
    daemon.setConfig("real_ip", "300.1.1.1"),
    /real_ip: must be an IPv4 or IPv6 address/,
  );
  await rejects(daemon.setConfig("real_ip", "127.0.0.1"), /real_ip: is a loopback address/);
  await rejects(daemon.setConfig("real_ip", "0.0.0.0"), /real_ip: is an unspecified address/);
  await rejects(daemon.setConfig("real_ip", "255.255.255.255"), /real_ip: is the broadcast/);
  await rejects(daemon.setConfig("real_ip", "198.51.100.1"), /real_ip: is one of the relay's/);
  await rejects(
    daemon.setConfig("real_ip", "203.0.113.10,::1"),
    /real_ip: ::1 is the loopback address/,
  );
  await rejects(daemon.setConfig("udp_ports", "53,x"), /udp_ports.1: must be a number/);
  await rejects(daemon.setConfig("queue", "7"), /queue cannot change while krelay runs/);
  await rejects(daemon.setConfig("gprot", "7"), /unknown key gprot/);
  assertEquals(daemon.config, config());
  await daemon.close();
  assertEquals(events, ["open", "install udp 53", "remove", "close"]);
});

Deno.test("Daemon.setConfig() applies at once and keeps steering the ports of live flows", async () => {
  const { datapath, deps, specs } = harness();
  const daemon = await Daemon.create(config(), deps);
  await daemon.open();
  await daemon.start();
  datapath.inject({ bytes: query(4000), hook: Hook.PreRouting });
  await until(async () => (await daemon.nat()).length > 0);
  assertEquals(await daemon.setConfig("udp_ports", "5353"), {
    key: "udp_ports",
    from: [53],
    to: [5353],
  });
  // The flow on 53 is alive: 53 stays steered beside the new 5353.
  assertEquals(specs.at(-1)!.udpPorts, [53, 5353]);
  const change = await daemon.setConfig("real_ip", "203.0.113.20");
  assertEquals(change, { key: "real_ip", from: "203.0.113.10", to: "203.0.113.20" });
  assertEquals(daemon.status().config.real_ip, "203.0.113.20");
  await daemon.close();
});

Deno.test("Daemon spreads new UDP flows over the servers up, and follows their health", async () => {
  const { datapath, deps, dead, specs } = harness();
  const daemon = await Daemon.create(
    config({
      real_ip: "203.0.113.10,203.0.113.20",
      balance: "round-robin",
      health_interval: 0.1,
      health_timeout: 0.1,
      health_fall: 1,
      health_rise: 1,
    }),
    deps,
  );
  await daemon.open();
  await daemon.start();
  // krelay.ko's real_ip is the first server.
  assertEquals(specs[0].realIp, "203.0.113.10");
  const serverOf = async (port: number) => {
    const before = datapath.sent.length;
    datapath.inject({ bytes: query(port), hook: Hook.PreRouting });
    await until(() => datapath.sent.length > before);
    const sent = datapath.sent.at(-1)!;
    if (sent.verdict !== Verdict.Accept) return "dropped";
    const b = sent.packet.bytes;
    return `${b[16]}.${b[17]}.${b[18]}.${b[19]}`;
  };
  assertEquals([await serverOf(4000), await serverOf(4001)], ["203.0.113.10", "203.0.113.20"]);
  dead.add("203.0.113.20");
  await until(() => daemon.status().servers[1].state === "down");
  assertEquals(daemon.status().servers.map((s) => s.state), ["up", "down"]);
  assertEquals([await serverOf(4002), await serverOf(4003)], ["203.0.113.10", "203.0.113.10"]);
  dead.add("203.0.113.10");
  await until(() => daemon.status().servers[0].state === "down");
  assertEquals(await serverOf(4004), "dropped");
  assertEquals(daemon.status().packets.droppedNoServer, 1);
  dead.clear();
  await until(() => daemon.status().servers.every((s) => s.state === "up"));
  // Back in rotation: the turn starts again from the first server.
  assertEquals([await serverOf(4005), await serverOf(4006)], ["203.0.113.10", "203.0.113.20"]);
  // The flows of each server are counted.
  assertEquals(daemon.status().servers.map((s) => s.udpFlows), [4, 2]);
  await daemon.close();
});

Deno.test("Daemon follows krelay.ko's real_ip: the first server; another one is a list of one", async () => {
  const { deps } = harness();
  let realIp = "203.0.113.10";
  const steering = {
    ...deps.steering,
    observe: () => Promise.resolve({ gport: 16000, realIp, started: true }),
  };
  const daemon = await Daemon.create(config({ real_ip: "203.0.113.10,203.0.113.20@2" }), {
    ...deps,
    steering,
  });
  await daemon.open();
  await daemon.start();
  // Two ticks (one a second): the module shows the first server, the list stands.
  await new Promise((r) => setTimeout(r, 2_100));
  assertEquals(daemon.config.real_ip, "203.0.113.10,203.0.113.20@2");
  realIp = "203.0.113.30";
  await until(() => daemon.config.real_ip === "203.0.113.30");
  assertEquals(daemon.status().servers.map((s) => s.address), ["203.0.113.30"]);
  await daemon.close();
});

Deno.test("steeringSpec() adds the ports of live flows to the configured ones", () => {
  const spec = steeringSpec(config({ tcp_ports: [80], gport: 16001 }), "198.51.100.1", {
    udpPorts: [53, 5353],
    tcpPorts: [8080],
  });
  assertEquals([spec.udpPorts, spec.tcpPorts, spec.gport], [[53, 5353], [80, 8080], 16001]);
  assertEquals([spec.scriptedUdpPorts, spec.scriptedTcpPorts], [[], []]);
});

Deno.test("steeringSpec() queues only the scripted services krelay relays", () => {
  const spec = steeringSpec(
    config({ udp_ports: [53], tcp_ports: [80] }),
    "198.51.100.1",
    { udpPorts: [], tcpPorts: [] },
    { udp: [53, 5353], tcp: [80, 8080] },
  );
  assertEquals([spec.scriptedUdpPorts, spec.scriptedTcpPorts], [[53], [80]]);
});

Deno.test("relayThreadCount() is relay_threads, or one per usable CPU for 0", () => {
  assertEquals(relayThreadCount(config({ relay_threads: 3 }), () => [0, 1]), 3);
  assertEquals(relayThreadCount(config({ relay_threads: 0 }), () => [0, 1, 2, 3]), 4);
  assertEquals(relayThreadCount(config({ relay_threads: 0 }), () => []), 1);
});

Deno.test("Daemon.create() refuses a real_ip that is one of the relay's own addresses", async () => {
  const { deps } = harness();
  const run = (cmd: string, args: string[]) =>
    Promise.resolve(
      cmd === "ip" && args.includes("addr")
        ? {
          code: 0,
          stdout: "2: eth0    inet 192.0.2.7/24 brd 192.0.2.255 scope global\n",
          stderr: "",
        }
        : { code: 1, stdout: "", stderr: "" },
    );
  await rejects(
    Daemon.create({ ...config(), real_ip: "192.0.2.7" }, { ...deps, run }),
    /real_ip: is one of the relay's own addresses/,
  );
});

Deno.test("Daemon does not take the module's old values for its own while it installs", async () => {
  const { deps } = harness();
  // krelay.ko's files hold the module's defaults until the install writes krelay's values.
  let written = false;
  const install = deps.steering.install;
  deps.steering.install = async (spec) => {
    await new Promise((r) => setTimeout(r, 1_500)); // longer than a follow tick (1 s)
    written = true;
    return install(spec);
  };
  deps.steering.observe = () =>
    Promise.resolve({
      gport: 16000,
      realIp: written ? "203.0.113.10" : "192.168.0.10",
      started: written,
    });
  const daemon = await Daemon.create(config(), deps);
  await daemon.open();
  await daemon.start();
  // Installed with krelay's own real_ip, which no tick replaced meanwhile.
  assertEquals(daemon.config.real_ip, "203.0.113.10");
  await new Promise((r) => setTimeout(r, 1_200)); // a follow tick after the install
  assertEquals([daemon.config.real_ip, daemon.state], ["203.0.113.10", "started"]);
  await daemon.close();
});

Deno.test("Daemon.setConfig() gives a relay started with IPv4 only its IPv6 family, and takes it back", async () => {
  const { deps, specs } = harness();
  const daemon = await Daemon.create(config(), deps);
  await daemon.open();
  await daemon.start();
  assertEquals([daemon.relayIp6, specs.at(-1)!.relayIp6], [undefined, undefined]);
  // No IPv6 relay address given, and none found (the harness' commands fail): refused.
  await rejects(
    daemon.setConfig("real_ip", "203.0.113.10,2001:db8:2::10"),
    /real_ip: no IPv6 relay address \(give one in relay_ip\)/,
  );
  // IPv4's relay address stays.
  await rejects(
    daemon.setConfig("relay_ip", "198.51.100.2,2001:db8:1::1"),
    /relay_ip: the IPv4 relay address \(198.51.100.1\) cannot change while krelay runs/,
  );
  assertEquals(daemon.relayIp6, undefined);
  // The address first (nothing steered yet: no IPv6 server), then the server.
  assertEquals(await daemon.setConfig("relay_ip", "198.51.100.1,2001:db8:1::1"), {
    key: "relay_ip",
    from: "198.51.100.1",
    to: "198.51.100.1,2001:db8:1::1",
  });
  assertEquals(specs.at(-1)!.realIp6, undefined);
  await daemon.setConfig("real_ip", "203.0.113.10,2001:db8:2::10");
  const six = specs.at(-1)!;
  assertEquals([six.relayIp, six.relayIp6, six.realIp6], [
    "198.51.100.1",
    "2001:db8:1::1",
    "2001:db8:2::10",
  ]);
  assertEquals(daemon.status().relayIp6, "2001:db8:1::1");
  // Taken out of both: the steering's spec has no IPv6 left, IPv4's is as it was.
  await daemon.setConfig("real_ip", "203.0.113.10");
  await daemon.setConfig("relay_ip", "198.51.100.1");
  const four = specs.at(-1)!;
  assertEquals([four.relayIp, four.relayIp6, four.realIp6], ["198.51.100.1", undefined, undefined]);
  assertEquals(daemon.relayIp6, undefined);
  await daemon.close();
});

Deno.test("Daemon.setConfig() gives a relay started with IPv6 only its IPv4 family, and takes it back", async () => {
  const { deps, specs } = harness();
  const only6 = config({ real_ip: "2001:db8:2::10", relay_ip: "2001:db8:1::1" });
  const daemon = await Daemon.create(only6, deps);
  await daemon.open();
  await daemon.start();
  assertEquals([daemon.relayIp, specs.at(-1)!.relayIp], [undefined, undefined]);
  // No IPv4 relay address given, and none found (the harness' commands fail): refused.
  await rejects(
    daemon.setConfig("real_ip", "2001:db8:2::10,203.0.113.10"),
    /real_ip: no IPv4 relay address \(give one in relay_ip\)/,
  );
  await daemon.setConfig("relay_ip", "2001:db8:1::1,198.51.100.1");
  await daemon.setConfig("real_ip", "2001:db8:2::10,203.0.113.10");
  const both = specs.at(-1)!;
  assertEquals([both.relayIp, both.realIp, both.relayIp6], [
    "198.51.100.1",
    "203.0.113.10",
    "2001:db8:1::1",
  ]);
  assertEquals(daemon.status().relayIp, "198.51.100.1");
  // Out of relay_ip, IPv4 keeps its address while it has a server (as one detected at start);
  // its servers taken out too, IPv4 is steered no more.
  await daemon.setConfig("relay_ip", "2001:db8:1::1");
  assertEquals(daemon.relayIp, "198.51.100.1");
  await daemon.setConfig("real_ip", "2001:db8:2::10");
  const six = specs.at(-1)!;
  assertEquals([six.relayIp, six.realIp, six.relayIp6], [undefined, undefined, "2001:db8:1::1"]);
  await daemon.close();
});
