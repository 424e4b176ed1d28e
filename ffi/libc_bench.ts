/**
 * Why the 64-bit parameters of ./libc.ts are passed as BigInts: the same `read(2)` (on a bad fd,
 * so only the call's cost is measured) with its `size_t` length given as a BigInt, which keeps
 * V8's fast call path, and as a JS number, which Deno accepts but serves on the slow path.
 */

import { libc } from "./libc.ts";

const buf = new Uint8Array(64);
const len = BigInt(buf.length);
// The slow form, as the bindings were written before: the types say bigint, a number works.
const readWithNumber = libc().read as unknown as (fd: number, b: Uint8Array, n: number) => number;

Deno.bench("read(2), length as BigInt (fast call)", { group: "ffi", baseline: true }, () => {
  libc().read(-1, buf, len);
});

Deno.bench("read(2), length as a number (slow call)", { group: "ffi" }, () => {
  readWithNumber(-1, buf, buf.length);
});
