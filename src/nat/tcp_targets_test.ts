import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { ADDR } from "./_engine_fixture.ts";
import { TcpTargets, type TcpTargetSettings } from "./tcp_targets.ts";
import { onePool, type ServerPool } from "../servers/balancer.ts";
import { parseServerList } from "../servers/list.ts";

const { C, R, RS, S } = ADDR;
const GPORT = 16000;
const noCounts = { active: 0, total: 0, connected: 0, failed: 0 };

function targets(tcpPorts: number[]) {
  const settings: TcpTargetSettings = { pool: onePool(S), tcpPorts: new Set(tcpPorts) };
  return { targets: new TcpTargets(() => settings), settings };
}

Deno.test("TcpTargets.target() sends a connection to the real server on its service port", () => {
  const { targets: t } = targets([80, 443]);
  // Addresses signed, as the socket layer reads them.
  assertEquals(t.target(80, R | 0, C), {
    server: S | 0,
    serverPort: 80,
    local: 0,
    counts: noCounts,
  });
  assertEquals(t.target(443, R | 0, C), {
    server: S | 0,
    serverPort: 443,
    local: 0,
    counts: noCounts,
  });
  // The same target each time, whichever relay address: no object per connection.
  assert(t.target(80, R | 0, C) === t.target(80, RS | 0, C));
});

Deno.test("TcpTargets.target() has none for the gateway port itself or a removed service", () => {
  const { targets: t, settings } = targets([80, 8080]);
  // Not diverted: the listener's own port is where the client went.
  assertEquals(t.target(GPORT, R | 0, C), undefined);
  assertEquals(t.target(8080, R | 0, C)?.serverPort, 8080);
  // The steering still diverts 8080 while connections of it live; new ones are refused.
  settings.tcpPorts = new Set([80]);
  assertEquals(t.target(8080, R | 0, C), undefined);
  // A live real_ip change moves new connections.
  settings.pool = onePool(C);
  assertEquals(t.target(80, R | 0, C)?.server, C | 0);
});

Deno.test("TcpTargets.divertOwn() sends a port of the relay's own to its target from one address", () => {
  const { targets: t, settings } = targets([80]);
  const loopback = 0x7f000001;
  t.divertOwn(GPORT, loopback, loopback, 61000);
  assertEquals(t.target(GPORT, loopback, C), {
    server: loopback,
    serverPort: 61000,
    local: loopback,
    counts: noCounts,
  });
  // Someone who reaches the gateway port from outside is not sent there.
  assertEquals(t.target(GPORT, R | 0, C), undefined);
  // It survives a change of the services, and the services are diverted as before.
  settings.tcpPorts = new Set([80, 443]);
  assertEquals(t.target(GPORT, loopback, C)?.serverPort, 61000);
  assertEquals(t.target(443, R | 0, C)?.server, S | 0);
  t.undivertOwn(GPORT);
  assertEquals(t.target(GPORT, loopback, C), undefined);
  assertEquals(t.target(80, R | 0, C)?.serverPort, 80);
});

const S2 = 0xcb007114;

function twoServers(balance: ServerPool["balance"], up?: boolean[]): ServerPool {
  return {
    servers: [{ ip: S, weight: 1, backup: false }, { ip: S2, weight: 1, backup: false }],
    balance,
    up: up ? { "tcp/80": up } : {},
  };
}

Deno.test("TcpTargets.target() picks a server per client among those up, one object each", () => {
  const settings: TcpTargetSettings = { pool: twoServers("client-hash"), tcpPorts: new Set([80]) };
  const t = new TcpTargets(() => settings);
  const seen = new Map<number, object>();
  for (let i = 1; i < 200; i++) {
    const client = (0xc6336400 + i) | 0;
    const target = t.target(80, R | 0, client)!;
    // A client's connections stick to its server.
    assert(t.target(80, R | 0, client) === target);
    if (seen.has(target.server)) assert(seen.get(target.server) === target);
    seen.set(target.server, target);
  }
  assertEquals([...seen.keys()].sort(), [S | 0, S2 | 0].sort());
  // S2 down: every client goes to S.
  settings.pool = twoServers("client-hash", [true, false]);
  for (let i = 1; i < 50; i++) assertEquals(t.target(80, R | 0, 0xc6336400 + i)?.server, S | 0);
  // Both down: null, not undefined (the port is a service).
  settings.pool = twoServers("client-hash", [false, false]);
  assertEquals(t.target(80, R | 0, C), null);
  assertEquals(t.target(81, R | 0, C), undefined);
});

Deno.test("TcpTargets keeps each server's connection counts across a change of settings", () => {
  const settings: TcpTargetSettings = { pool: twoServers("round-robin"), tcpPorts: new Set([80]) };
  const t = new TcpTargets(() => settings);
  t.target(80, R | 0, C)!.counts.total++;
  settings.pool = twoServers("round-robin", [true, true]);
  const again = [t.target(80, R | 0, C)!, t.target(80, R | 0, C)!];
  assertEquals(again.map((x) => x.counts.total).sort(), [0, 1]);
  assertEquals([...t.counts().keys()].sort(), [`80/${S}`, `80/${S2}`]);
});

Deno.test("target6() picks an IPv6 server for the client, none when none is up", () => {
  const list = parseServerList("2001:db8:2::10,2001:db8:2::20");
  if (typeof list === "string") throw new Error(list);
  const settings: TcpTargetSettings = {
    pool: onePool(S),
    pool6: { servers: list, balance: "round-robin", up: {} },
    relayIp6: "2001:db8:1::1",
    tcpPorts: new Set([80]),
  };
  const t = new TcpTargets(() => settings);
  assert(t.ipv6());
  const picked = [1, 2, 3, 4].map((c) => t.target6(80, c)!.server);
  assertEquals(picked, ["2001:db8:2::10", "2001:db8:2::20", "2001:db8:2::10", "2001:db8:2::20"]);
  assertEquals(t.target6(81, 1), undefined);
  t.target6(80, 1)!.counts.failed++;
  assertEquals(t.counts().get("80/2001:db8:2::10")?.failed, 1);
  settings.pool6 = { servers: list, balance: "round-robin", up: { "tcp/80": [false, false] } };
  assertEquals(t.target6(80, 1), null);
  settings.pool6 = undefined;
  assert(!t.ipv6());
});
