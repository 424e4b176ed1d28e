import { deepStrictEqual as assertEquals, throws } from "node:assert/strict";
import fc from "fast-check";
import { Hook, Verdict } from "./queue.ts";
import {
  MAX_VERDICT_PAYLOAD,
  MessageKind,
  NFQA_MARK,
  NFQA_PAYLOAD,
  ParsedMessage,
  parseMessage,
  VerdictBatch,
  verdictSize,
} from "./netlink.ts";

/** A queued packet as the kernel sends it: every attribute krelay reads, plus a mark. */
function packetMessage(): Uint8Array {
  return new Uint8Array([
    // nlmsghdr: len 76, type 0x0300 (NFQNL_MSG_PACKET), flags 0, seq 1, pid 0
    76,
    0,
    0,
    0,
    0x00,
    0x03,
    0,
    0,
    1,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    // nfgenmsg: AF_INET, version 0, res_id 258 (big-endian)
    2,
    0,
    0x01,
    0x02,
    // NFQA_PACKET_HDR (11 bytes + 1 pad): id 0x01020304, hw_protocol 0x0800, hook 3
    11,
    0,
    1,
    0,
    1,
    2,
    3,
    4,
    0x08,
    0x00,
    3,
    0,
    // NFQA_MARK 42
    8,
    0,
    3,
    0,
    0,
    0,
    0,
    42,
    // NFQA_IFINDEX_INDEV 7
    8,
    0,
    5,
    0,
    0,
    0,
    0,
    7,
    // NFQA_IFINDEX_OUTDEV 9
    8,
    0,
    6,
    0,
    0,
    0,
    0,
    9,
    // NFQA_SKB_INFO: CSUMNOTREADY | GSO
    8,
    0,
    14,
    0,
    0,
    0,
    0,
    3,
    // NFQA_PAYLOAD: 5 bytes + 3 pad (offset 68)
    9,
    0,
    10,
    0,
    0x45,
    0xaa,
    0xbb,
    0xcc,
    0xdd,
    0,
    0,
    0,
  ]);
}

function parse(buf: Uint8Array, offset = 0, end = buf.length): ParsedMessage {
  const out = new ParsedMessage();
  parseMessage(buf, offset, end, out);
  return out;
}

Deno.test("parseMessage() reads the packet id and hook from NFQA_PACKET_HDR", () => {
  const m = parse(packetMessage());
  assertEquals(m.kind, MessageKind.Packet);
  assertEquals(m.packet?.id, 0x01020304);
  assertEquals(m.packet?.hook, Hook.LocalOut);
  assertEquals(m.size, 76);
  assertEquals(m.seq, 1);
});

Deno.test("parseMessage() reads the queue number from nfgenmsg res_id", () => {
  assertEquals(parse(packetMessage()).packet?.queue, 258);
});

Deno.test("parseMessage() returns the payload as a view into the buffer, not a copy", () => {
  const buf = packetMessage();
  const p = parse(buf).packet!;
  assertEquals([...p.bytes], [0x45, 0xaa, 0xbb, 0xcc, 0xdd]);
  assertEquals(p.bytes.buffer, buf.buffer);
  assertEquals(p.bytes.byteOffset, 68);
  p.bytes[0] = 0x46; // in-place edits reach the buffer
  assertEquals(buf[68], 0x46);
});

Deno.test("parseMessage() maps NFQA_SKB_INFO flags to checksumPartial and gso", () => {
  for (const [info, partial, gso] of [[0, false, false], [1, true, false], [2, false, true]]) {
    const buf = packetMessage();
    buf[63] = info as number;
    const p = parse(buf).packet!;
    assertEquals([p.checksumPartial, p.gso], [partial, gso]);
  }
  const p = parse(packetMessage()).packet!;
  assertEquals([p.checksumPartial, p.gso], [true, true]);
});

Deno.test("parseMessage() reads indev and outdev, and gives 0 when they are absent", () => {
  const p = parse(packetMessage()).packet!;
  assertEquals([p.indev, p.outdev], [7, 9]);
  const buf = packetMessage();
  buf[42] = 99; // INDEV and OUTDEV become unknown attribute types 99
  buf[50] = 99;
  const q = parse(buf).packet!;
  assertEquals([q.indev, q.outdev], [0, 0]);
});

Deno.test("parseMessage() masks the attribute type with 0x3fff", () => {
  const buf = packetMessage();
  buf[59] = 0x40; // NFQA_SKB_INFO | NLA_F_NET_BYTEORDER
  buf[23] = 0x80; // NFQA_PACKET_HDR | NLA_F_NESTED
  const p = parse(buf).packet!;
  assertEquals([p.id, p.checksumPartial], [0x01020304, true]);
});

Deno.test("parseMessage() gives an empty payload when NFQA_PAYLOAD is absent", () => {
  const buf = packetMessage();
  buf[66] = 99;
  assertEquals(parse(buf).packet?.bytes.length, 0);
});

