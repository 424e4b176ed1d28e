import { deepStrictEqual as assertEquals, throws } from "node:assert/strict";
import { formatIpv4, isIpv4, parseIpv4 } from "./address.ts";

Deno.test("parseIpv4() and formatIpv4() round-trip", () => {
  for (const a of ["0.0.0.0", "198.51.100.1", "255.255.255.255", "203.0.113.10"]) {
    assertEquals(formatIpv4(parseIpv4(a)), a);
  }
  assertEquals(parseIpv4("255.255.255.255"), 0xffffffff);
});

Deno.test("parseIpv4() refuses what is not a dotted quad", () => {
  for (const a of ["", "1.2.3", "1.2.3.256", "01.2.3.4", "a.b.c.d", "1.2.3.4 ", "::1"]) {
    throws(() => parseIpv4(a), RangeError);
    assertEquals(isIpv4(a), false);
  }
});
