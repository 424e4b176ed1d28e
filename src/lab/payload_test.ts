import {
  deepStrictEqual as assertEquals,
  notDeepStrictEqual,
  ok as assert,
} from "node:assert/strict";
import { payloadBytes, PayloadStream, sha256Hex, writePayloadFile } from "./payload.ts";

Deno.test("payloadBytes() is the same for the same seed and differs between seeds", () => {
  assertEquals(payloadBytes("a", 1000), payloadBytes("a", 1000));
  notDeepStrictEqual(payloadBytes("a", 64), payloadBytes("b", 64));
  // A shorter payload is a prefix of a longer one.
  assertEquals(payloadBytes("a", 1001).subarray(0, 999), payloadBytes("a", 999));
  assertEquals(payloadBytes("", 0).length, 0);
});

Deno.test("payloadBytes() looks random enough to defeat compression and pattern bugs", () => {
  const b = payloadBytes("x", 1 << 16);
  const counts = new Array(256).fill(0);
  for (const v of b) counts[v]++;
  const expected = b.length / 256;
  for (const c of counts) assert(Math.abs(c - expected) < expected * 0.3, `bucket ${c}`);
});

Deno.test("PayloadStream.fill() refuses lengths that are not a multiple of 4", () => {
  let threw = false;
  try {
    new PayloadStream("s").fill(new Uint8Array(5));
  } catch (e) {
    threw = e instanceof RangeError;
  }
  assert(threw);
});

Deno.test("writePayloadFile() writes the payload and returns its sha256", async () => {
  const dir = await Deno.makeTempDir({ prefix: "krelay-payload-test-" });
  try {
    const length = (1 << 20) * 2 + 7; // crosses chunk boundaries, odd tail
    const { sha256, bytes } = await writePayloadFile(`${dir}/f.bin`, length, "f.bin");
    const data = await Deno.readFile(`${dir}/f.bin`);
    assertEquals(bytes, length);
    assertEquals(data.length, length);
    assertEquals(sha256Hex(data), sha256);
    assertEquals(data, payloadBytes("f.bin", length));
    assertEquals(
      sha256Hex(new Uint8Array(0)),
      "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
