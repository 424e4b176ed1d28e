import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import fc from "fast-check";
import { parseIpv4 } from "./address.ts";
import { buildTcpPacket, buildUdpPacket, checksumsValid } from "./build.ts";
import { fold, pseudoHeaderSum } from "./checksum.ts";
import { poked } from "./_segments.ts";
import { IpProtocol, Ipv4Packet, Malformed, parseIpv4Packet, TcpFlag } from "./ipv4_packet.ts";

const C = parseIpv4("198.51.100.10");
const R = parseIpv4("198.51.100.1");
const S = parseIpv4("203.0.113.10");

function parsed(bytes: Uint8Array, partial = false): Ipv4Packet {
  const p = parseIpv4Packet(bytes, partial);
  if (!(p instanceof Ipv4Packet)) throw new Error(`malformed: ${p.reason}`);
  return p;
}

/** Replaces the L4 checksum with what CHECKSUM_PARTIAL leaves there: the folded pseudo-header sum. */
function makePartial(bytes: Uint8Array): void {
  const v = new DataView(bytes.buffer, bytes.byteOffset);
  const at = 20 + (bytes[9] === IpProtocol.TCP ? 16 : 6);
  v.setUint16(
    at,
    fold(pseudoHeaderSum(v.getUint32(12), v.getUint32(16), bytes[9], bytes.length - 20)),
  );
}

Deno.test("parseIpv4Packet() reads addresses, ports, protocol and payload of a UDP datagram", () => {
  const payload = new Uint8Array([1, 2, 3, 4, 5]);
  const p = parsed(buildUdpPacket({ src: C, dst: R, srcPort: 40000, dstPort: 53, payload }));
  assertEquals([p.src, p.dst, p.srcPort, p.dstPort, p.protocol], [C, R, 40000, 53, IpProtocol.UDP]);
  assertEquals([...p.payload], [...payload]);
  assertEquals([p.hasPorts, p.isFragment], [true, false]);
});

Deno.test("parseIpv4Packet() reads TCP flags and skips the TCP header for the payload", () => {
  const p = parsed(buildTcpPacket({
    src: C,
    dst: R,
    srcPort: 1234,
    dstPort: 80,
    flags: TcpFlag.SYN,
    payload: new Uint8Array([9]),
  }));
  assertEquals(p.tcpFlags, TcpFlag.SYN);
  assertEquals([...p.payload], [9]);
});

Deno.test("setDst() and setSrc() keep both checksums valid on UDP and TCP", () => {
  for (const build of [buildUdpPacket, buildTcpPacket]) {
    const bytes = build({
      src: C,
      dst: R,
      srcPort: 40000,
      dstPort: 53,
      payload: new Uint8Array(33),
    });
    const p = parsed(bytes);
    p.setDst(S);
    p.setSrc(R);
    p.finalize();
    assertEquals([p.src, p.dst], [R, S]);
    assertEquals(checksumsValid(bytes), { ip: true, l4: true });
  }
});

Deno.test("rewrites keep checksums valid on random packets (incremental equals full)", () => {
  fc.assert(fc.property(
    fc.boolean(),
    fc.uint8Array({ maxLength: 300 }),
    fc.array(fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 0xffffffff })), {
      maxLength: 6,
    }),
    fc.integer({ min: 0, max: 0xffffffff }),
    fc.integer({ min: 0, max: 0xffffffff }),
    (tcp, payload, edits, src, dst) => {
      const spec = { src, dst, srcPort: src & 0xffff, dstPort: dst & 0xffff, payload };
      const bytes = tcp ? buildTcpPacket(spec) : buildUdpPacket(spec);
      const p = parsed(bytes);
      for (const [field, value] of edits) {
        if (field === 0) p.setSrc(value);
        else if (field === 1) p.setDst(value);
        else if (field === 2) p.setSrcPort(value & 0xffff);
        else p.setDstPort(value & 0xffff);
      }
      p.finalize();
      assertEquals(checksumsValid(bytes), { ip: true, l4: true });
    },
  ));
});

