import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { buildTcpPacket, buildUdpPacket, checksumsValid } from "../packet/build.ts";
import { TcpFlag } from "../packet/ipv4_packet.ts";
import { ADDR, engineFixture, view } from "./_engine_fixture.ts";
import { Hook } from "./hook.ts";
import { Action } from "./rewriter.ts";

const { C, R, S } = ADDR;

Deno.test("a new UDP flow is recorded and its first packet sent to the real server, for the kernel", () => {
  const { engine, table } = engineFixture();
  const bytes = buildUdpPacket({ src: C, dst: R, srcPort: 4000, dstPort: 53 });
  assertEquals(engine.process(Hook.PreRouting, bytes, false), Action.AcceptRewritten);
  const packet = view(bytes);
  assertEquals([packet.src, packet.dst, packet.dstPort], [C, S, 53]);
  assertEquals(checksumsValid(bytes), { ip: true, l4: true });
  const [entry] = [...table.entries()];
  assertEquals([entry.client, entry.clientPort, entry.server, entry.serverPort], [C, 4000, S, 53]);
  assertEquals([engine.counters.toKernel, engine.counters.rewritten], [1, 1]);
});

Deno.test("a first packet to a port that is no UDP service is left alone", () => {
  const { engine, table } = engineFixture();
  const bytes = buildUdpPacket({ src: C, dst: R, srcPort: 4000, dstPort: 54 });
  const before = bytes.slice();
  assertEquals(engine.process(Hook.PreRouting, bytes, false), Action.Accept);
  assertEquals(bytes, before);
  assertEquals([table.stats().entries, engine.counters.toKernel], [0, 0]);
});

Deno.test("a scripted UDP service's request is NATed here and not counted as the kernel's", () => {
  const { engine, table } = engineFixture({ scriptedUdpPorts: [53] });
  const bytes = buildUdpPacket({ src: C, dst: R, srcPort: 4000, dstPort: 53 });
  assertEquals(engine.process(Hook.PreRouting, bytes, false), Action.AcceptRewritten);
  assertEquals(view(bytes).dst, S);
  assertEquals(table.stats().entries, 1);
  assertEquals([engine.counters.toKernel, engine.counters.udpRequests], [0, 1]);
});

Deno.test("a scripted TCP service's segments pass unchanged both ways, counted", () => {
  const { engine } = engineFixture({ tcpPorts: [80] });
  const syn = buildTcpPacket({ src: C, dst: R, srcPort: 40000, dstPort: 80, flags: TcpFlag.SYN });
  const ack = buildTcpPacket({
    src: R,
    dst: C,
    srcPort: 80,
    dstPort: 40000,
    flags: TcpFlag.SYN | TcpFlag.ACK,
  });
  const other = buildTcpPacket({ src: C, dst: R, srcPort: 40000, dstPort: 81, flags: 0 });
  const before = [syn.slice(), ack.slice(), other.slice()];
  assertEquals(engine.process(Hook.PreRouting, syn, false), Action.Accept);
  assertEquals(engine.process(Hook.PostRouting, ack, false), Action.Accept);
  assertEquals(engine.process(Hook.PreRouting, other, false), Action.Accept);
  assertEquals([syn, ack, other], before);
  assertEquals([engine.counters.tcpSegments, engine.counters.passedOtherPort], [2, 1]);
});