Deno.test("parseMessage() reads the messages of a datagram in turn", () => {
  const one = packetMessage();
  const buf = new Uint8Array(one.length * 2);
  buf.set(one);
  buf.set(one, one.length);
  buf[one.length + 24] = 5; // the second carries packet id 0x05020304
  const out = new ParsedMessage();
  const ids: number[] = [];
  for (let off = 0; off < buf.length; off += out.size) {
    if (parseMessage(buf, off, buf.length, out) === MessageKind.Packet) ids.push(out.packet!.id);
    if (out.size === 0) break;
  }
  assertEquals(ids, [0x01020304, 0x05020304]);
});

Deno.test("parseMessage() reports a message cut anywhere as truncated, without throwing", () => {
  const buf = packetMessage();
  for (let end = 0; end < buf.length; end++) {
    const m = parse(buf, 0, end);
    assertEquals(m.kind, MessageKind.Truncated, `cut at ${end}`);
    assertEquals([m.size, m.packet], [0, null]);
  }
  assertEquals(parse(buf, 0, 10).reason, "fewer bytes than a netlink header");
  assertEquals(parse(buf, 0, 40).reason, "nlmsg_len 76 but 40 bytes left");
  // A cut view of the buffer behaves the same as an `end` before the buffer's end.
  assertEquals(parse(buf.subarray(0, 75)).kind, MessageKind.Truncated);
});

Deno.test("parseMessage() reports an attribute overrunning its message as malformed", () => {
  const buf = packetMessage();
  buf[64] = 13; // NFQA_PAYLOAD claims 13 bytes; 12 remain in the message
  const m = parse(buf);
  assertEquals(m.kind, MessageKind.Malformed);
  assertEquals(m.reason, "attribute 10 has length 13 with 12 bytes left");
  assertEquals(m.size, 76); // framing is intact: the next message can be read
  assertEquals(m.packet, null);
});

Deno.test("parseMessage() reports an attribute shorter than its header as malformed", () => {
  const buf = packetMessage();
  buf[32] = 2; // NFQA_MARK with nla_len 2
  assertEquals(parse(buf).kind, MessageKind.Malformed);
});

Deno.test("parseMessage() reports a packet without NFQA_PACKET_HDR as malformed", () => {
  const buf = packetMessage();
  buf[22] = 99;
  const m = parse(buf);
  assertEquals([m.kind, m.reason], [
    MessageKind.Malformed,
    "packet message without NFQA_PACKET_HDR",
  ]);
});

Deno.test("parseMessage() reports a short NFQA_PACKET_HDR as malformed", () => {
  const buf = packetMessage();
  buf[20] = 10; // 6 value bytes: no room for the hook
  assertEquals(parse(buf).reason, "NFQA_PACKET_HDR value of 6 bytes is too short");
});

Deno.test("parseMessage() reports nlmsg_len below the header size as malformed, size 0", () => {
  const buf = packetMessage();
  buf[0] = 8;
  const m = parse(buf);
  assertEquals([m.kind, m.size], [MessageKind.Malformed, 0]);
});

Deno.test("parseMessage() reads the errno of an NLMSG_ERROR", () => {
  const buf = new Uint8Array([
    // nlmsghdr: len 36, NLMSG_ERROR, flags NLM_F_CAPPED, seq 77, pid 0
    36,
    0,
    0,
    0,
    2,
    0,
    0x00,
    0x01,
    77,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    // error -1 (EPERM), host order
    0xff,
    0xff,
    0xff,
    0xff,
    // the request's header: len 32, type 0x0302 (config), flags REQUEST|ACK, seq 77, pid 0
    32,
    0,
    0,
    0,
    0x02,
    0x03,
    5,
    0,
    77,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
  ]);
  const m = parse(buf);
  assertEquals([m.kind, m.errno, m.seq, m.size], [MessageKind.Error, 1, 77, 36]);
  buf.fill(0, 16, 20); // error 0: an acknowledgement
  assertEquals(parse(buf).errno, 0);
  buf[0] = 18; // too short for the error code
  assertEquals(parse(buf, 0, 18).kind, MessageKind.Malformed);
});

Deno.test("parseMessage() recognises NLMSG_DONE and skips other messages", () => {
  const done = new Uint8Array([20, 0, 0, 0, 3, 0, 2, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  assertEquals(parse(done).kind, MessageKind.Done);
  const noop = new Uint8Array([16, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  assertEquals([parse(noop).kind, parse(noop).size], [MessageKind.Other, 16]);
});

Deno.test("parseMessage() never throws nor reads past its end on arbitrary bytes", () => {
  const out = new ParsedMessage();
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 160 }), fc.nat(160), (bytes, cut) => {
      const end = Math.min(cut, bytes.length);
      // Random bytes and a mutated real message, both with a guard region after `end`.
      for (const base of [bytes, mutate(packetMessage(), bytes)]) {
        const buf = new Uint8Array(base.length + 16).fill(0xee);
        buf.set(base);
        for (let off = 0; off < end; off += out.size) {
          parseMessage(buf, off, end, out);
          if (out.packet !== null) {
            const p = out.packet.bytes;
            if (p.byteOffset + p.length > end) throw new Error("payload past end");
          }
          if (out.size === 0) break;
        }
      }
    }),
    { numRuns: 2000 },
  );
});

