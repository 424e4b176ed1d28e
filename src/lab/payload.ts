/**
 * Test payloads: pseudo-random bytes that are the same for the same seed (so a file's
 * content and SHA-256 are reproducible), written to disk in chunks with the hash computed on
 * the way, so files larger than memory are fine.
 *
 * @example
 * ```ts
 * import { writePayloadFile } from "./payload.ts";
 * const { sha256 } = await writePayloadFile("/tmp/big.bin", 50 * 1024 * 1024, "big.bin");
 * ```
 * @module
 */

import { createHash } from "node:crypto";

const CHUNK = 1 << 20;

/** A seeded xoshiro128** generator; fills buffers 4 bytes at a time (host byte order). */
export class PayloadStream {
  readonly #s = new Uint32Array(4);

  /** Seeds the generator from any string (FNV-1a, then splitmix32 to spread it). */
  constructor(seed: string) {
    let h = 0x811c9dc5;
    for (let i = 0; i < seed.length; i++) h = Math.imul(h ^ seed.charCodeAt(i), 0x01000193);
    for (let i = 0; i < 4; i++) {
      h = (h + 0x9e3779b9) >>> 0;
      let z = h;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      this.#s[i] = (z ^ (z >>> 16)) >>> 0;
    }
    if ((this.#s[0] | this.#s[1] | this.#s[2] | this.#s[3]) === 0) this.#s[0] = 1;
  }

  /** Fills `out` with the next bytes of the stream; `out.byteLength` must be a multiple of 4. */
  fill(out: Uint8Array): void {
    if (out.byteLength % 4 !== 0) throw new RangeError("fill(): length must be a multiple of 4");
    const words = new Uint32Array(out.buffer, out.byteOffset, out.byteLength / 4);
    const s = this.#s;
    let s0 = s[0], s1 = s[1], s2 = s[2], s3 = s[3];
    for (let i = 0; i < words.length; i++) {
      const m = Math.imul(s1, 5);
      words[i] = Math.imul((m << 7) | (m >>> 25), 9);
      const t = s1 << 9;
      s2 ^= s0;
      s3 ^= s1;
      s1 ^= s2;
      s0 ^= s3;
      s2 ^= t;
      s3 = (s3 << 11) | (s3 >>> 21);
    }
    s[0] = s0;
    s[1] = s1;
    s[2] = s2;
    s[3] = s3;
  }
}

/** The first `length` bytes of the payload stream for `seed`. */
export function payloadBytes(seed: string, length: number): Uint8Array {
  const padded = new Uint8Array(Math.ceil(length / 4) * 4);
  new PayloadStream(seed).fill(padded);
  return padded.subarray(0, length);
}

/** Hex SHA-256 of some bytes. */
export function sha256Hex(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/**
 * Writes the first `length` bytes of the payload stream for `seed` to `path` (replacing it)
 * and returns their hex SHA-256.
 */
export async function writePayloadFile(
  path: string,
  length: number,
  seed: string,
): Promise<{ sha256: string; bytes: number }> {
  if (!Number.isSafeInteger(length) || length < 0) throw new RangeError(`bad length ${length}`);
  const stream = new PayloadStream(seed);
  const hash = createHash("sha256");
  const buf = new Uint8Array(CHUNK);
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  try {
    for (let left = length; left > 0;) {
      const n = Math.min(left, CHUNK);
      stream.fill(buf.subarray(0, Math.ceil(n / 4) * 4));
      const part = buf.subarray(0, n);
      hash.update(part);
      for (let off = 0; off < n;) off += await file.write(part.subarray(off));
      left -= n;
    }
  } finally {
    file.close();
  }
  return { sha256: hash.digest("hex"), bytes: length };
}
