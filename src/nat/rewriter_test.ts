import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { onePool } from "../servers/balancer.ts";
import { buildUdpPacket, checksumsValid } from "../packet/build.ts";
import { Hook } from "./hook.ts";
import { Action } from "./rewriter.ts";
import { ADDR, engineFixture, view } from "./_engine_fixture.ts";

const { C, C2, R, S, S2 } = ADDR;
const fixture = (capacity = 1024) => engineFixture({ capacity });

const query = (src: number, srcPort: number, dst = R, dstPort = 53) =>
  buildUdpPacket({ src, dst, srcPort, dstPort, payload: new TextEncoder().encode("query") });
const answer = (dst: number, dstPort: number, src = S) =>
  buildUdpPacket({ src, dst, srcPort: 53, dstPort, payload: new TextEncoder().encode("answer") });

Deno.test("U1/U2: a request to relay:53 goes to the real server with the client's address kept", () => {
  const { engine } = fixture();
  const bytes = query(C, 40000);
  assertEquals(engine.process(Hook.PreRouting, bytes, false), Action.AcceptRewritten);
  const p = view(bytes);
  assertEquals([p.src, p.srcPort, p.dst, p.dstPort], [C, 40000, S, 53]);
  assertEquals(checksumsValid(bytes), { ip: true, l4: true });
  assertEquals(engine.counters.udpRequests, 1);
});

Deno.test("U3/U4: the server's reply comes back from relay:53", () => {
  const { engine, table } = fixture();
  engine.process(Hook.PreRouting, query(C, 40000), false);
  const bytes = answer(C, 40000);
  assertEquals(engine.process(Hook.PostRouting, bytes, false), Action.AcceptRewritten);
  const p = view(bytes);
  assertEquals([p.src, p.srcPort, p.dst, p.dstPort], [R, 53, C, 40000]);
  assertEquals(checksumsValid(bytes), { ip: true, l4: true });
  const [entry] = [...table.entries()];
  assertEquals([entry.state, entry.packetsToServer, entry.packetsToClient], ["replied", 1, 1]);
});

Deno.test("U1-U4 with partial checksums give full, valid checksums", () => {
  const { engine } = fixture();
  for (
    const [hook, bytes] of [[Hook.PreRouting, query(C, 1)], [
      Hook.PostRouting,
      answer(C, 1),
    ]] as const
  ) {
    bytes[26] = 0x12; // a pseudo-header-only value: anything but the final checksum
    assertEquals(engine.process(hook, bytes, true), Action.AcceptRewritten);
    assertEquals(checksumsValid(bytes), { ip: true, l4: true });
  }
});

Deno.test("two clients with the same source port each get their own answer", () => {
  const { engine, table } = fixture();
  engine.process(Hook.PreRouting, query(C, 5000), false);
  engine.process(Hook.PreRouting, query(C2, 5000), false);
  assertEquals(table.size, 2);
  const toC2 = answer(C2, 5000);
  engine.process(Hook.PostRouting, toC2, false);
  assertEquals([view(toC2).src, view(toC2).dst], [R, C2]);
  const toC = answer(C, 5000);
  engine.process(Hook.PostRouting, toC, false);
  assertEquals([view(toC).src, view(toC).dst], [R, C]);
});

Deno.test("a reply with no flow passes untouched", () => {
  const { engine } = fixture();
  const bytes = answer(C, 40000);
  const before = bytes.slice();
  assertEquals(engine.process(Hook.PostRouting, bytes, false), Action.Accept);
  assertEquals(bytes, before);
  assertEquals(engine.counters.passedNoFlow, 1);
});

Deno.test("other ports, other addresses, ICMP and fragments pass untouched and are counted", () => {
  const { engine } = fixture();
  const cases = [
    query(C, 1, R, 5353),
    query(C, 1, S, 53),
    buildUdpPacket({ src: C, dst: R, srcPort: 1, dstPort: 53, flagsOffset: 0x2000 }),
  ];
  const icmp = query(C, 1);
  icmp[9] = 1;
  cases.push(icmp);
  for (const bytes of cases) {
    const before = bytes.slice();
    assertEquals(engine.process(Hook.PreRouting, bytes, false), Action.Accept);
    assertEquals(bytes, before);
  }
  const c = engine.counters;
  assertEquals([c.passedOtherPort, c.passedOtherProtocol, c.passedFragment, c.rewritten], [
    2,
    1,
    1,
    0,
  ]);
});

