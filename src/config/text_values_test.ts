import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { configKeys, valueFromText, valueToText } from "./text_values.ts";

Deno.test("valueFromText() converts by the key's type and leaves bad text for validation", () => {
  assertEquals(valueFromText("gport", "16001"), 16001);
  assertEquals(valueFromText("udp_ports", "53,5353"), [53, 5353]);
  assertEquals(valueFromText("udp_ports", ""), []);
  assertEquals(valueFromText("real_ip", "203.0.113.10"), "203.0.113.10");
  assertEquals(valueFromText("gport", "lots"), "lots");
  assertEquals(valueFromText("no_such_key", "1"), "1");
});

Deno.test("valueToText() is the inverse of valueFromText()", () => {
  for (
    const [key, text] of [["gport", "16001"], ["udp_ports", "53,5353"], ["real_ip", "1.2.3.4"]]
  ) {
    assertEquals(valueToText(valueFromText(key, text)), text);
  }
});

Deno.test("configKeys() lists every key with its description", () => {
  const keys = configKeys().map(([k]) => k);
  for (const k of ["real_ip", "gport", "udp_ports", "tcp_ports", "queue"]) {
    assertEquals(keys.includes(k), true);
  }
  assertEquals(configKeys().every(([, s]) => typeof s.description === "string"), true);
});

Deno.test("valueFromText() reads true and false for a boolean key", () => {
  assertEquals(valueFromText("tcp_conntrack", "true"), true);
  assertEquals(valueFromText("tcp_conntrack", "false"), false);
  assertEquals(valueFromText("tcp_conntrack", "yes"), "yes");
});
