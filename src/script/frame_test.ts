import { deepStrictEqual as assertEquals, throws } from "node:assert/strict";
import { decodeFrame, encodeFrame, FrameReader, MAX_FRAME } from "./frame.ts";
import { encodeBatch } from "./wire.ts";

Deno.test("a batch and a result survive a frame, byte arrays included", () => {
  const batch = encodeBatch(7, [{
    bytes: new Uint8Array([1, 2, 3]),
    hook: 1,
    protocol: 17,
    client: 0xc6336410,
    clientPort: 5353,
    service: 1,
    servicePort: 53,
    server: 2,
    serverPort: 53,
  }]);
  const [body] = new FrameReader().push(encodeFrame(batch));
  const back = decodeFrame(body) as typeof batch;
  assertEquals(back.kind, "batch");
  assertEquals(back.seq, 7);
  assertEquals(new Uint8Array(back.data), new Uint8Array([1, 2, 3]));
  assertEquals(back.meta, batch.meta);
  const result = {
    kind: "result",
    seq: 7,
    outcomes: new Uint8Array([2]),
    changed: [[0, new Uint8Array([9, 9])]],
    errors: [[1, "boom"]],
    logs: [{ level: "info", text: "hi" }],
  };
  const [r] = new FrameReader().push(encodeFrame(result));
  assertEquals(decodeFrame(r), result);
});

Deno.test("FrameReader joins frames split anywhere and refuses a huge length", () => {
  const frames = [encodeFrame({ a: 1 }), encodeFrame({ b: new Uint8Array(1000) })];
  const all = new Uint8Array(frames[0].length + frames[1].length);
  all.set(frames[0]);
  all.set(frames[1], frames[0].length);
  for (const cut of [1, 3, 4, 9, frames[0].length, frames[0].length + 5]) {
    const reader = new FrameReader();
    const got = [...reader.push(all.subarray(0, cut)), ...reader.push(all.subarray(cut))];
    assertEquals(got.map(decodeFrame), [{ a: 1 }, { b: new Uint8Array(1000) }]);
    assertEquals(reader.pending, 0);
  }
  const huge = new Uint8Array(8);
  new DataView(huge.buffer).setUint32(0, MAX_FRAME + 1, true);
  throws(() => new FrameReader().push(huge), /a frame of/);
});
