import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { divertedView, ipv6FlowView } from "./reports.ts";

Deno.test("divertedView() writes an IPv6 connection's endpoints as [address]:port", () => {
  const view = divertedView({
    client: 0,
    clientPort: 40000,
    relay: 0,
    servicePort: 80,
    server: 0,
    serverPort: 80,
    v6: { client: "2001:db8:1::10", relay: "2001:db8:1::1", server: "2001:db8:2::10" },
    relayPort: 40000,
    state: "established",
    created: 1000,
    lastSeen: 3000,
    bytesToServer: 5,
    bytesToClient: 6,
  }, 4000);
  assertEquals([view.client, view.relay, view.server, view.ageSeconds, view.idleSeconds], [
    "[2001:db8:1::10]:40000",
    "[2001:db8:1::1]:80",
    "[2001:db8:2::10]:80",
    3,
    1,
  ]);
});

Deno.test("ipv6FlowView() shows a kernel IPv6 UDP flow, idle since its last refresh", () => {
  const view = ipv6FlowView({
    client: "2001:db8:1::10",
    clientPort: 40000,
    server: "2001:db8:2::10",
    servicePort: 53,
    expiresSeconds: 25,
    timeoutSeconds: 30,
  }, "2001:db8:1::1");
  assertEquals(
    [view.protocol, view.client, view.relay, view.server, view.idleSeconds, view.state],
    ["udp", "[2001:db8:1::10]:40000", "[2001:db8:1::1]:53", "[2001:db8:2::10]:53", 5, "kernel"],
  );
});
