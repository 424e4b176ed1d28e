import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { libc } from "../../ffi/libc.ts";
import { Poller, Ready } from "./poller.ts";

const ONE = new BigUint64Array([1n]);
const EFD_NONBLOCK = 0o4000;

/** An eventfd made readable `times` times, its events counted by the poller's handler. */
async function deliversAndLetsTimersRun(poller: Poller): Promise<void> {
  const fd = libc().eventfd(0, EFD_NONBLOCK);
  const counter = new BigUint64Array(1);
  let seen = 0;
  poller.watch(fd, Ready.In, () => {
    libc().read(fd, counter, 8n);
    seen++;
  });
  for (let i = 0; i < 5; i++) {
    libc().write(fd, ONE, 8n);
    // A timer fires while the poller runs: the loop gives the event loop its turns.
    await new Promise((r) => setTimeout(r, 15));
  }
  assertEquals(seen, 5);
  poller.forget(fd);
  libc().close(fd);
  await poller.close();
}

Deno.test("Poller delivers socket events and leaves the event loop free", async () => {
  await deliversAndLetsTimersRun(new Poller());
});

Deno.test("Poller, dedicated, waits in epoll_wait itself and still gives timers their turns", async () => {
  await deliversAndLetsTimersRun(new Poller(true));
});

Deno.test("Poller, dedicated, runs deferred work in its next round and closes promptly", async () => {
  const poller = new Poller(true);
  let ran = false;
  await new Promise((r) => setTimeout(r, 5));
  poller.defer(() => (ran = true));
  await new Promise((r) => setTimeout(r, 30));
  assertEquals(ran, true);
  const t0 = performance.now();
  await poller.close();
  // At most one wait of 10 ms, then the loop sees the close.
  assertEquals(performance.now() - t0 < 200, true);
});

Deno.test("Poller, dedicated, never idle, still lets timers run", async () => {
  const poller = new Poller(true);
  let rounds = 0;
  let busy = true;
  // Deferred work that defers itself: the loop always has something to do.
  const spin = () => {
    rounds++;
    if (busy) poller.defer(spin);
  };
  poller.defer(spin);
  let fired = 0;
  const timer = setInterval(() => fired++, 20);
  await new Promise((r) => setTimeout(r, 400));
  clearInterval(timer);
  busy = false;
  await poller.close();
  assertEquals(rounds > 100, true);
  assertEquals(fired >= 5, true, `the 20 ms interval fired ${fired} times in 400 ms`);
});
