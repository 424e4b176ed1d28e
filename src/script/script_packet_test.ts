import { deepStrictEqual as assertEquals, throws as assertThrows } from "node:assert/strict";
import { parseIpv4 } from "../packet/address.ts";
import { parseIpv6 } from "../packet/ipv6_address.ts";
import { buildTcpPacket, buildUdpPacket } from "../packet/build.ts";
import { ScriptPacket } from "./script_packet.ts";
import { decideBatch } from "./worker_runtime.ts";
import { encodeBatch, Outcome } from "./wire.ts";

const C = parseIpv4("198.51.100.10");
const R = parseIpv4("198.51.100.1");
const text = (s: string) => new TextEncoder().encode(s);

Deno.test("ScriptPacket reads and writes IPv4 and UDP fields, marking the packet changed", () => {
  const bytes = buildUdpPacket({ src: C, dst: R, srcPort: 4000, dstPort: 53, payload: text("hi") });
  const p = new ScriptPacket(bytes);
  assertEquals([p.protocol, p.src, p.dst, p.srcPort, p.dstPort], [
    "udp",
    "198.51.100.10",
    "198.51.100.1",
    4000,
    53,
  ]);
  assertEquals([p.ttl, p.totalLength, p.headerLength, p.dontFragment], [64, 30, 20, true]);
  assertEquals([p.seq, p.flags, p.hasFlag("SYN"), p.changed], [0, 0, false, false]);
  assertThrows(() => (p.seq = 1), TypeError);
  p.src = "203.0.113.10";
  p.dstPort = 5353;
  p.ttl = 9;
  assertEquals([p.src, p.dstPort, bytes[8], p.changed], ["203.0.113.10", 5353, 9, true]);
  assertThrows(() => (p.ttl = 256), RangeError);
  assertThrows(() => (p.dst = "nope"), RangeError);
});

Deno.test("a UDP payload of another size gets a new datagram with the lengths following", () => {
  const p = new ScriptPacket(buildUdpPacket({ src: C, dst: R, srcPort: 1, dstPort: 53 }));
  assertEquals(p.payload.length, 0);
  p.payload = text("hello");
  assertEquals([p.totalLength, p.data.length, p.data[25]], [33, 33, 13]);
  assertEquals(new TextDecoder().decode(p.payload), "hello");
  // The getter gives a copy.
  p.payload[0] = 0;
  assertEquals(p.payload[0], "h".charCodeAt(0));
});

Deno.test("TCP: flags, sequence numbers; a TCP payload must keep its size", () => {
  const bytes = buildTcpPacket({
    src: C,
    dst: R,
    srcPort: 1,
    dstPort: 80,
    seq: 100,
    flags: 0x12,
    payload: text("abc"),
  });
  const p = new ScriptPacket(bytes);
  assertEquals([p.protocol, p.seq, p.hasFlag("SYN"), p.hasFlag("ACK"), p.hasFlag("FIN")], [
    "tcp",
    100,
    true,
    true,
    false,
  ]);
  p.setFlag("SYN", false);
  p.setFlag("FIN", true);
  assertEquals(p.flags, 0x11);
  p.payload = text("xyz");
  assertThrows(() => (p.payload = text("toolong")), RangeError);
  assertEquals(new TextDecoder().decode(p.payload), "xyz");
});

Deno.test("decideBatch: outcomes per packet, changes returned, errors caught", () => {
  const packets = [1, 2, 3, 4, 5].map((port) => ({
    bytes: buildUdpPacket({ src: C, dst: R, srcPort: port, dstPort: 53 }),
    hook: 0 as const,
    protocol: 17,
    client: C,
    clientPort: port,
    service: R,
    servicePort: 53,
    server: R,
    serverPort: 53,
  }));
  const result = decideBatch(
    encodeBatch(7, packets),
    "t",
    (p) => p.srcPort !== 1,
    (p, ctx) => {
      if (p.srcPort === 2) return "drop";
      if (p.srcPort === 3) {
        p.ttl = 1;
        return "accept";
      }
      if (p.srcPort === 4) throw new Error("four");
      if (ctx.flow.client.port !== 5 || ctx.hook !== "request") throw new Error("bad context");
      return undefined;
    },
  );
  assertEquals(result.seq, 7);
  assertEquals([...result.outcomes], [
    Outcome.Unmatched,
    Outcome.Dropped,
    Outcome.Changed,
    Outcome.Failed,
    Outcome.Accepted,
  ]);
  assertEquals(result.changed.map(([i, b]) => [i, b[8]]), [[2, 1]]);
  assertEquals(result.errors.map(([i, e]) => [i, e.split("\n")[0]]), [[3, "Error: four"]]);
});

