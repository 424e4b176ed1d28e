import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { libc } from "../../ffi/libc.ts";
import { F_GETPIPE_SZ } from "../../ffi/linux.ts";
import { PipePool } from "./pipe_pool.ts";

const KiB = 1024;

/** The pipe-max-size of this host: pipes cannot be made bigger (without CAP_SYS_RESOURCE). */
function maxPipe(): number {
  return Number(Deno.readTextFileSync("/proc/sys/fs/pipe-max-size").trim());
}

Deno.test("pipes are made at the pool's size, and each knows the capacity it got", () => {
  const pool = new PipePool({ size: 256 * KiB });
  const pipe = pool.take();
  try {
    assertEquals(pipe.size, 256 * KiB);
    assertEquals(libc().fcntl(pipe.w, F_GETPIPE_SZ, 0), 256 * KiB);
    assertEquals(pool.capacity, 256 * KiB);
  } finally {
    pool.give(pipe, true);
    pool.close();
  }
  assertEquals(pool.open, 0);
  assertEquals(pool.capacity, 0);
});

Deno.test("past the budget, pipes are made at the small size", () => {
  if (maxPipe() < 1024 * KiB) {
    console.log("SKIP past the budget: pipe-max-size below 1 MiB here");
    return;
  }
  const pool = new PipePool({ size: 1024 * KiB, smallSize: 64 * KiB, budget: 2112 * KiB });
  const pipes = [pool.take(), pool.take(), pool.take()];
  try {
    assertEquals(pipes.map((p) => p.size), [1024 * KiB, 1024 * KiB, 64 * KiB]);
    assertEquals(libc().fcntl(pipes[2].w, F_GETPIPE_SZ, 0), 64 * KiB);
    assertEquals(pool.capacity, 2112 * KiB);
    // A big one given back and closed (bytes left in it) makes room for a big one again.
    pool.give(pipes.shift()!, false);
    const again = pool.take();
    pipes.push(again);
    assertEquals(again.size, 1024 * KiB);
  } finally {
    for (const p of pipes) pool.give(p, true);
    pool.close();
  }
  assertEquals(pool.capacity, 0);
});

Deno.test("empty pipes given back are lent again, beyond `keep` closed", () => {
  const pool = new PipePool({ size: 64 * KiB, keep: 1 });
  const a = pool.take();
  const b = pool.take();
  assertEquals(pool.lent, 2);
  pool.give(a, true);
  pool.give(b, true);
  // One kept, one closed.
  assertEquals(pool.open, 1);
  assertEquals(pool.lent, 0);
  const c = pool.take();
  ok(c.r === a.r || c.r === b.r, "the kept pipe was not lent again");
  assertEquals(pool.open, 1);
  pool.give(c, true);
  pool.close();
  assertEquals(pool.open, 0);
});