Deno.test("finalize() gives a partial-checksum packet a full L4 checksum after a rewrite", () => {
  fc.assert(fc.property(fc.boolean(), fc.uint8Array({ maxLength: 200 }), (tcp, payload) => {
    const spec = { src: C, dst: R, srcPort: 40000, dstPort: 53, payload };
    const bytes = tcp ? buildTcpPacket(spec) : buildUdpPacket(spec);
    makePartial(bytes);
    const p = parsed(bytes, true);
    p.setDst(S);
    p.finalize();
    assertEquals(checksumsValid(bytes), { ip: true, l4: true });
  }));
});

Deno.test("a partial checksum is left alone when nothing changed", () => {
  const bytes = buildUdpPacket({ src: C, dst: R, srcPort: 1, dstPort: 53 });
  makePartial(bytes);
  const before = bytes.slice();
  const p = parsed(bytes, true);
  p.setDst(R);
  p.finalize();
  assertEquals(bytes, before);
});

Deno.test("a UDP checksum of 0 (none) stays 0 after a rewrite", () => {
  const bytes = buildUdpPacket({ src: C, dst: R, srcPort: 1, dstPort: 53 });
  bytes[26] = 0;
  bytes[27] = 0;
  const p = parsed(bytes);
  p.setDst(S);
  p.finalize();
  assertEquals([bytes[26], bytes[27]], [0, 0]);
  assertEquals(checksumsValid(bytes).ip, true);
});

Deno.test("parseIpv4Packet() reports each kind of malformed input", () => {
  const good = buildUdpPacket({
    src: C,
    dst: R,
    srcPort: 1,
    dstPort: 53,
    payload: new Uint8Array(4),
  });
  const reason = (b: Uint8Array) => (parseIpv4Packet(b) as Malformed).reason;
  assertEquals(reason(good.subarray(0, 19)), "too-short");
  assertEquals(reason(poked(good, 0, 0x65)), "not-ipv4");
  assertEquals(reason(poked(good, 0, 0x44)), "bad-header-length");
  assertEquals(reason(poked(good, 3, 200)), "bad-total-length");
  // A total length of 24: four bytes of UDP header.
  assertEquals(reason(poked(good.subarray(0, 24), 3, 24)), "truncated-l4-header");
  const tcp = buildTcpPacket({ src: C, dst: R, srcPort: 1, dstPort: 80 });
  // Data offset 60 > segment.
  assertEquals(reason(poked(tcp, 32, 0xf0)), "truncated-l4-header");
});

Deno.test("parseIpv4Packet() never throws on arbitrary bytes", () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 120 }), fc.boolean(), (bytes, fix) => {
    if (fix && bytes.length >= 20) {
      bytes[0] = 0x45;
      bytes[2] = bytes.length >> 8;
      bytes[3] = bytes.length & 0xff;
    }
    const p = parseIpv4Packet(bytes);
    assert(p instanceof Ipv4Packet || p instanceof Malformed);
    if (p instanceof Ipv4Packet && p.hasPorts) p.payload.length;
  }));
});

Deno.test("parseIpv4Packet() marks fragments and gives non-first fragments no ports", () => {
  const first = buildUdpPacket({ src: C, dst: R, srcPort: 1, dstPort: 53, flagsOffset: 0x2000 });
  const p1 = parsed(first);
  assertEquals([p1.isFragment, p1.hasPorts], [true, true]);
  const later = buildUdpPacket({ src: C, dst: R, srcPort: 1, dstPort: 53, flagsOffset: 0x0010 });
  const p2 = parsed(later);
  assertEquals([p2.isFragment, p2.hasPorts], [true, false]);
});

Deno.test("parseIpv4Packet() leaves bytes past the total length out of the view", () => {
  const bytes = buildUdpPacket({
    src: C,
    dst: R,
    srcPort: 1,
    dstPort: 53,
    payload: new Uint8Array(2),
  });
  const padded = new Uint8Array(bytes.length + 6);
  padded.set(bytes);
  assertEquals(parsed(padded).bytes.length, bytes.length);
});
