import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { buildTcpReset6, buildUnreachable6 } from "./answers6.ts";
import { internetChecksum } from "./checksum.ts";
import { parseIpv6 } from "./ipv6_address.ts";
import { Ipv6Packet, parseIpv6Packet, pseudoHeaderSum6 } from "./ipv6_packet.ts";

const CLIENT = "2001:db8:1::10";
const RELAY = "2001:db8:1::1";

/** A client's SYN with one MSS option, seq 0xfffffff0 (the ack wraps). */
function syn(): Uint8Array {
  const b = new Uint8Array(40 + 24);
  const v = new DataView(b.buffer);
  v.setUint32(0, 0x60000000);
  v.setUint16(4, 24);
  b[6] = 6;
  b[7] = 64;
  b.set(parseIpv6(CLIENT), 8);
  b.set(parseIpv6(RELAY), 24);
  v.setUint16(40, 40000);
  v.setUint16(42, 81);
  v.setUint32(44, 0xfffffff0);
  b[52] = 6 << 4;
  b[53] = 0x02;
  v.setUint16(54, 64800);
  b.set([2, 4, 0x05, 0xa0], 60);
  return b;
}

/** Whether the upper-layer checksum of `bytes` (no extension headers) verifies. */
function verifies(bytes: Uint8Array): boolean {
  const seed = pseudoHeaderSum6(bytes, bytes[6], bytes.length - 40);
  return internetChecksum(bytes, 40, bytes.length, seed) === 0;
}

Deno.test("the RST refusing an IPv6 SYN comes from its destination and acknowledges it", () => {
  const rst = parseIpv6Packet(buildTcpReset6(syn()));
  if (!(rst instanceof Ipv6Packet)) throw new Error(String(rst));
  assertEquals([rst.srcText, rst.dstText, rst.srcPort, rst.dstPort], [RELAY, CLIENT, 81, 40000]);
  const v = new DataView(rst.bytes.buffer);
  // RST|ACK, seq 0, ack = the SYN's seq + 1 (wrapped), checksum right.
  assertEquals([rst.bytes[53], v.getUint32(44), v.getUint32(48)], [0x14, 0, 0xfffffff1]);
  assertEquals(verifies(rst.bytes), true);
});

Deno.test("an ICMPv6 unreachable quotes the SYN, from its destination, checksum right", () => {
  const about = syn();
  const error = buildUnreachable6(about, 3);
  const p = parseIpv6Packet(error);
  if (!(p instanceof Ipv6Packet)) throw new Error(String(p));
  assertEquals([p.srcText, p.dstText, p.protocol, error[40], error[41]], [RELAY, CLIENT, 58, 1, 3]);
  assertEquals(error.subarray(48), about);
  assertEquals(verifies(error), true);
});

Deno.test("an ICMPv6 unreachable fits the minimum MTU whatever it quotes", () => {
  const big = new Uint8Array(1500);
  big.set(syn());
  assertEquals(buildUnreachable6(big, 0).length, 1280);
});
