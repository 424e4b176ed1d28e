import { deepStrictEqual as assertEquals, ok as assert, throws } from "node:assert/strict";
import fc from "fast-check";
import { formatIpv6, parseIpv6 } from "./ipv6_address.ts";
import { Ipv6Header, Ipv6Packet, parseIpv6Packet } from "./ipv6_packet.ts";
import { Malformed } from "./l4_packet.ts";
import { poked, tcp, udp } from "./_segments.ts";

/**
 * The reference: RFC 8200 8.1's checksum, written out plainly: the pseudo-header's bytes
 * (source, destination, 32-bit length, three zero bytes, next header) then the segment with
 * its checksum field zeroed, summed 16 bits at a time, carries folded, complemented.
 */
function referenceChecksum(
  src: Uint8Array,
  dst: Uint8Array,
  nextHeader: number,
  segment: Uint8Array,
  checkAt: number,
): number {
  const len = segment.length;
  const pseudo = [...src, ...dst, len >>> 24, (len >>> 16) & 255, (len >>> 8) & 255, len & 255];
  pseudo.push(0, 0, 0, nextHeader);
  const seg = [...segment];
  seg[checkAt] = seg[checkAt + 1] = 0;
  const all = [...pseudo, ...seg];
  if (all.length % 2) all.push(0);
  let sum = 0;
  for (let i = 0; i < all.length; i += 2) sum += (all[i] << 8) | all[i + 1];
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  const c = ~sum & 0xffff;
  return c === 0 && nextHeader === 17 ? 0xffff : c;
}

interface Built {
  bytes: Uint8Array;
  l4Offset: number;
}

/** An IPv6 packet: header, extension headers (each 8 bytes, no options), then `l4`. */
function build(
  src: string,
  dst: string,
  protocol: number,
  l4: Uint8Array,
  extensions: number[] = [],
): Built {
  const extLength = extensions.length * 8;
  const bytes = new Uint8Array(40 + extLength + l4.length);
  bytes[0] = 0x60;
  const payload = extLength + l4.length;
  bytes[4] = payload >>> 8;
  bytes[5] = payload & 255;
  bytes[6] = extensions[0] ?? protocol;
  bytes[7] = 64;
  bytes.set(parseIpv6(src), 8);
  bytes.set(parseIpv6(dst), 24);
  extensions.forEach((_, i) => {
    const at = 40 + 8 * i;
    bytes[at] = extensions[i + 1] ?? protocol;
    bytes[at + 1] = 0; // 8 bytes in all (a fragment header's second byte is reserved)
  });
  bytes.set(l4, 40 + extLength);
  return { bytes, l4Offset: 40 + extLength };
}

/** Checksums a built packet as a sender would, by the reference. */
function sign(p: Built, protocol: number): Uint8Array {
  const checkAt = protocol === 6 ? 16 : protocol === 17 ? 6 : 2;
  const seg = p.bytes.subarray(p.l4Offset);
  const c = referenceChecksum(p.bytes.slice(8, 24), p.bytes.slice(24, 40), protocol, seg, checkAt);
  p.bytes[p.l4Offset + checkAt] = c >>> 8;
  p.bytes[p.l4Offset + checkAt + 1] = c & 255;
  return p.bytes;
}

function parsed(bytes: Uint8Array, partial = false): Ipv6Packet {
  const p = parseIpv6Packet(bytes, partial);
  if (!(p instanceof Ipv6Packet)) throw new Error(`malformed: ${(p as Malformed).reason}`);
  return p;
}

/** The packet's checksum agrees with the reference over its current bytes. */
function checksumHolds(p: Ipv6Packet): boolean {
  const at = p.l4ChecksumOffset - p.l4Offset;
  const seg = p.bytes.subarray(p.l4Offset);
  const want = referenceChecksum(p.src.slice(), p.dst.slice(), p.protocol, seg, at);
  return p.bytes[p.l4ChecksumOffset] === want >>> 8 &&
    p.bytes[p.l4ChecksumOffset + 1] === (want & 255);
}

const data = new TextEncoder().encode("a DNS query, more or less");

Deno.test("parseIpv6Packet() reads a UDP packet's addresses and ports", () => {
  const bytes = sign(build("2001:db8:1::10", "2001:db8:1::1", 17, udp(40000, 53, data)), 17);
  const p = parsed(bytes);
  assertEquals([p.srcText, p.dstText, p.srcPort, p.dstPort], [
    "2001:db8:1::10",
    "2001:db8:1::1",
    40000,
    53,
  ]);
  assertEquals([p.protocol, p.l4Offset, p.hasPorts, p.isFragment, p.routed], [
    17,
    40,
    true,
    false,
    false,
  ]);
  assertEquals(new TextDecoder().decode(p.payload), "a DNS query, more or less");
  assert(checksumHolds(p));
});

