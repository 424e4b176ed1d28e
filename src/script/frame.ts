/**
 * The wire.ts messages as bytes, for a script's process (its stdin and stdout): one frame per
 * message, `[u32 length][u32 JSON length][JSON][binary]`, lengths little-endian. The message
 * travels as JSON except its byte arrays (a batch's datagrams and numbers, outcomes, changed
 * datagrams), which are appended as they are and named in the JSON by `{"$b":[offset,
 * length,kind]}`: no copy into text, one write per message.
 *
 * @module
 */

/** Longest frame accepted: a process sending more is broken or hostile. */
export const MAX_FRAME = 32 << 20;

type Blob = Uint8Array | Uint32Array | ArrayBuffer;
const KINDS = { u8: 0, u32: 1, ab: 2 } as const;

/** `message` as one frame. */
export function encodeFrame(message: unknown): Uint8Array {
  const blobs: Uint8Array[] = [];
  let size = 0;
  const json = JSON.stringify(message, (_key, value) => {
    if (
      !(value instanceof Uint8Array || value instanceof Uint32Array || value instanceof ArrayBuffer)
    ) {
      return value;
    }
    const v = value as Blob;
    const bytes = v instanceof ArrayBuffer
      ? new Uint8Array(v)
      : new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
    const kind = v instanceof Uint8Array
      ? KINDS.u8
      : v instanceof Uint32Array
      ? KINDS.u32
      : KINDS.ab;
    const ref = { $b: [size, bytes.length, kind] };
    blobs.push(bytes);
    size += bytes.length;
    return ref;
  });
  const text = new TextEncoder().encode(json);
  const frame = new Uint8Array(8 + text.length + size);
  const view = new DataView(frame.buffer);
  view.setUint32(0, frame.length - 4, true);
  view.setUint32(4, text.length, true);
  frame.set(text, 8);
  let at = 8 + text.length;
  for (const b of blobs) {
    frame.set(b, at);
    at += b.length;
  }
  return frame;
}

/** The message in one frame's body (the bytes after its length); copies the byte arrays. */
export function decodeFrame(body: Uint8Array): unknown {
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const jsonLength = view.getUint32(0, true);
  if (jsonLength > body.length - 4) throw new Error("a frame's JSON runs past its end");
  const binary = body.subarray(4 + jsonLength);
  const text = new TextDecoder().decode(body.subarray(4, 4 + jsonLength));
  return JSON.parse(text, (_key, value) => {
    const ref = value?.$b;
    if (!Array.isArray(ref)) return value;
    const [offset, length, kind] = ref as number[];
    if (offset + length > binary.length) throw new Error("a frame's blob runs past its end");
    const copy = binary.slice(offset, offset + length);
    if (kind === KINDS.u32) return new Uint32Array(copy.buffer);
    if (kind === KINDS.ab) return copy.buffer;
    return copy;
  });
}

/** Cuts a byte stream into frame bodies. */
export class FrameReader {
  #buffer = new Uint8Array(0);

  /** Adds `chunk` and returns the bodies of the frames it completes; throws on a bad length. */
  push(chunk: Uint8Array): Uint8Array[] {
    let buf = this.#buffer.length === 0 ? chunk : concat(this.#buffer, chunk);
    const bodies: Uint8Array[] = [];
    while (buf.length >= 4) {
      const length = new DataView(buf.buffer, buf.byteOffset, 4).getUint32(0, true);
      if (length < 4 || length > MAX_FRAME) throw new Error(`a frame of ${length} bytes`);
      if (buf.length < 4 + length) break;
      bodies.push(buf.subarray(4, 4 + length));
      buf = buf.subarray(4 + length);
    }
    // Kept bytes get their own buffer, so the caller's chunk can be reused.
    this.#buffer = buf.length === 0 ? new Uint8Array(0) : buf.slice();
    return bodies;
  }

  /** Bytes of an unfinished frame held. */
  get pending(): number {
    return this.#buffer.length;
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
