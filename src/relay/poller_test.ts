import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { libc } from "../../ffi/libc.ts";
import { waitFor } from "../lab/wait.ts";
import { Poller, Ready } from "./poller.ts";

const ONE = new BigUint64Array([1n]);
const EFD_NONBLOCK = 0o4000;

/** An eventfd made readable `times` times, its events counted by the poller's handler. */
async function deliversAndLetsTimersRun(poller: Poller): Promise<void> {
  const fd = libc().eventfd(0, EFD_NONBLOCK);
  const counter = new BigUint64Array(1);
  let seen = 0;
  poller.watch(fd, Ready.In, () => {
    // Writes made before the poller's turn add up in the counter: count what it holds.
    if (libc().read(fd, counter, 8n) === 8) seen += Number(counter[0]);
  });
  for (let i = 0; i < 5; i++) {
    libc().write(fd, ONE, 8n);
    // A timer fires while the poller runs: the loop gives the event loop its turns.
    await new Promise((r) => setTimeout(r, 15));
  }
  // All delivered, however late a loaded machine gives the poller its turns.
  await waitFor(() => seen >= 5, { intervalMs: 10 }).catch(() => {});
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
  await waitFor(() => ran, { intervalMs: 10 }).catch(() => {});
  assertEquals(ran, true);
  const t0 = performance.now();
  await poller.close();
  // At most one wait of 10 ms, then the loop sees the close (the bound leaves room for a loaded
  // machine; a loop that missed the close would wait forever).
  assertEquals(performance.now() - t0 < 2_000, true);
});

Deno.test("Poller, dedicated, never idle, still lets timers run", async () => {
  const poller = new Poller(true);
  let rounds = 0;
  // Deferred work that defers itself, for up to 10 s: the loop always has something to do.
  const end = performance.now() + 10_000;
  let spinning = true;
  const spin = () => {
    rounds++;
    if (spinning && performance.now() < end) poller.defer(spin);
    else spinning = false;
  };
  poller.defer(spin);
  // The interval's fifth turn must come while the loop is still spinning: a loop that starved
  // timers would let it run only once the spinning stopped.
  let fired = 0;
  let firedWhileBusy = false;
  let timer: ReturnType<typeof setInterval> | undefined;
  await new Promise<void>((resolve) => {
    timer = setInterval(() => {
      if (++fired < 5) return;
      firedWhileBusy = spinning;
      resolve();
    }, 20);
  });
  clearInterval(timer);
  spinning = false;
  await poller.close();
  assertEquals(rounds > 100, true);
  assertEquals(firedWhileBusy, true, `the 20 ms interval fired 5 times only after the spinning`);
});

Deno.test("Poller, driven, delivers only when its owner waits, on the thread or off it", async () => {
  const poller = new Poller(false, true);
  const fd = libc().eventfd(0, EFD_NONBLOCK);
  const counter = new BigUint64Array(1);
  let seen = 0;
  poller.watch(fd, Ready.In, () => {
    if (libc().read(fd, counter, 8n) === 8) seen += Number(counter[0]);
  });
  libc().write(fd, ONE, 8n);
  // No loop of its own: nothing is delivered until a wait.
  await new Promise((r) => setTimeout(r, 20));
  assertEquals(seen, 0);
  assertEquals(poller.waitNow(0), 1);
  assertEquals([seen, poller.waitNow(0)], [1, 0]);
  // Off the thread: a timer writes while the wait is under way.
  setTimeout(() => libc().write(fd, ONE, 8n), 10);
  assertEquals(await poller.waitOff(2_000), 1);
  assertEquals(seen, 2);
  // Closing ends a wait under way at once.
  const waiting = poller.waitOff(10_000);
  const started = performance.now();
  await poller.close();
  assertEquals(await waiting, 0);
  assertEquals(performance.now() - started < 5_000, true);
  poller.forget(fd);
  libc().close(fd);
});
