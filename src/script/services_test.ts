import { deepStrictEqual as assertEquals, throws as assertThrows } from "node:assert/strict";
import { formatServices, keyOf, parseServices, serviceKey } from "./services.ts";

Deno.test("parseServices reads udp:53,tcp:80 and the | form, once each", () => {
  assertEquals(parseServices("udp:53,tcp:80"), [
    { protocol: "udp", port: 53 },
    { protocol: "tcp", port: 80 },
  ]);
  assertEquals(formatServices(parseServices("UDP:53|tcp:80 udp:53")), "udp:53,tcp:80");
});

Deno.test("parseServices refuses a bad protocol, port or an empty list", () => {
  for (const bad of ["", "icmp:1", "udp:0", "udp:70000", "udp", "53", "udp:53,tcp:x"]) {
    assertThrows(() => parseServices(bad), RangeError, bad);
  }
});

Deno.test("service keys tell protocols and ports apart", () => {
  assertEquals(keyOf({ protocol: "udp", port: 53 }), serviceKey(17, 53));
  assertEquals(
    keyOf({ protocol: "tcp", port: 53 }) === keyOf({ protocol: "udp", port: 53 }),
    false,
  );
});