Deno.test("parseIpv6Packet() skips hop-by-hop, destination options and routing headers", () => {
  const exts = [Ipv6Header.HopByHop, Ipv6Header.DestinationOptions, Ipv6Header.Routing];
  const bytes = sign(build("2001:db8:1::10", "2001:db8:1::1", 6, tcp(40000, 80, data), exts), 6);
  const p = parsed(bytes);
  assertEquals([p.protocol, p.l4Offset, p.srcPort, p.dstPort, p.routed], [6, 64, 40000, 80, false]);
  // A routing header with segments left: the destination field is not the final one.
  bytes[40 + 16 + 3] = 1;
  assertEquals(parsed(bytes).routed, true);
});

Deno.test("parseIpv6Packet() gives a first fragment its ports and later fragments none", () => {
  const built = build("2001:db8:1::10", "2001:db8:1::1", 17, udp(40000, 53, data), [
    Ipv6Header.Fragment,
  ]);
  built.bytes[40 + 3] = 1; // more fragments, offset 0
  const first = parsed(built.bytes);
  assertEquals([first.isFragment, first.hasPorts, first.srcPort], [true, true, 40000]);
  built.bytes[40 + 2] = 0x01; // offset 32 (in 8-byte units, shifted by 3)
  const later = parsed(built.bytes);
  assertEquals([later.isFragment, later.hasPorts], [true, false]);
  throws(() => later.setDstPort(54), /no ports/);
});

Deno.test("parseIpv6Packet() refuses what it cannot read safely", () => {
  const ok = build("2001:db8:1::10", "2001:db8:1::1", 17, udp(1, 2, data)).bytes;
  const reason = (b: Uint8Array) => (parseIpv6Packet(b) as Malformed).reason;
  assertEquals(reason(ok.subarray(0, 39)), "too-short");
  assertEquals(reason(poked(ok, 0, 0x45)), "not-ipv6");
  assertEquals(reason(poked(ok, 5, ok[5] + 1)), "bad-total-length");
  assertEquals(
    reason(build("2001:db8::1", "2001:db8::2", 17, new Uint8Array(4)).bytes),
    "truncated-l4-header",
  );
  // An extension header that runs past the packet.
  const ext = build("2001:db8::1", "2001:db8::2", 17, udp(1, 2, new Uint8Array()), [0]).bytes;
  ext[41] = 5;
  assertEquals(reason(ext), "bad-header-length");
  // A chain of nine extension headers is not walked.
  const chain =
    build("2001:db8::1", "2001:db8::2", 17, udp(1, 2, new Uint8Array()), new Array(9).fill(60))
      .bytes;
  assertEquals(reason(chain), "bad-header-length");
});

Deno.test("parseIpv6Packet() never throws and never reads past the buffer, whatever the bytes", () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 0, maxLength: 200 }), fc.boolean(), (bytes, six) => {
      if (six && bytes.length > 0) bytes[0] = 0x60 | (bytes[0] & 15);
      const p = parseIpv6Packet(bytes);
      if (p instanceof Ipv6Packet) {
        assert(p.l4Offset <= p.bytes.length && p.bytes.length <= bytes.length);
        if (p.hasPorts) assert(p.l4Offset + 8 <= p.bytes.length);
      }
    }),
    { numRuns: 3000 },
  );
});

const address = fc.uint8Array({ minLength: 16, maxLength: 16 });
const port = fc.integer({ min: 0, max: 65535 });

Deno.test("rewriting addresses and ports keeps TCP, UDP and ICMPv6 checksums equal to the reference", () => {
  fc.assert(
    fc.property(
      fc.constantFrom(6, 17, 58),
      address,
      address,
      address,
      address,
      port,
      port,
      fc.uint8Array({ maxLength: 64 }),
      fc.subarray([0, 60, 43]),
      (protocol, s, d, s2, d2, p1, p2, payload, exts) => {
        const l4 = protocol === 6
          ? tcp(1234, 80, payload)
          : protocol === 17
          ? udp(1234, 53, payload)
          : new Uint8Array([128, 0, 0, 0, ...payload]); // an echo request
        const bytes = sign(build(formatIpv6(s), formatIpv6(d), protocol, l4, exts), protocol);
        const p = parsed(bytes);
        assert(checksumHolds(p));
        p.setSrc(s2);
        p.setDst(formatIpv6(d2));
        if (p.hasPorts) {
          p.setSrcPort(p1);
          p.setDstPort(p2);
        }
        p.finalize();
        assertEquals([...p.src], [...s2]);
        assertEquals([...p.dst], [...d2]);
        return checksumHolds(p);
      },
    ),
    { numRuns: 3000 },
  );
});

Deno.test("a partial-checksum packet gets its full checksum at finalize(), only when changed", () => {
  fc.assert(
    fc.property(address, fc.uint8Array({ maxLength: 64 }), (d2, payload) => {
      const bytes = build("2001:db8:1::10", "2001:db8:1::1", 17, udp(1, 53, payload)).bytes;
      // The kernel leaves a partial checksum (here: garbage) for the device to complete.
      bytes[46] = 0x12;
      bytes[47] = 0x34;
      const p = parsed(bytes, true);
      p.finalize();
      assertEquals([bytes[46], bytes[47]], [0x12, 0x34]);
      p.setDst(d2);
      p.finalize();
      return checksumHolds(p);
    }),
    { numRuns: 500 },
  );
});
