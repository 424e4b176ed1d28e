import { deepStrictEqual as assertEquals, throws } from "node:assert/strict";
import { checkRealIp, realIpListProblem, realIpProblem } from "./real_ip.ts";
import { parseConfig } from "./schema.ts";

Deno.test("realIpProblem refuses loopback, unspecified, broadcast, multicast and own addresses", () => {
  assertEquals(realIpProblem("127.0.0.1"), "is a loopback address (127.0.0.0/8)");
  assertEquals(realIpProblem("127.8.9.10"), "is a loopback address (127.0.0.0/8)");
  assertEquals(realIpProblem("0.0.0.0"), "is an unspecified address (0.0.0.0/8)");
  assertEquals(realIpProblem("255.255.255.255"), "is the broadcast address");
  assertEquals(realIpProblem("224.0.0.1"), "is a multicast address (224.0.0.0/4)");
  assertEquals(realIpProblem("239.255.255.250"), "is a multicast address (224.0.0.0/4)");
  const own = ["198.51.100.1", "192.0.2.1"];
  assertEquals(realIpProblem("192.0.2.1", own), "is one of the relay's own addresses");
  assertEquals(realIpProblem("203.0.113.10", own), undefined);
  assertEquals(realIpProblem("223.255.255.254"), undefined);
  assertEquals(realIpProblem("240.0.0.1"), undefined);
  throws(() => checkRealIp("198.51.100.1", own), /^Error: real_ip: is one of the relay's own/);
});

Deno.test("the schema applies the rule to real_ip from flags, the file or config set", () => {
  const bad = parseConfig({ real_ip: "127.0.0.1" });
  assertEquals(bad, { ok: false, errors: ["real_ip: is a loopback address (127.0.0.0/8)"] });
  assertEquals(parseConfig({ real_ip: "203.0.113.10" }).ok, true);
});

Deno.test("realIpListProblem: IPv6 servers alone, with weights and backups, are a list", () => {
  assertEquals(realIpListProblem("2001:db8:2::10,2001:db8:2::20@2@backup"), undefined);
  assertEquals(realIpListProblem("::1"), "::1 is the loopback address (::1)");
  assertEquals(
    realIpListProblem("2001:db8:2::10", ["2001:db8:2::10"]),
    "2001:db8:2::10 is one of the relay's own addresses",
  );
});
