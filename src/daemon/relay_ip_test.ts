import { deepStrictEqual as assertEquals, throws } from "node:assert/strict";
import { chooseRelayIp, detectRelayIp6 } from "./relay_ip.ts";
import type { CommandRunner } from "../system/command.ts";

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

Deno.test("detectRelayIp6() takes the global IPv6 address not used toward the IPv6 server", async () => {
  // What `ip -6 -o addr show scope global` and `ip -6 -o route get` print in the lab's relay.
  const out: Record<string, string> = {
    addr: "2: cli0    inet6 2001:db8:1::1/64 scope global \\       valid_lft forever\n" +
      "3: srv0    inet6 2001:DB8:2:0::1/64 scope global \\       valid_lft forever\n",
    route: "2001:db8:2::10 from :: dev srv0 proto kernel src 2001:db8:2::1 metric 256 pref medium",
  };
  const run: CommandRunner = (_cmd, args) =>
    Promise.resolve({
      code: 0,
      stdout: out[args.includes("route") ? "route" : "addr"],
      stderr: "",
    });
  assertEquals(await detectRelayIp6(run, "2001:db8:2::10"), "2001:db8:1::1");
  out.addr = "";
  let error = "";
  await detectRelayIp6(run, "2001:db8:2::10").catch((e) => (error = String(e)));
  assertEquals(/no IPv6 address found; set --relay-ip/.test(error), true);
});
