import { deepStrictEqual as assertEquals, throws } from "node:assert/strict";
import { addressFamilies, addressListProblem, firstOfEach, unusableIpv6 } from "./addresses.ts";

Deno.test("addressFamilies() splits a list per family, IPv6 in canonical text", () => {
  assertEquals(addressFamilies("203.0.113.10"), { v4: ["203.0.113.10"], v6: [] });
  assertEquals(addressFamilies(" 203.0.113.10 , 2001:DB8:2:0::10,203.0.113.20"), {
    v4: ["203.0.113.10", "203.0.113.20"],
    v6: ["2001:db8:2::10"],
  });
  throws(() => addressFamilies("203.0.113.10,relay.example"), /"relay\.example" is not/);
});

Deno.test("addressListProblem() refuses empty lists, repeats and two of a family for the relay", () => {
  assertEquals(addressListProblem("198.51.100.1,2001:db8:1::1", true), undefined);
  assertEquals(addressListProblem("", false), "must name an address");
  assertEquals(addressListProblem("2001:db8::1,2001:db8:0::1", false), "has an address twice");
  assertEquals(
    addressListProblem("198.51.100.1,198.51.100.2", true),
    "at most one address per family (one IPv4, one IPv6)",
  );
  assertEquals(addressListProblem("198.51.100.1,198.51.100.2", false), undefined);
  assertEquals(
    addressListProblem("300.1.1.1", false),
    'must be IPv4 or IPv6 addresses like 203.0.113.10,2001:db8:2::10 ("300.1.1.1" is not one)',
  );
});

Deno.test("firstOfEach() picks one address per family", () => {
  assertEquals(firstOfEach(undefined), {});
  assertEquals(firstOfEach("2001:db8:2::10"), { v4: undefined, v6: "2001:db8:2::10" });
  assertEquals(firstOfEach("203.0.113.10,2001:db8:2::10"), {
    v4: "203.0.113.10",
    v6: "2001:db8:2::10",
  });
});

Deno.test("unusableIpv6() refuses addresses no packet can be relayed to", () => {
  assertEquals(unusableIpv6("2001:db8:2::10"), undefined);
  assertEquals(unusableIpv6("::"), "is the unspecified address (::)");
  assertEquals(unusableIpv6("::1"), "is the loopback address (::1)");
  assertEquals(unusableIpv6("ff02::1"), "is a multicast address (ff00::/8)");
  assertEquals(unusableIpv6("::ffff:203.0.113.10"), "is an IPv4-mapped address");
});
