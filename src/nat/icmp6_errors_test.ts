import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import fc from "fast-check";
import { Ipv6Packet, parseIpv6Packet } from "../packet/ipv6_packet.ts";
import { parseIpv6 } from "../packet/ipv6_address.ts";
import { translateIcmp6Error } from "./icmp6_errors.ts";
import { udp } from "../packet/_segments.ts";

const C = "2001:db8:1::10", R = "2001:db8:1::1", S = "2001:db8:2::10", ROUTER = "2001:db8:2::99";
const settings = { relayIp6: R, pool6: { servers: [{ address: S }] }, udpPorts: new Set([53]) };

/** An IPv6 packet src -> dst with next header `nh` and `body`, its L4 checksum computed. */
function ipv6(src: string, dst: string, nh: number, body: Uint8Array): Uint8Array {
  const b = new Uint8Array(40 + body.length);
  b[0] = 0x60;
  b[4] = body.length >> 8;
  b[5] = body.length & 255;
  b[6] = nh;
  b[7] = 64;
  b.set(parseIpv6(src), 8);
  b.set(parseIpv6(dst), 24);
  b.set(body, 40);
  (parseIpv6Packet(b) as Ipv6Packet).recomputeL4Checksum();
  return b;
}

/** An ICMPv6 error of `type`/`code` from `from` to `to`, quoting `quoted`. */
function error(from: string, to: string, type: number, code: number, quoted: Uint8Array) {
  const body = new Uint8Array(8 + quoted.length);
  body[0] = type;
  body[1] = code;
  if (type === 2) new DataView(body.buffer).setUint32(4, 1280);
  body.set(quoted, 8);
  return parseIpv6Packet(ipv6(from, to, 58, body)) as Ipv6Packet;
}

/** True when the packet's own L4 checksum is right (computing it again changes nothing). */
function checksumRight(bytes: Uint8Array, offset = 0): boolean {
  const copy = bytes.slice(offset);
  const p = parseIpv6Packet(copy) as Ipv6Packet;
  const at = p.l4ChecksumOffset;
  const before = [copy[at], copy[at + 1]];
  p.recomputeL4Checksum();
  return before[0] === copy[at] && before[1] === copy[at + 1];
}

const query = new TextEncoder().encode("a query");

Deno.test("a port unreachable from the server is about the client's request to the relay", () => {
  const request = ipv6(C, S, 17, udp(40000, 53, query));
  const p = error(S, C, 1, 4, request);
  assertEquals(translateIcmp6Error(p, settings), true);
  assertEquals([p.srcText, p.dstText], [R, C]);
  const quote = p.bytes.subarray(48);
  const q = parseIpv6Packet(quote.slice()) as Ipv6Packet;
  assertEquals([q.srcText, q.dstText, q.srcPort, q.dstPort], [C, R, 40000, 53]);
  assert(checksumRight(p.bytes), "ICMPv6 checksum");
  assert(checksumRight(p.bytes, 48), "quoted UDP checksum");
});

Deno.test("a router's packet too big keeps its source; the relay's own error is translated alike", () => {
  const request = ipv6(C, S, 17, udp(40000, 53, new Uint8Array(1300)));
  for (const from of [ROUTER, R]) {
    const p = error(from, C, 2, 0, request.subarray(0, 1232 - 48));
    assertEquals(translateIcmp6Error(p, settings), true);
    assertEquals([p.srcText, p.dstText], [from, C]);
    assertEquals(
      (parseIpv6Packet(p.bytes.slice(48)) as Ipv6Packet | undefined)?.dstText,
      undefined,
    );
    assertEquals(p.bytes.subarray(48 + 24, 48 + 40), parseIpv6(R));
    assert(checksumRight(p.bytes));
  }
});

