import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { buildTcpPacket, checksumsValid } from "../packet/build.ts";
import { TcpFlag } from "../packet/ipv4_packet.ts";
import { Hook } from "./hook.ts";
import { Action } from "./rewriter.ts";
import { ADDR, engineFixture, view } from "./_engine_fixture.ts";
import { TcpState } from "./tcp_nat.ts";

const { C, R, RS, S, S2 } = ADDR;
const A = 16000;

const fixture = (poolSize = 10) => engineFixture({ poolSize, tcpPorts: [80, 8080] });

const seg = (
  src: number,
  srcPort: number,
  dst: number,
  dstPort: number,
  flags: number = TcpFlag.ACK,
) =>
  buildTcpPacket({ src, dst, srcPort, dstPort, flags, payload: new TextEncoder().encode("data") });

function fields(bytes: Uint8Array): [number, number, number, number] {
  const p = view(bytes);
  return [p.src, p.srcPort, p.dst, p.dstPort];
}

/** Runs a client's SYN through T1 and binds the relay's upstream port, as the relay would. */
function connect(f: ReturnType<typeof fixture>, clientPort = 40000, service = 80) {
  const syn = seg(C, clientPort, R, service, TcpFlag.SYN);
  assertEquals(f.engine.process(Hook.PreRouting, syn, false), Action.AcceptRewritten);
  const entry = f.engine.tcp.acceptedFlow(C, clientPort, R)!;
  const y = f.engine.tcp.bindUpstream(entry, 5000)!;
  return { entry, y, syn };
}

Deno.test("T1: a client's SYN to relay:80 goes to the gateway port and creates the flow", () => {
  const f = fixture();
  const syn = seg(C, 40000, R, 80, TcpFlag.SYN);
  assertEquals(f.engine.process(Hook.PreRouting, syn, false), Action.AcceptRewritten);
  assertEquals(fields(syn), [C, 40000, R, A]);
  assertEquals(checksumsValid(syn), { ip: true, l4: true });
  const entry = f.engine.tcp.acceptedFlow(C, 40000, R)!;
  assertEquals([entry.servicePort, entry.server, entry.serverPort, entry.state], [
    80,
    S,
    80,
    "syn",
  ]);
});

Deno.test("T2: the relay's segments to the client leave from relay:80", () => {
  const f = fixture();
  connect(f);
  const out = seg(R, A, C, 40000);
  assertEquals(f.engine.process(Hook.PostRouting, out, false), Action.AcceptRewritten);
  assertEquals(fields(out), [R, 80, C, 40000]);
  assertEquals(checksumsValid(out), { ip: true, l4: true });
});

Deno.test("T3/T4: the relay's connection to the server carries the client's address both ways", () => {
  const f = fixture();
  const { y } = connect(f);
  const up = seg(RS, y, S, 80, TcpFlag.SYN);
  assertEquals(f.engine.process(Hook.PostRouting, up, false), Action.AcceptRewritten);
  assertEquals(fields(up), [C, y, S, 80]);
  const back = seg(S, 80, C, y, TcpFlag.SYN | TcpFlag.ACK);
  assertEquals(f.engine.process(Hook.PreRouting, back, false), Action.AcceptRewritten);
  assertEquals(fields(back), [S, 80, RS, y]);
  for (const b of [up, back]) assertEquals(checksumsValid(b), { ip: true, l4: true });
  const c = f.engine.counters;
  assertEquals([c.tcpToGateway, c.tcpToServer, c.tcpFromServer], [1, 1, 1]);
});

Deno.test("T1-T4 give full checksums to packets whose checksum the kernel left partial", () => {
  const f = fixture();
  const syn = seg(C, 40001, R, 80, TcpFlag.SYN);
  syn[36] ^= 0x5a;
  f.engine.process(Hook.PreRouting, syn, true);
  assertEquals(checksumsValid(syn), { ip: true, l4: true });
  const y = f.engine.tcp.bindUpstream(f.engine.tcp.acceptedFlow(C, 40001, R)!, 5000)!;
  const up = seg(RS, y, S, 80);
  up[37] ^= 0x11;
  f.engine.process(Hook.PostRouting, up, true);
  assertEquals(checksumsValid(up), { ip: true, l4: true });
});

Deno.test("a segment with no flow passes untouched, so the kernel resets the client", () => {
  const f = fixture();
  const stray = seg(C, 40000, R, 80);
  const before = stray.slice();
  assertEquals(f.engine.process(Hook.PreRouting, stray, false), Action.Accept);
  assertEquals(stray, before);
  const fromServer = seg(S, 80, C, 20003);
  assertEquals(f.engine.process(Hook.PreRouting, fromServer, false), Action.Accept);
  assertEquals(f.engine.counters.passedNoFlow, 2);
});

