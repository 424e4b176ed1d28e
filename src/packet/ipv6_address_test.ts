import { deepStrictEqual as assertEquals, throws } from "node:assert/strict";
import fc from "fast-check";
import { canonicalIpv6, formatIpv6, isIpv6, parseIpv6 } from "./ipv6_address.ts";

Deno.test("parseIpv6() reads the full, the compressed and the IPv4-tailed forms", () => {
  const full = parseIpv6("2001:0db8:0001:0000:0000:0000:0000:0010");
  assertEquals(parseIpv6("2001:db8:1::10"), full);
  assertEquals([...parseIpv6("::")], new Array(16).fill(0));
  assertEquals([...parseIpv6("::1")], [...new Array(15).fill(0), 1]);
  assertEquals([...parseIpv6("::ffff:198.51.100.1").slice(10)], [255, 255, 198, 51, 100, 1]);
});

Deno.test("parseIpv6() refuses what is not an IPv6 address", () => {
  for (
    const t of [
      "",
      "198.51.100.1",
      "2001:db8::1::2",
      "2001:db8:1:2:3:4:5:6:7",
      "2001:db8:1:2:3:4:5",
      "12345::",
      "2001:db8::g",
      "::ffff:198.51.100.256",
      ":1",
      "2001:db8:1:2:3:4:5::6",
    ]
  ) {
    throws(() => parseIpv6(t), RangeError, t);
    assertEquals(isIpv6(t), false);
  }
});

Deno.test("formatIpv6() writes RFC 5952's canonical form", () => {
  const cases: [string, string][] = [
    ["2001:DB8:0:0:0:0:0:1", "2001:db8::1"],
    ["2001:db8:0:1:0:0:0:1", "2001:db8:0:1::1"],
    // A single zero group is not compressed; on a tie, the first run is.
    ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"],
    ["2001:0:0:1:0:0:0:1", "2001:0:0:1::1"],
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
    ["::", "::"],
    ["1::", "1::"],
  ];
  for (const [text, canonical] of cases) assertEquals(canonicalIpv6(text), canonical, text);
});

Deno.test("formatIpv6() and parseIpv6() round-trip any 16 bytes", () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (bytes) => {
      const text = formatIpv6(bytes);
      assertEquals(parseIpv6(text), bytes);
      // Canonical: formatting again gives the same text; no 4-digit group keeps a leading 0.
      assertEquals(canonicalIpv6(text), text);
      assertEquals(/(^|:)0[0-9a-f]/.test(text), false);
    }),
    { numRuns: 2000 },
  );
});
