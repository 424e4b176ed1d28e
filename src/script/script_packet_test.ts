import { deepStrictEqual as assertEquals, throws as assertThrows } from "node:assert/strict";
import { parseIpv4 } from "../packet/address.ts";
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