Deno.test("malformed packets pass untouched, are counted, and never throw", () => {
  const { engine } = fixture();
  for (const bytes of [new Uint8Array(0), new Uint8Array(19), query(C, 1).subarray(0, 24)]) {
    assertEquals(engine.process(Hook.PreRouting, bytes, false), Action.Accept);
  }
  assertEquals(engine.counters.passedMalformed, 3);
});

Deno.test("an unreplied flow lives exactly udp_timeout; a reply after that finds no flow", () => {
  // Alive just before: a reply at udp_timeout (30 s) after the request is still relayed.
  const alive = fixture();
  alive.engine.process(Hook.PreRouting, query(C, 7), false);
  alive.tick(30_000);
  assertEquals(alive.table.sweep(), 0);
  assertEquals(alive.engine.process(Hook.PostRouting, answer(C, 7), false), Action.AcceptRewritten);
  // Gone just after.
  const { engine, table, tick } = fixture();
  engine.process(Hook.PreRouting, query(C, 7), false);
  tick(30_001);
  assertEquals(engine.process(Hook.PostRouting, answer(C, 7), false), Action.Accept);
  assertEquals(table.size, 0);
});

Deno.test("a flow talking both ways past 2 s becomes a stream with the longer timeout", () => {
  const { engine, table, tick } = fixture();
  engine.process(Hook.PreRouting, query(C, 7), false);
  engine.process(Hook.PostRouting, answer(C, 7), false);
  tick(2500);
  engine.process(Hook.PreRouting, query(C, 7), false);
  const [entry] = [...table.entries()];
  assertEquals([entry.state, entry.assured, entry.timeoutMs], ["stream", true, 120_000]);
  // Alive at udp_stream_timeout (120 s) after its last packet, gone just after.
  tick(120_000);
  assertEquals(table.sweep(), 0);
  assertEquals(engine.process(Hook.PostRouting, answer(C, 7), false), Action.AcceptRewritten);
  tick(120_001);
  assertEquals(engine.process(Hook.PostRouting, answer(C, 7), false), Action.Accept);
  assertEquals(table.size, 0);
});

Deno.test("a reply matches its flow only from the flow's server address and port", () => {
  const { engine } = fixture();
  engine.process(Hook.PreRouting, query(C, 7), false);
  for (const [src, srcPort] of [[S2, 53], [S, 5353]]) {
    const stray = buildUdpPacket({ src, dst: C, srcPort, dstPort: 7 });
    const before = stray.slice();
    assertEquals(
      engine.process(Hook.PostRouting, stray, false),
      Action.Accept,
      `${src}:${srcPort}`,
    );
    assertEquals(stray, before);
  }
  assertEquals(engine.counters.passedNoFlow, 2);
  assertEquals(engine.process(Hook.PostRouting, answer(C, 7), false), Action.AcceptRewritten);
});

Deno.test("a new real_ip applies to new flows while an existing flow keeps its server", () => {
  const { engine, settings } = fixture();
  engine.process(Hook.PreRouting, query(C, 1), false);
  settings.pool = onePool(S2);
  const old = query(C, 1);
  engine.process(Hook.PreRouting, old, false);
  assertEquals(view(old).dst, S);
  const fresh = query(C, 2);
  engine.process(Hook.PreRouting, fresh, false);
  assertEquals(view(fresh).dst, S2);
  const reply = answer(C, 1, S);
  assertEquals(engine.process(Hook.PostRouting, reply, false), Action.AcceptRewritten);
});

Deno.test("with the table full of assured flows, a new request is dropped and counted", () => {
  const { engine, table, tick } = fixture(16);
  for (let i = 0; i < 16; i++) engine.process(Hook.PreRouting, query(C, 1000 + i), false);
  for (let i = 0; i < 16; i++) engine.process(Hook.PostRouting, answer(C, 1000 + i), false);
  tick(2500);
  for (let i = 0; i < 16; i++) engine.process(Hook.PreRouting, query(C, 1000 + i), false);
  assertEquals(engine.process(Hook.PreRouting, query(C, 9), false), Action.Drop);
  assertEquals(engine.counters.droppedNatFull, 1);
  assertEquals(table.size, 16);
});

Deno.test("a UDP port removed from the configuration keeps its flows but takes no new one", () => {
  const { engine, settings } = fixture();
  engine.process(Hook.PreRouting, query(C, 1), false);
  settings.udpPorts = new Set([5353]);
  const old = query(C, 1);
  assertEquals(engine.process(Hook.PreRouting, old, false), Action.AcceptRewritten);
  assertEquals(view(old).dst, S);
  const fresh = query(C, 2);
  assertEquals(engine.process(Hook.PreRouting, fresh, false), Action.Accept);
  assertEquals(view(fresh).dst, R);
});