Deno.test("T4 from another server or for another client finds no flow", () => {
  const f = fixture();
  const { y } = connect(f);
  f.engine.process(Hook.PostRouting, seg(RS, y, S, 80, TcpFlag.SYN), false);
  assertEquals(f.engine.process(Hook.PreRouting, seg(S2, 80, C, y), false), Action.Accept);
  assertEquals(f.engine.process(Hook.PreRouting, seg(S, 80, R, y), false), Action.Accept);
});

Deno.test("the same client port on a second service while the first is open is refused", () => {
  const f = fixture();
  connect(f, 40000, 80);
  const other = seg(C, 40000, R, 8080, TcpFlag.SYN);
  assertEquals(f.engine.process(Hook.PreRouting, other, false), Action.Accept);
  assertEquals(view(other).dstPort, 8080);
});

Deno.test("a closed flow lingers, then its entry goes and its port returns to the pool", () => {
  const f = fixture(2);
  const { entry, y } = connect(f);
  f.engine.tcp.established(entry);
  assertEquals(f.pool.free, 1);
  f.engine.tcp.closed(entry, f.now());
  f.tick(1000);
  const fin = seg(R, A, C, 40000, TcpFlag.FIN | TcpFlag.ACK);
  assertEquals(f.engine.process(Hook.PostRouting, fin, false), Action.AcceptRewritten, "in flight");
  f.tick(2001);
  f.table.sweep();
  assertEquals(f.table.size, 0);
  assertEquals(f.pool.free, 2);
  assertEquals(f.engine.process(Hook.PreRouting, seg(S, 80, C, y), false), Action.Accept);
});

Deno.test("a new SYN from a closed flow's client port starts a new flow", () => {
  const f = fixture();
  const { entry } = connect(f);
  f.engine.tcp.closed(entry, f.now());
  const syn = seg(C, 40000, R, 80, TcpFlag.SYN);
  assertEquals(f.engine.process(Hook.PreRouting, syn, false), Action.AcceptRewritten);
  const fresh = f.engine.tcp.acceptedFlow(C, 40000, R)!;
  assert(fresh !== entry);
  assertEquals(fresh.state, TcpState.Syn);
});

Deno.test("bindUpstream() returns undefined when the pool is exhausted", () => {
  const f = fixture(1);
  connect(f, 40000);
  f.engine.process(Hook.PreRouting, seg(C, 40001, R, 80, TcpFlag.SYN), false);
  assertEquals(f.engine.tcp.bindUpstream(f.engine.tcp.acceptedFlow(C, 40001, R)!, 5000), undefined);
});

Deno.test("bindUpstream() again moves the flow to a new port and frees the old one", () => {
  const f = fixture(3);
  const { entry, y } = connect(f);
  const y2 = f.engine.tcp.bindUpstream(entry, 5000)!;
  assert(y2 !== y);
  assertEquals(f.pool.free, 2);
  assertEquals(f.engine.process(Hook.PostRouting, seg(RS, y, S, 80), false), Action.Accept);
  assertEquals(
    f.engine.process(Hook.PostRouting, seg(RS, y2, S, 80), false),
    Action.AcceptRewritten,
  );
});

Deno.test("new gport and real_ip apply to new flows; an open flow keeps its own", () => {
  const f = fixture();
  const { y } = connect(f, 40000);
  f.settings.gport = 16001;
  f.settings.realIp = S2;
  const old = seg(C, 40000, R, 80);
  f.engine.process(Hook.PreRouting, old, false);
  assertEquals(view(old).dstPort, A);
  const up = seg(RS, y, S, 80);
  assertEquals(f.engine.process(Hook.PostRouting, up, false), Action.AcceptRewritten);
  const syn = seg(C, 40002, R, 80, TcpFlag.SYN);
  f.engine.process(Hook.PreRouting, syn, false);
  assertEquals(view(syn).dstPort, 16001);
  assertEquals(f.engine.tcp.acceptedFlow(C, 40002, R)!.server, S2);
});

Deno.test("a TCP port removed from the configuration keeps its connections but takes no new one", () => {
  const f = fixture();
  connect(f, 40000);
  f.settings.tcpPorts = new Set([8080]);
  const data = seg(C, 40000, R, 80);
  assertEquals(f.engine.process(Hook.PreRouting, data, false), Action.AcceptRewritten);
  const syn = seg(C, 40001, R, 80, TcpFlag.SYN);
  assertEquals(f.engine.process(Hook.PreRouting, syn, false), Action.Accept);
  assertEquals(view(syn).dstPort, 80);
});
