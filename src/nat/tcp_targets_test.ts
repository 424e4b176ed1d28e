import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { ADDR } from "./_engine_fixture.ts";
import { TcpTargets, type TcpTargetSettings } from "./tcp_targets.ts";

const { C, R, RS, S } = ADDR;
const GPORT = 16000;

function targets(tcpPorts: number[]) {
  const settings: TcpTargetSettings = { realIp: S, tcpPorts: new Set(tcpPorts) };
  return { targets: new TcpTargets(() => settings), settings };
}

Deno.test("TcpTargets.target() sends a connection to the real server on its service port", () => {
  const { targets: t } = targets([80, 443]);
  // Addresses signed, as the socket layer reads them.
  assertEquals(t.target(80, R | 0), { server: S | 0, serverPort: 80, local: 0 });
  assertEquals(t.target(443, R | 0), { server: S | 0, serverPort: 443, local: 0 });
  // The same target each time, whichever relay address: no object per connection.
  assert(t.target(80, R | 0) === t.target(80, RS | 0));
});

Deno.test("TcpTargets.target() has none for the gateway port itself or a removed service", () => {
  const { targets: t, settings } = targets([80, 8080]);
  // Not diverted: the listener's own port is where the client went.
  assertEquals(t.target(GPORT, R | 0), undefined);
  assertEquals(t.target(8080, R | 0)?.serverPort, 8080);
  // The steering still diverts 8080 while connections of it live; new ones are refused.
  settings.tcpPorts = new Set([80]);
  assertEquals(t.target(8080, R | 0), undefined);
  // A live real_ip change moves new connections.
  settings.realIp = C;
  assertEquals(t.target(80, R | 0)?.server, C | 0);
});

Deno.test("TcpTargets.divertOwn() sends a port of the relay's own to its target from one address", () => {
  const { targets: t, settings } = targets([80]);
  const loopback = 0x7f000001;
  t.divertOwn(GPORT, loopback, loopback, 61000);
  assertEquals(t.target(GPORT, loopback), { server: loopback, serverPort: 61000, local: loopback });
  // Someone who reaches the gateway port from outside is not sent there.
  assertEquals(t.target(GPORT, R | 0), undefined);
  // It survives a change of the services, and the services are diverted as before.
  settings.tcpPorts = new Set([80, 443]);
  assertEquals(t.target(GPORT, loopback)?.serverPort, 61000);
  assertEquals(t.target(443, R | 0)?.server, S | 0);
  t.undivertOwn(GPORT);
  assertEquals(t.target(GPORT, loopback), undefined);
  assertEquals(t.target(80, R | 0)?.serverPort, 80);
});