function mutate(msg: Uint8Array, noise: Uint8Array): Uint8Array {
  for (let i = 0; i + 1 < noise.length; i += 2) msg[noise[i] % msg.length] = noise[i + 1];
  return msg;
}

Deno.test("VerdictBatch.append() encodes a verdict without payload byte by byte", () => {
  const b = new VerdictBatch(256);
  assertEquals(b.append(258, 0x01020304, Verdict.Accept), true);
  assertEquals([...b.buffer.subarray(0, b.length)], [
    // nlmsghdr: len 32, type 0x0301 (NFQNL_MSG_VERDICT), flags NLM_F_REQUEST, seq 0, pid 0
    32,
    0,
    0,
    0,
    0x01,
    0x03,
    0x01,
    0x00,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    // nfgenmsg: AF_UNSPEC, version 0, res_id 258
    0,
    0,
    0x01,
    0x02,
    // NFQA_VERDICT_HDR: verdict NF_ACCEPT, id (both big-endian)
    12,
    0,
    2,
    0,
    0,
    0,
    0,
    1,
    1,
    2,
    3,
    4,
  ]);
  assertEquals([b.length, b.count], [32, 1]);
});

Deno.test("VerdictBatch.append() pads an odd payload to 4 bytes with zeros", () => {
  const b = new VerdictBatch(256);
  b.buffer.fill(0xff); // a reused buffer holds old bytes
  b.append(5, 9, Verdict.Drop, new Uint8Array([0xde, 0xad, 0xbe]));
  assertEquals([...b.buffer.subarray(0, b.length)], [
    40,
    0,
    0,
    0,
    0x01,
    0x03,
    0x01,
    0x00,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    5,
    12,
    0,
    2,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    9,
    // NFQA_PAYLOAD: nla_len 7 (unpadded), type 10, 3 bytes and 1 pad byte
    7,
    0,
    10,
    0,
    0xde,
    0xad,
    0xbe,
    0,
  ]);
});

Deno.test("VerdictBatch.append() encodes an aligned payload without padding", () => {
  const b = new VerdictBatch(256);
  b.append(0, 1, Verdict.Accept, new Uint8Array([1, 2, 3, 4]));
  assertEquals(b.length, 40);
  assertEquals([...b.buffer.subarray(32, 40)], [8, 0, 10, 0, 1, 2, 3, 4]);
});

Deno.test("VerdictBatch.append() places verdicts back to back until full", () => {
  const b = new VerdictBatch(32 + 44 + 10);
  assertEquals(b.append(1, 1, Verdict.Accept), true);
  assertEquals(b.append(1, 2, Verdict.Accept, new Uint8Array(5)), true);
  assertEquals([b.length, b.count], [76, 2]);
  assertEquals([b.buffer[32], b.buffer[63]], [44, 2]); // second message: its length and id
  assertEquals(b.append(1, 3, Verdict.Accept), false);
  assertEquals([b.length, b.count], [76, 2]);
  b.clear();
  assertEquals([b.length, b.count], [0, 0]);
  assertEquals(b.append(1, 3, Verdict.Accept), true);
});

Deno.test("verdictSize() counts the aligned payload attribute", () => {
  assertEquals([0, 1, 2, 3, 4, 5].map((n) => verdictSize(n)), [36, 40, 40, 40, 40, 44]);
  assertEquals(verdictSize(), 32);
});

Deno.test("VerdictBatch.append() refuses a payload longer than an attribute can carry", () => {
  const b = new VerdictBatch(1 << 17);
  throws(() => b.append(0, 1, Verdict.Accept, new Uint8Array(MAX_VERDICT_PAYLOAD + 1)), RangeError);
  assertEquals(b.append(0, 1, Verdict.Accept, new Uint8Array(MAX_VERDICT_PAYLOAD)), true);
  assertEquals(b.buffer[32] | (b.buffer[33] << 8), 0xffff);
});

Deno.test("VerdictBatch.append() encodes NFQA_MARK before the payload, big-endian", () => {
  const batch = new VerdictBatch(256);
  const payload = new Uint8Array([1, 2, 3, 4]);
  assertEquals(batch.append(7, 42, Verdict.Accept, payload, 0xc633640a), true);
  const v = new DataView(batch.buffer.buffer);
  assertEquals(batch.length, verdictSize(4, true));
  assertEquals(v.getUint32(0, true), verdictSize(4, true));
  // The mark attribute right after the verdict header: len 8, type NFQA_MARK, value.
  assertEquals([v.getUint16(32, true), v.getUint16(34, true), v.getUint32(36, false)], [
    8,
    NFQA_MARK,
    0xc633640a,
  ]);
  assertEquals([v.getUint16(40, true), v.getUint16(42, true)], [8, NFQA_PAYLOAD]);
  assertEquals([...batch.buffer.subarray(44, 48)], [1, 2, 3, 4]);
});
