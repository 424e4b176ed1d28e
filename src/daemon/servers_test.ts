import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { parseConfig } from "../config/schema.ts";
import { Servers } from "./servers.ts";

function config(extra: Record<string, unknown>) {
  const r = parseConfig({ relay_ip: "198.51.100.1", tcp_ports: [80], udp_ports: [53], ...extra });
  if (!r.ok) throw new Error(r.errors.join());
  return r.config;
}

Deno.test("Servers: the relay's failed connections take a server out, and the pool follows", () => {
  let changes = 0;
  const servers = new Servers({ now: () => 0, onChange: () => changes++ });
  servers.configure(config({ real_ip: "203.0.113.10,203.0.113.20@2", health_fall: 2 }));
  const pool = servers.pool();
  assertEquals(pool.servers.map((s) => [s.ip, s.weight]), [[0xcb00710a, 1], [0xcb007114, 2]]);
  assertEquals(pool.up, { "tcp/80": [true, true], "udp/53": [true, true] });
  // The same object until something changes: the relay's targets are not made again.
  assert(servers.pool() === pool);
  const key = `80/${0xcb007114}`;
  servers.passive({ [key]: { active: 0, total: 1, connected: 0, failed: 1 } });
  assert(servers.pool() === pool);
  servers.passive({ [key]: { active: 0, total: 3, connected: 1, failed: 2 } });
  // One success between: still up.
  assertEquals(changes, 0);
  servers.passive({ [key]: { active: 0, total: 4, connected: 1, failed: 3 } });
  assertEquals(changes, 1);
  assertEquals(servers.pool().up["tcp/80"], [true, false]);
  // UDP 53 of that server is still up: only the TCP service is out.
  assertEquals(servers.pool().up["udp/53"], [true, true]);
  const view = servers.view({ [key]: { active: 0, total: 4, connected: 1, failed: 3 } }, () => 5);
  assertEquals(view.map((s) => [s.address, s.state, s.tcpTotal, s.tcpFailed, s.udpFlows]), [
    ["203.0.113.10", "up", 0, 0, 5],
    ["203.0.113.20", "partial", 4, 3, 5],
  ]);
  assertEquals(view[1].checks.map((c) => [c.service, c.state, c.passiveFailures]), [
    ["tcp/80", "down", 3],
    ["udp/53", "up", 0],
  ]);
});

Deno.test("Servers: health_udp_probe none leaves UDP services unchecked", () => {
  const servers = new Servers({ now: () => 0, onChange: () => {} });
  servers.configure(config({ real_ip: "203.0.113.10,203.0.113.20", health_udp_probe: "none" }));
  assertEquals(servers.pool().up, { "tcp/80": [true, true] });
  assertEquals(servers.view({}, () => 0)[0].checks.map((c) => c.service), ["tcp/80"]);
});

Deno.test("Servers: a lone server, or health_checks false, is never checked nor taken out", () => {
  for (
    const extra of [{ real_ip: "203.0.113.10" }, {
      real_ip: "203.0.113.10,203.0.113.20",
      health_checks: false,
    }]
  ) {
    let changes = 0;
    const servers = new Servers({ now: () => 0, onChange: () => changes++ });
    servers.configure(config(extra));
    assertEquals(servers.pool().up, {});
    servers.passive({ [`80/${0xcb00710a}`]: { active: 0, total: 9, connected: 0, failed: 9 } });
    assertEquals([changes, servers.pool().up], [0, {}]);
    assertEquals(
      servers.view({}, () => 0).map((s) => [s.state, s.checks]),
      extra.real_ip.split(",").map(() => ["up", []]),
    );
  }
});

Deno.test("Servers: unanswered UDP flows count against their server, answered ones for it", () => {
  const servers = new Servers({ now: () => 0, onChange: () => {} });
  servers.configure(config({ real_ip: "203.0.113.10,203.0.113.20", health_fall: 2 }));
  const s2 = 0xcb007114;
  servers.passiveUdp(53, s2, false);
  servers.passiveUdp(53, s2, true);
  servers.passiveUdp(53, s2, false);
  assertEquals(servers.pool().up["udp/53"], [true, true]);
  servers.passiveUdp(53, s2, false);
  assertEquals(servers.pool().up, { "tcp/80": [true, true], "udp/53": [true, false] });
});

Deno.test("Servers: each family is its own pool; IPv6 connection failures take an IPv6 server out", () => {
  const servers = new Servers({ now: () => 0, onChange: () => {} });
  servers.configure(
    config({ real_ip: "2001:db8:2::10,203.0.113.10,2001:db8:2::20@3", health_fall: 1 }),
  );
  assertEquals(servers.pool().servers.map((s) => s.address), ["203.0.113.10"]);
  const six = servers.pool6();
  assertEquals(six.servers.map((s) => [s.address, s.weight]), [
    ["2001:db8:2::10", 1],
    ["2001:db8:2::20", 3],
  ]);
  assertEquals(six.up["tcp/80"], [true, true]);
  // The relay counts IPv6 servers by address.
  servers.passive({ "80/2001:db8:2::20": { active: 0, total: 1, connected: 0, failed: 1 } });
  assertEquals(servers.pool6().up["tcp/80"], [true, false]);
  assertEquals(servers.pool().up["tcp/80"], [true]);
  const view = servers.view({ "80/2001:db8:2::20": noFlows(1) }, (s) => s.family === 6 ? 7 : 0);
  assertEquals(view.map((s) => [s.address, s.state, s.tcpFailed, s.udpFlows]), [
    ["2001:db8:2::10", "up", 0, 7],
    ["203.0.113.10", "up", 0, 0],
    ["2001:db8:2::20", "partial", 1, 7],
  ]);
});

function noFlows(failed: number) {
  return { active: 0, total: failed, connected: 0, failed };
}