/** An IPv6 UDP datagram 2001:db8:1::10:4000 -> 2001:db8:1::1:53 carrying `data`. */
function udp6(data: Uint8Array): Uint8Array {
  const b = new Uint8Array(48 + data.length);
  const v = new DataView(b.buffer);
  v.setUint32(0, 0x6ab00000); // version 6, traffic class 0xab
  v.setUint16(4, 8 + data.length);
  b[6] = 17;
  b[7] = 64;
  b.set(parseIpv6("2001:db8:1::10"), 8);
  b.set(parseIpv6("2001:db8:1::1"), 24);
  v.setUint16(40, 4000);
  v.setUint16(42, 53);
  v.setUint16(44, 8 + data.length);
  b.set(data, 48);
  return b;
}

Deno.test("ScriptPacket reads and writes an IPv6 packet: family, addresses as text, hop limit", () => {
  const bytes = udp6(text("hi"));
  const p = new ScriptPacket(bytes);
  assertEquals([p.family, p.protocol, p.src, p.dst, p.srcPort, p.dstPort], [
    6,
    "udp",
    "2001:db8:1::10",
    "2001:db8:1::1",
    4000,
    53,
  ]);
  assertEquals([p.ttl, p.tos, p.totalLength, p.headerLength, p.dontFragment, p.id], [
    64,
    0xab,
    50,
    40,
    true,
    0,
  ]);
  assertEquals(p.changed, false);
  p.dst = "2001:DB8:2::20";
  p.ttl = 9;
  p.tos = 0x12;
  assertEquals([p.dst, bytes[7], bytes[0], bytes[1] >>> 4, p.changed], [
    "2001:db8:2::20",
    9,
    0x61,
    2,
    true,
  ]);
  // IPv4's fields and addresses are not IPv6's.
  assertThrows(() => (p.id = 1), TypeError);
  assertThrows(() => (p.src = "198.51.100.10"), RangeError);
  // A payload of another size: the payload length and UDP length follow.
  p.payload = text("hello");
  assertEquals([p.totalLength, p.data.length, (p.data[4] << 8) | p.data[5], p.data[45]], [
    53,
    53,
    13,
    13,
  ]);
  // An IPv4 packet reads family 4.
  assertEquals(
    new ScriptPacket(buildUdpPacket({ src: C, dst: R, srcPort: 1, dstPort: 2 })).family,
    4,
  );
});

Deno.test("a batch carries an IPv6 flow's addresses as text to the script's context", () => {
  const message = encodeBatch(1, [{
    bytes: udp6(text("q")),
    hook: 0,
    protocol: 17,
    client: 0,
    clientPort: 4000,
    service: 0,
    servicePort: 53,
    server: 0,
    serverPort: 53,
    v6: ["2001:db8:1::10", "2001:db8:1::1", "2001:db8:2::10"],
  }]);
  assertEquals(message.v6, [[0, "2001:db8:1::10", "2001:db8:1::1", "2001:db8:2::10"]]);
  let seen = "";
  const result = decideBatch(message, "t", undefined, (p, ctx) => {
    seen = `${p.family} ${ctx.flow.client.address}:${ctx.flow.client.port} ` +
      `${ctx.flow.service.address} ${ctx.flow.server.address}:${ctx.flow.server.port}`;
    return "accept";
  });
  assertEquals(result.outcomes[0], Outcome.Accepted);
  assertEquals(seen, "6 2001:db8:1::10:4000 2001:db8:1::1 2001:db8:2::10:53");
});