Deno.test("an error about a reply from the relay goes to the server, about the server's reply", () => {
  const reply = ipv6(R, C, 17, udp(53, 40000, query));
  const p = error(C, R, 1, 4, reply);
  assertEquals(translateIcmp6Error(p, settings), true);
  assertEquals([p.srcText, p.dstText], [C, S]);
  const q = parseIpv6Packet(p.bytes.slice(48)) as Ipv6Packet;
  assertEquals([q.srcText, q.dstText, q.srcPort], [S, C, 53]);
  assert(checksumRight(p.bytes));
  assert(checksumRight(p.bytes, 48));
});

Deno.test("errors about other flows, ports or protocols, and non-errors, are left alone", () => {
  const cases = [
    error(S, C, 1, 4, ipv6(C, S, 17, udp(40000, 54, query))), // another port
    error(S, C, 1, 4, ipv6(C, ROUTER, 17, udp(40000, 53, query))), // another server
    error(
      S,
      C,
      1,
      4,
      ipv6(C, S, 6, new Uint8Array([0, 1, 0, 53, ...new Array(8), 0x50, 0x02, 1, 0, 0, 0, 0, 0])),
    ), // TCP: the kernel's
    error(C, R, 1, 4, ipv6(ROUTER, C, 17, udp(53, 40000, query))), // not the relay's reply
    error(S, C, 128, 0, ipv6(C, S, 17, udp(40000, 53, query))), // an echo request
  ];
  for (const p of cases) {
    const before = p.bytes.slice();
    assertEquals(translateIcmp6Error(p, settings), false);
    assertEquals(p.bytes, before);
  }
  const p = error(S, C, 1, 4, ipv6(C, S, 17, udp(40000, 53, query)));
  assertEquals(translateIcmp6Error(p, { ...settings, relayIp6: undefined }), false);
});

Deno.test("translated errors keep both checksums right, whatever the request", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 65535 }),
      fc.uint8Array({ maxLength: 300 }),
      fc.constantFrom(1, 2, 3, 4),
      (port, data, type) => {
        const p = error(S, C, type, 0, ipv6(C, S, 17, udp(port, 53, data)));
        return translateIcmp6Error(p, settings) && checksumRight(p.bytes) &&
          checksumRight(p.bytes, 48);
      },
    ),
    { numRuns: 500 },
  );
});

Deno.test("with several IPv6 servers, an error about a reply goes to the flow's own server", () => {
  const S2 = "2001:db8:2::20";
  const two = { ...settings, pool6: { servers: [{ address: S }, { address: S2 }] } };
  const asked: unknown[] = [];
  const serverOf = (client: string, clientPort: number, servicePort: number) => {
    asked.push([client, clientPort, servicePort]);
    return clientPort === 40000 ? S2 : undefined;
  };
  const p = error(C, R, 1, 4, ipv6(R, C, 17, udp(53, 40000, query)));
  assertEquals(translateIcmp6Error(p, two, serverOf), true);
  assertEquals(asked, [[C, 40000, 53]]);
  assertEquals([p.srcText, p.dstText], [C, S2]);
  const q = parseIpv6Packet(p.bytes.slice(48)) as Ipv6Packet;
  assertEquals([q.srcText, q.dstText, q.srcPort, q.dstPort], [S2, C, 53, 40000]);
  assert(checksumRight(p.bytes));
  assert(checksumRight(p.bytes, 48));
  // A flow krelay knows nothing of: no server to send it to, left alone.
  const other = error(C, R, 1, 4, ipv6(R, C, 17, udp(53, 40001, query)));
  const before = other.bytes.slice();
  assertEquals(translateIcmp6Error(other, two, serverOf), false);
  assertEquals(other.bytes, before);
  // The flow's server first even with one server (one taken out of real_ip keeps its flows).
  const lone = error(C, R, 1, 4, ipv6(R, C, 17, udp(53, 40000, query)));
  assertEquals(translateIcmp6Error(lone, settings, serverOf), true);
  assertEquals(lone.dstText, S2);
});
