import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { parseIpv4 } from "./address.ts";
import { buildIcmpError, buildTcpPacket, buildUdpPacket, checksumsValid } from "./build.ts";
import { internetChecksum } from "./checksum.ts";
import { FRAGMENTATION_NEEDED, IcmpErrorType, parseIcmpError } from "./icmp_error.ts";

const CLIENT = parseIpv4("198.51.100.10");
const RELAY = parseIpv4("198.51.100.1");
const SERVER = parseIpv4("203.0.113.10");
const ROUTER = parseIpv4("203.0.113.1");

const request = () =>
  buildUdpPacket({
    src: CLIENT,
    dst: SERVER,
    srcPort: 40000,
    dstPort: 53,
    payload: new TextEncoder().encode("a question of some length"),
  });

/** Every checksum of an ICMP error that quotes a whole UDP datagram. */
function checksums(bytes: Uint8Array) {
  const e = parseIcmpError(bytes)!;
  return {
    outerIp: internetChecksum(bytes, 0, e.icmpOffset) === 0,
    icmp: internetChecksum(bytes, e.icmpOffset, bytes.length) === 0,
    inner: checksumsValid(bytes.subarray(e.innerOffset)),
  };
}

const ALL_VALID = { outerIp: true, icmp: true, inner: { ip: true, l4: true } };

Deno.test("parseIcmpError reads a port unreachable about a UDP request", () => {
  const unreachable = { src: SERVER, dst: CLIENT, type: 3, code: 3 };
  const e = parseIcmpError(buildIcmpError(unreachable, request()))!;
  assertEquals([e.type, e.code, e.src, e.dst], [3, 3, SERVER, CLIENT]);
  assertEquals([e.innerProtocol, e.innerSrc, e.innerDst], [17, CLIENT, SERVER]);
  assertEquals([e.innerSrcPort, e.innerDstPort], [40000, 53]);
});

Deno.test("rewriting an error about a request keeps every checksum right", () => {
  const bytes = buildIcmpError(
    { src: ROUTER, dst: CLIENT, type: 3, code: FRAGMENTATION_NEEDED, mtu: 1280 },
    request(),
  );
  assertEquals(checksums(bytes), ALL_VALID);
  const e = parseIcmpError(bytes)!;
  e.setOuterSrc(RELAY);
  e.setInnerDst(RELAY);
  e.finalize();
  assertEquals(checksums(bytes), ALL_VALID);
  assertEquals([e.src, e.dst, e.innerSrc, e.innerDst, e.mtu], [RELAY, CLIENT, CLIENT, RELAY, 1280]);
  // What the client's kernel matches: the error now quotes the request the client sent.
  const sent = buildUdpPacket({
    src: CLIENT,
    dst: RELAY,
    srcPort: 40000,
    dstPort: 53,
    payload: new TextEncoder().encode("a question of some length"),
  });
  assertEquals(bytes.subarray(e.innerOffset), sent);
});

Deno.test("rewriting an error about a reply (its source and port) keeps every checksum right", () => {
  const reply = buildUdpPacket({ src: RELAY, dst: CLIENT, srcPort: 53, dstPort: 40000 });
  const bytes = buildIcmpError({ src: CLIENT, dst: RELAY, type: 3, code: 3 }, reply);
  const e = parseIcmpError(bytes)!;
  e.setOuterDst(SERVER);
  e.setInnerSrc(SERVER);
  e.setInnerSrcPort(5353);
  e.finalize();
  assertEquals(checksums(bytes), ALL_VALID);
  assertEquals([e.dst, e.innerSrc, e.innerSrcPort], [SERVER, SERVER, 5353]);
});

Deno.test("a quote cut after 8 bytes of UDP is still rewritten, its embedded IP checksum right", () => {
  const bytes = buildIcmpError({ src: SERVER, dst: CLIENT, type: 11, code: 0 }, request(), 28);
  const e = parseIcmpError(bytes)!;
  e.setOuterSrc(RELAY);
  e.setInnerDst(RELAY);
  e.finalize();
  assertEquals(internetChecksum(bytes, 0, 20), 0);
  assertEquals(internetChecksum(bytes, e.icmpOffset, bytes.length), 0);
  assertEquals(internetChecksum(bytes, e.innerOffset, e.innerL4Offset), 0);
});

Deno.test("a TCP quote is rewritten without touching its bytes past the addresses", () => {
  const segment = buildTcpPacket({ src: CLIENT, dst: SERVER, srcPort: 40000, dstPort: 80 });
  const bytes = buildIcmpError({ src: SERVER, dst: CLIENT, type: 3, code: 4 }, segment, 28);
  const e = parseIcmpError(bytes)!;
  assertEquals(e.innerProtocol, 6);
  const l4 = bytes.slice(e.innerL4Offset);
  e.setInnerDst(RELAY);
  e.finalize();
  assertEquals(bytes.slice(e.innerL4Offset), l4);
  assertEquals(internetChecksum(bytes, e.icmpOffset, bytes.length), 0);
});

Deno.test("parseIcmpError leaves out what is no error about TCP or UDP", () => {
  const unreachable = { src: SERVER, dst: CLIENT, type: 3, code: 3 };
  // An echo request, a plain UDP datagram, a quote too short for the ports.
  const echo = buildIcmpError(
    { ...unreachable, type: IcmpErrorType.DestinationUnreachable },
    request(),
  );
  echo[20] = 8;
  assertEquals(parseIcmpError(echo), undefined);
  assertEquals(parseIcmpError(request()), undefined);
  assertEquals(parseIcmpError(buildIcmpError(unreachable, request(), 24)), undefined);
  // A truncated copy never reads past its end.
  const whole = buildIcmpError(unreachable, request());
  for (let n = 0; n < whole.length; n++) {
    const e = parseIcmpError(whole.subarray(0, n));
    ok(e === undefined, `parsed ${n} bytes`);
  }
});
