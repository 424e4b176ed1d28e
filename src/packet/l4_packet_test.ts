import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { tcp, udp } from "./_segments.ts";
import { IpProtocol, portsHeaderFits } from "./l4_packet.ts";

Deno.test("portsHeaderFits() takes a whole UDP or TCP header and nothing shorter", () => {
  const u = udp(1, 2, new Uint8Array(3));
  assertEquals(portsHeaderFits(u, 0, 8, IpProtocol.UDP), true);
  assertEquals(portsHeaderFits(u, 0, 7, IpProtocol.UDP), false);
  const t = tcp(1, 2, new Uint8Array(4));
  assertEquals(portsHeaderFits(t, 0, 20, IpProtocol.TCP), true);
  assertEquals(portsHeaderFits(t, 0, 19, IpProtocol.TCP), false);
  // A data offset past the room, or below the 20-byte minimum.
  t[12] = 6 << 4;
  assertEquals(portsHeaderFits(t, 0, 23, IpProtocol.TCP), false);
  assertEquals(portsHeaderFits(t, 0, 24, IpProtocol.TCP), true);
  t[12] = 4 << 4;
  assertEquals(portsHeaderFits(t, 0, 24, IpProtocol.TCP), false);
});

Deno.test("portsHeaderFits() gives no ports to ICMP", () => {
  assertEquals(portsHeaderFits(new Uint8Array(64), 0, 64, IpProtocol.ICMP), false);
});
