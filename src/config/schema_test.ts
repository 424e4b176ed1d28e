import { deepStrictEqual as assertEquals, match } from "node:assert/strict";
import { parseConfig, removedKeys } from "./schema.ts";

Deno.test("parseConfig() fills in the specification's defaults", () => {
  const r = parseConfig({});
  if (!r.ok) throw new Error(r.errors.join());
  assertEquals(r.config.gport, 16000);
  assertEquals(r.config.real_ip, "192.168.0.10");
  assertEquals(r.config.udp_ports, [53]);
  assertEquals(r.config.relay_ip, undefined);
});

Deno.test("parseConfig() names the key and the reason for each bad value", () => {
  const r = parseConfig({ gport: 70000, real_ip: "300.1.1.1", udp_ports: [53, 53], queue: "x" });
  assertEquals(r.ok, false);
  if (r.ok) return;
  assertEquals(r.errors.sort(), [
    "gport: must be 1-65535",
    "queue: must be a number",
    "real_ip: must be an IPv4 or IPv6 address like 203.0.113.10 or 2001:db8:2::10",
    "udp_ports: has a port twice",
  ]);
});

Deno.test("parseConfig() refuses unknown keys", () => {
  const r = parseConfig({ real_ip: "203.0.113.10", gprot: 1 });
  assertEquals(r, { ok: false, errors: ["unknown key: gprot"] });
});

Deno.test("parseConfig() refuses fractional ports and non-positive timeouts", () => {
  const r = parseConfig({ gport: 1.5, udp_timeout: 0 });
  assertEquals(r.ok ? [] : r.errors.sort(), [
    "gport: must be a whole number",
    "udp_timeout: must be more than 0 seconds",
  ]);
});

Deno.test("parseConfig() ignores the removed keys kernel_nat and relay_ports", () => {
  const r = parseConfig({ kernel_nat: false, relay_ports: "20000-29999", gport: 16001 });
  assertEquals(r.ok && r.config.gport, 16001);
  assertEquals(r.ok && "kernel_nat" in r.config, false);
  assertEquals(removedKeys({ kernel_nat: true, gport: 1 }).length, 1);
  match(removedKeys({ relay_ports: "1-2" })[0], /relay_ports is no longer used/);
});

Deno.test("parseConfig() takes tcp_conntrack false", () => {
  const r = parseConfig({ tcp_conntrack: false });
  assertEquals(r.ok && r.config.tcp_conntrack, false);
});

Deno.test("parseConfig() takes 0-64 relay threads, 0 (one per CPU) by default", () => {
  assertEquals(parseConfig({ relay_threads: 2 }).ok && 2, 2);
  const r = parseConfig({});
  assertEquals(r.ok && r.config.relay_threads, 0);
  assertEquals(parseConfig({ relay_threads: -1 }).ok, false);
  assertEquals(parseConfig({ relay_threads: 65 }).ok, false);
  assertEquals(parseConfig({ relay_threads: 1.5 }).ok, false);
});

Deno.test("parseConfig() takes a list of real servers and the balancing and health keys", () => {
  const r = parseConfig({
    real_ip: "203.0.113.10,203.0.113.20@3,203.0.113.30@backup",
    balance: "round-robin",
    health_interval: 5,
    health_timeout: 2,
    health_rise: 1,
    health_fall: 2,
    health_udp_probe: "hex:0102",
    health_dns_name: "lab.example",
  });
  if (!r.ok) throw new Error(r.errors.join());
  assertEquals(r.config.real_ip, "203.0.113.10,203.0.113.20@3,203.0.113.30@backup");
  const d = parseConfig({});
  if (!d.ok) throw new Error(d.errors.join());
  assertEquals(
    [d.config.balance, d.config.health_interval, d.config.health_timeout, d.config.health_rise],
    ["client-hash", 2, 1, 2],
  );
  assertEquals([d.config.health_fall, d.config.health_udp_probe, d.config.health_dns_name], [
    3,
    "dns",
    ".",
  ]);
});

Deno.test("parseConfig() refuses bad server lists and health settings, saying why", () => {
  const r = parseConfig({
    real_ip: "203.0.113.10,203.0.113.10",
    balance: "random",
    health_interval: 1,
    health_timeout: 2,
    health_fall: 0,
    health_udp_probe: "hex:0",
    health_dns_name: "bad name",
  });
  assertEquals(r.ok ? [] : r.errors.sort(), [
    'balance: Invalid option: expected one of "client-hash"|"round-robin"',
    "health_dns_name: must be a domain name like example.org or . for the root",
    "health_fall: Too small: expected number to be >=1",
    'health_udp_probe: must be "dns", "none" or "hex:" and the bytes of the datagram to send',
    "real_ip: 203.0.113.10: listed twice",
  ]);
  const t = parseConfig({ health_interval: 1, health_timeout: 2 });
  assertEquals(t.ok ? [] : t.errors, ["health_timeout: must not exceed health_interval 1"]);
});
