import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { buildTcpPacket, buildUdpPacket, checksumsValid } from "../packet/build.ts";
import { TcpFlag } from "../packet/ipv4_packet.ts";
import { ADDR, engineFixture, view } from "./_engine_fixture.ts";
import { Hook } from "./hook.ts";
import { Action } from "./rewriter.ts";

const { C, R, RS, S } = ADDR;

Deno.test("kernel_nat: a new UDP flow is recorded and its first packet sent to the real server", () => {
  const { engine, table } = engineFixture({ kernelNat: true });
  const bytes = buildUdpPacket({ src: C, dst: R, srcPort: 4000, dstPort: 53 });
  assertEquals(engine.process(Hook.PreRouting, bytes, false), Action.AcceptRewritten);
  const packet = view(bytes);
  assertEquals([packet.src, packet.dst, packet.dstPort], [C, S, 53]);
  assertEquals(checksumsValid(bytes), { ip: true, l4: true });
  const [entry] = [...table.entries()];
  assertEquals([entry.client, entry.clientPort, entry.server, entry.serverPort], [C, 4000, S, 53]);
  assertEquals([engine.counters.toKernel, engine.counters.rewritten], [1, 1]);
});

Deno.test("kernel_nat: a first packet to a port that is no UDP service is left alone", () => {
  const { engine, table } = engineFixture({ kernelNat: true });
  const bytes = buildUdpPacket({ src: C, dst: R, srcPort: 4000, dstPort: 54 });
  const before = bytes.slice();
  assertEquals(engine.process(Hook.PreRouting, bytes, false), Action.Accept);
  assertEquals(bytes, before);
  assertEquals([table.stats().entries, engine.counters.toKernel], [0, 0]);
});

Deno.test("kernel_nat: a client's SYN records the original destination without a rewrite", () => {
  const { engine } = engineFixture({ kernelNat: true });
  const syn = buildTcpPacket({ src: C, dst: R, srcPort: 40000, dstPort: 80, flags: TcpFlag.SYN });
  const before = syn.slice();
  assertEquals(engine.process(Hook.PreRouting, syn, false), Action.Accept);
  assertEquals(syn, before);
  assertEquals(engine.tcp.acceptedFlow(C, 40000, R)?.servicePort, 80);
});

Deno.test("kernel_nat: a packet queued at POSTROUTING (rules of an older run) is left alone", () => {
  const { engine } = engineFixture({ kernelNat: true });
  engine.process(
    Hook.PreRouting,
    buildTcpPacket({ src: C, dst: R, srcPort: 40000, dstPort: 80, flags: TcpFlag.SYN }),
    false,
  );
  const y = engine.tcp.bindUpstream(engine.tcp.acceptedFlow(C, 40000, R)!, 5000)!;
  const up = buildTcpPacket({ src: RS, dst: S, srcPort: y, dstPort: 80, flags: TcpFlag.SYN });
  const before = up.slice();
  assertEquals(engine.process(Hook.PostRouting, up, false), Action.Accept);
  assertEquals(up, before);
  assertEquals(engine.counters.passedNoFlow, 1);
});

Deno.test("kernel_nat: a diverted connection goes to the real server on its service port, with no entry", () => {
  const { engine, table } = engineFixture({ kernelNat: true, tcpPorts: [80, 443] });
  // Addresses signed, as the socket layer reads them.
  assertEquals(engine.tcp.divertedTarget(80, R | 0), { server: S | 0, serverPort: 80, local: 0 });
  assertEquals(engine.tcp.divertedTarget(443, R | 0), { server: S | 0, serverPort: 443, local: 0 });
  // The same target each time: no object per connection.
  assert(engine.tcp.divertedTarget(80, R | 0) === engine.tcp.divertedTarget(80, RS | 0));
  // The kernel rewrites nothing for it: the table has nothing to translate.
  assertEquals(table.stats().entries, 0);
});

Deno.test("kernel_nat: a connection to the gateway port itself, or to a removed service, has no target", () => {
  const { engine, settings } = engineFixture({ kernelNat: true, tcpPorts: [80, 8080] });
  // Not diverted: the listener's own port is where the client went.
  assertEquals(engine.tcp.divertedTarget(settings.gport, R | 0), undefined);
  assertEquals(engine.tcp.divertedTarget(8080, R | 0)?.serverPort, 8080);
  // The steering still diverts 8080 while connections of it live; new ones are refused.
  settings.tcpPorts = new Set([80]);
  assertEquals(engine.tcp.divertedTarget(8080, R | 0), undefined);
  // A live real_ip change moves new connections.
  settings.realIp = C;
  assertEquals(engine.tcp.divertedTarget(80, R | 0)?.server, C | 0);
});

Deno.test("kernel_nat: a port of the relay's own is diverted to its target from its one local address", () => {
  const { engine, settings } = engineFixture({ kernelNat: true, tcpPorts: [80] });
  const loopback = 0x7f000001;
  engine.tcp.divertOwn(settings.gport, loopback, loopback, 61000);
  assertEquals(engine.tcp.divertedTarget(settings.gport, loopback), {
    server: loopback,
    serverPort: 61000,
    local: loopback,
  });
  // Someone who reaches the gateway port from outside is not sent there.
  assertEquals(engine.tcp.divertedTarget(settings.gport, R | 0), undefined);
  // It survives a change of the services, and the services are diverted as before.
  settings.tcpPorts = new Set([80, 443]);
  assertEquals(engine.tcp.divertedTarget(settings.gport, loopback)?.serverPort, 61000);
  assertEquals(engine.tcp.divertedTarget(443, R | 0)?.server, S | 0);
  engine.tcp.undivertOwn(settings.gport);
  assertEquals(engine.tcp.divertedTarget(settings.gport, loopback), undefined);
  assertEquals(engine.tcp.divertedTarget(80, R | 0)?.serverPort, 80);
});
