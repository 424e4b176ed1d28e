import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { buildTcpPacket, buildUdpPacket } from "../packet/build.ts";
import { TcpFlag } from "../packet/ipv4_packet.ts";
import { ADDR, engineFixture } from "./_engine_fixture.ts";
import { Hook } from "./hook.ts";
import { Action } from "./rewriter.ts";

const { C, R, RS, S } = ADDR;

Deno.test("kernel_nat: a new UDP flow is recorded and its packet left unchanged for conntrack", () => {
  const { engine, table } = engineFixture({ kernelNat: true });
  const bytes = buildUdpPacket({ src: C, dst: R, srcPort: 4000, dstPort: 53 });
  const before = bytes.slice();
  assertEquals(engine.process(Hook.PreRouting, bytes, false), Action.Accept);
  assertEquals(bytes, before);
  const [entry] = [...table.entries()];
  assertEquals([entry.client, entry.clientPort, entry.server, entry.serverPort], [C, 4000, S, 53]);
  assertEquals([engine.counters.toKernel, engine.counters.rewritten], [1, 0]);
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

Deno.test("kernel_nat: a diverted connection without a queued SYN gets its flow at accept", () => {
  const { engine, table } = engineFixture({ kernelNat: true });
  const entry = engine.tcp.divertedFlow(C, 40000, R, 80, 0);
  assertEquals([entry?.client, entry?.clientPort, entry?.server, entry?.serverPort], [
    C,
    40000,
    S,
    80,
  ]);
  assertEquals(entry?.state, "syn");
  // A queued SYN's flow is the one found, not a second one.
  engine.process(
    Hook.PreRouting,
    buildTcpPacket({ src: C, dst: R, srcPort: 40001, dstPort: 80, flags: TcpFlag.SYN }),
    false,
  );
  const queued = engine.tcp.acceptedFlow(C, 40001, R);
  assertEquals(engine.tcp.divertedFlow(C, 40001, R, 80, 0), queued);
  assertEquals(table.stats().entries, 2);
});

Deno.test("kernel_nat: a diverted connection on a client port busy with another service has no flow", () => {
  const { engine } = engineFixture({ kernelNat: true, tcpPorts: [80, 443] });
  const first = engine.tcp.divertedFlow(C, 40000, R, 80, 0)!;
  engine.tcp.bindUpstream(first, 5000);
  assertEquals(engine.tcp.divertedFlow(C, 40000, R, 443, 0), undefined);
  // Once the first connection is closed, the port is the client's to reuse.
  engine.tcp.closed(first, 0);
  assertEquals(engine.tcp.divertedFlow(C, 40000, R, 443, 0)?.servicePort, 443);
});

Deno.test("kernel_nat: a connection to the gateway port itself, or to a removed service, has no flow", () => {
  const { engine, settings, table } = engineFixture({ kernelNat: true, tcpPorts: [80, 8080] });
  // Not diverted: the listener's own port is where the client went.
  assertEquals(engine.tcp.divertedFlow(C, 40000, R, settings.gport, 0), undefined);
  const live = engine.tcp.divertedFlow(C, 40001, R, 8080, 0);
  assertEquals(live?.servicePort, 8080);
  settings.tcpPorts = new Set([80]);
  // The steering still diverts 8080 while a flow of it lives; new connections are refused.
  assertEquals(engine.tcp.divertedFlow(C, 40002, R, 8080, 0), undefined);
  assertEquals(table.stats().entries, 1);
});
