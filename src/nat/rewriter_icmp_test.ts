import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { buildIcmpError, buildTcpPacket, buildUdpPacket, checksumsValid } from "../packet/build.ts";
import { internetChecksum } from "../packet/checksum.ts";
import { parseIcmpError } from "../packet/icmp_error.ts";
import { Hook } from "./hook.ts";
import { Action } from "./rewriter.ts";
import { ADDR, engineFixture } from "./_engine_fixture.ts";
import { onePool } from "../servers/balancer.ts";

const { C, R, RS, S, S2 } = ADDR;

/** The client's request as the server's side sees it (its destination rewritten). */
const forwarded = (dst = S, dstPort = 53) =>
  buildUdpPacket({ src: C, dst, srcPort: 40000, dstPort, payload: new Uint8Array(100) });
/** The reply as the client sees it (from the relay). */
const reply = () => buildUdpPacket({ src: R, dst: C, srcPort: 53, dstPort: 40000 });
const unreachable = (src: number, dst: number) => ({ src, dst, type: 3, code: 3 });

/** The outer and embedded addresses and ports, and whether every checksum holds. */
function look(bytes: Uint8Array) {
  const e = parseIcmpError(bytes)!;
  return {
    outer: [e.src, e.dst],
    inner: [e.innerSrc, e.innerSrcPort, e.innerDst, e.innerDstPort],
    valid: internetChecksum(bytes, 0, e.icmpOffset) === 0 &&
      internetChecksum(bytes, e.icmpOffset, bytes.length) === 0 &&
      checksumsValid(bytes.subarray(e.innerOffset)).ip &&
      checksumsValid(bytes.subarray(e.innerOffset)).l4,
  };
}

Deno.test("an error about a kernel flow's request reaches the client from the relay, about relay:53", () => {
  const { engine } = fixture();
  // The server's port unreachable, and the relay's own "fragmentation needed" (sent from its
  // server-side address): no NAT entry, the kernel's flow.
  for (const from of [S, RS]) {
    const bytes = buildIcmpError(unreachable(from, C), forwarded());
    assertEquals(engine.process(Hook.PostRouting, bytes, false), Action.AcceptRewritten);
    assertEquals(look(bytes), { outer: [R, C], inner: [C, 40000, R, 53], valid: true });
  }
  assertEquals(engine.counters.icmpErrors, 2);
});

Deno.test("an error toward the client is translated from the forward and output hooks too", () => {
  const { engine } = fixture();
  // nft.ts's table queues the server's (or a router's) from forward, the relay's own from output.
  for (const [hook, from] of [[Hook.Forward, S], [Hook.LocalOut, RS]] as const) {
    const bytes = buildIcmpError(unreachable(from, C), forwarded());
    assertEquals(engine.process(hook, bytes, false), Action.AcceptRewritten);
    assertEquals(look(bytes), { outer: [R, C], inner: [C, 40000, R, 53], valid: true });
  }
});

Deno.test("an error from the client about a reply reaches the server, about server:53", () => {
  const { engine } = fixture();
  const bytes = buildIcmpError(unreachable(C, R), reply());
  assertEquals(engine.process(Hook.PreRouting, bytes, false), Action.AcceptRewritten);
  assertEquals(look(bytes), { outer: [C, S], inner: [S, 53, C, 40000], valid: true });
});

Deno.test("a flow in the NAT table keeps its own server and relay address", () => {
  const { engine, settings } = fixture({ scriptedUdpPorts: [53] });
  const request = buildUdpPacket({ src: C, dst: R, srcPort: 40000, dstPort: 53 });
  assertEquals(engine.process(Hook.PreRouting, request, false), Action.AcceptRewritten);
  // The configuration moved on: the flow still goes to S.
  settings.pool = onePool(S2);
  const about = buildIcmpError(unreachable(S, C), forwarded(S));
  assertEquals(engine.process(Hook.PostRouting, about, false), Action.AcceptRewritten);
  assertEquals(look(about).inner, [C, 40000, R, 53]);
  const from = buildIcmpError(unreachable(C, R), reply());
  assertEquals(engine.process(Hook.PreRouting, from, false), Action.AcceptRewritten);
  assertEquals(look(from).outer, [C, S]);
});

Deno.test("errors about no flow of the relay's pass untouched", () => {
  const { engine } = fixture({ scriptedUdpPorts: [5353] });
  const cases: [Hook, Uint8Array][] = [
    // About a datagram to another server, to another port, to a scripted port with no flow.
    [Hook.PostRouting, buildIcmpError(unreachable(S2, C), forwarded(S2))],
    [Hook.PostRouting, buildIcmpError(unreachable(S, C), forwarded(S, 54))],
    [Hook.PostRouting, buildIcmpError(unreachable(S, C), forwarded(S, 5353))],
    // Not addressed to the sender of the datagram it is about.
    [Hook.PostRouting, buildIcmpError(unreachable(S, ADDR.C2), forwarded())],
    // About TCP: the relay's own sockets terminate it.
    [
      Hook.PostRouting,
      buildIcmpError(
        unreachable(S, C),
        buildTcpPacket({ src: C, dst: S, srcPort: 40000, dstPort: 53 }),
        28,
      ),
    ],
    // From the client's side about a datagram from another address than the relay's.
    [Hook.PreRouting, buildIcmpError(unreachable(C, S), forwarded())],
  ];
  for (const [hook, bytes] of cases) {
    const before = bytes.slice();
    assertEquals(engine.process(hook, bytes, false), Action.Accept);
    assertEquals(bytes, before);
  }
  assertEquals(engine.counters.icmpErrors, 0);
});

function fixture(opts: { scriptedUdpPorts?: number[] } = {}) {
  const f = engineFixture(opts);
  f.settings.udpPorts = new Set([53, ...(opts.scriptedUdpPorts ?? [])]);
  return f;
}
