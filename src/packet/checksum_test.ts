import { deepStrictEqual as assertEquals } from "node:assert/strict";
import fc from "fast-check";
import {
  fold,
  internetChecksum,
  sumWords,
  updateChecksum16,
  updateChecksum32,
} from "./checksum.ts";

Deno.test("internetChecksum() matches the RFC 1071 worked example", () => {
  const bytes = new Uint8Array([0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]);
  assertEquals(fold(sumWords(bytes, 0, bytes.length)), 0xddf2);
  assertEquals(internetChecksum(bytes, 0, bytes.length), 0x220d);
});

Deno.test("internetChecksum() of a known IPv4 header is the value in that header", () => {
  // 192.168.0.1 -> 192.168.0.199, UDP, checksum 0xb861 (a widely published vector).
  const header = Uint8Array.from(
    [
      0x45,
      0x00,
      0x00,
      0x73,
      0x00,
      0x00,
      0x40,
      0x00,
      0x40,
      0x11,
      0x00,
      0x00,
      0xc0,
      0xa8,
      0x00,
      0x01,
      0xc0,
      0xa8,
      0x00,
      0xc7,
    ],
  );
  assertEquals(internetChecksum(header, 0, 20), 0xb861);
  header[10] = 0xb8;
  header[11] = 0x61;
  assertEquals(internetChecksum(header, 0, 20), 0);
});

Deno.test("internetChecksum() pads an odd trailing byte with zero", () => {
  assertEquals(internetChecksum(new Uint8Array([0x12]), 0, 1), ~0x1200 & 0xffff);
});

Deno.test("updateChecksum16() and updateChecksum32() agree with full recomputation", () => {
  fc.assert(fc.property(
    fc.uint8Array({ minLength: 8, maxLength: 64 }).filter((b) => b.length % 2 === 0),
    fc.nat({ max: 1000 }),
    fc.integer({ min: 0, max: 0xffff }),
    fc.integer({ min: 0, max: 0xffffffff }),
    (bytes, at, word, dword) => {
      const v = new DataView(bytes.buffer);
      const i = (at % (bytes.length / 2)) * 2;
      const before = internetChecksum(bytes, 0, bytes.length);
      const old = v.getUint16(i);
      v.setUint16(i, word);
      const full16 = internetChecksum(bytes, 0, bytes.length);
      assertEquals(sameOnesComplement(updateChecksum16(before, old, word), full16), true);
      const j = Math.min(i, bytes.length - 4) & ~1;
      const old32 = v.getUint32(j);
      const mid = internetChecksum(bytes, 0, bytes.length);
      v.setUint32(j, dword);
      const full32 = internetChecksum(bytes, 0, bytes.length);
      const inc32 = updateChecksum32(mid, old32, dword >>> 0);
      assertEquals(sameOnesComplement(inc32, full32), true);
    },
  ));
});

/** 0x0000 and 0xffff are the same value (+0, -0) in one's complement arithmetic. */
function sameOnesComplement(a: number, b: number): boolean {
  return a === b || (a === 0 && b === 0xffff) || (a === 0xffff && b === 0);
}

Deno.test("sumWords() gives the same folded sum on long runs at any offset as the 16-bit loop", () => {
  const reference = (b: Uint8Array, start: number, end: number) => {
    let sum = 0;
    for (let i = start; i < end; i += 2) sum += (b[i] << 8) | (i + 1 < end ? b[i + 1] : 0);
    return fold(sum);
  };
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 256, maxLength: 70_000 }),
      fc.nat({ max: 64 }),
      fc.nat({ max: 7 }),
      (bytes, from, cut) => {
        const start = Math.min(from, bytes.length - 1);
        const end = Math.max(start, bytes.length - cut);
        assertEquals(fold(sumWords(bytes, start, end)), reference(bytes, start, end));
      },
    ),
    { numRuns: 200 },
  );
});
