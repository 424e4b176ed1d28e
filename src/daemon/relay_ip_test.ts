import { deepStrictEqual as assertEquals, throws } from "node:assert/strict";
import { chooseRelayIp } from "./relay_ip.ts";

Deno.test("chooseRelayIp() takes the address not used toward the server", () => {
  assertEquals(
    chooseRelayIp(["127.0.0.1", "198.51.100.1", "203.0.113.1"], "203.0.113.1"),
    "198.51.100.1",
  );
});

Deno.test("chooseRelayIp() takes the only address of a one-armed relay", () => {
  assertEquals(chooseRelayIp(["127.0.0.1", "198.51.100.1"], "198.51.100.1"), "198.51.100.1");
});

Deno.test("chooseRelayIp() asks for --relay-ip when it cannot tell", () => {
  throws(
    () => chooseRelayIp(["198.51.100.1", "198.51.100.2", "203.0.113.1"], "203.0.113.1"),
    /--relay-ip/,
  );
  throws(() => chooseRelayIp(["127.0.0.1"], undefined), /no IPv4 address/);
});
