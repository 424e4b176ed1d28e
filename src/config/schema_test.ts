import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { parseConfig } from "./schema.ts";

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
    "real_ip: must be an IPv4 address like 203.0.113.10",
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

Deno.test("parseConfig() refuses a gport or service port inside the relay's own port range", () => {
  const r = parseConfig({ gport: 20001, tcp_ports: [80, 20002], relay_ports: "20000-20010" });
  assertEquals(r.ok ? [] : r.errors.sort(), [
    "gport: is inside relay_ports 20000-20010",
    "tcp_ports: 20002 inside relay_ports 20000-20010",
  ]);
});

Deno.test("parseConfig() refuses a malformed or reversed port range", () => {
  for (const relay_ports of ["20000", "30000-20000", "1-70000"]) {
    const r = parseConfig({ relay_ports });
    assertEquals(r.ok, false, relay_ports);
  }
});

Deno.test("parseConfig() takes tcp_conntrack false only with kernel_nat", () => {
  assertEquals(parseConfig({ tcp_conntrack: false }), {
    ok: false,
    errors: [
      "tcp_conntrack: false needs kernel_nat (without it krelay rewrites every packet before conntrack)",
    ],
  });
  const r = parseConfig({ tcp_conntrack: false, kernel_nat: true });
  assertEquals(r.ok && r.config.tcp_conntrack, false);
});

Deno.test("parseConfig() takes relay_threads above 1 only with kernel_nat, and 1-64 threads", () => {
  assertEquals(parseConfig({ relay_threads: 2 }), {
    ok: false,
    errors: [
      "relay_threads: more than 1 needs kernel_nat (in NFQUEUE mode the relay shares the NAT " +
      "table with the packet loop)",
    ],
  });
  const r = parseConfig({ relay_threads: 2, kernel_nat: true });
  assertEquals(r.ok && r.config.relay_threads, 2);
  assertEquals(
    parseConfig({}).ok &&
      (parseConfig({}) as { config: { relay_threads: number } }).config.relay_threads,
    1,
  );
  assertEquals(parseConfig({ relay_threads: 0, kernel_nat: true }).ok, false);
  assertEquals(parseConfig({ relay_threads: 65, kernel_nat: true }).ok, false);
});
