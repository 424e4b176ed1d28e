/** Test fixture: a timer that fills buffers outside the V8 heap without end; accepts. */
const held: Uint8Array[] = [];
setInterval(() => held.push(new Uint8Array(32 << 20).fill(7)), 20);

/** Accepts. */
export function target(): void {}
