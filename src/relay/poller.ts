/**
 * One epoll instance and the loop that serves it, for the relay's sockets.
 *
 * The loop keeps the JS event loop free and the thread hops few: under load events are
 * already waiting, so it takes them with a synchronous epoll_wait(0) for a few rounds in a
 * row; otherwise (and at least every few rounds, so timers and the packet loop run) it awaits
 * an epoll_wait run off the JS thread. An eventfd in the set wakes that wait when work is
 * deferred from outside the loop or the poller closes.
 *
 * Handlers are called with the ready events; work they cannot finish now (to be fair to other
 * connections) goes to {@link Poller.defer} and runs in the next round.
 *
 * @module
 */

import { libc } from "../../ffi/libc.ts";
import { errno, errnoText } from "../system/errno.ts";
import { logger } from "../system/log.ts";
import {
  EFD_CLOEXEC,
  EFD_NONBLOCK,
  EPOLL_CLOEXEC,
  EPOLL_CTL_ADD,
  EPOLL_CTL_DEL,
} from "../../ffi/linux.ts";

const log = logger("relay");

/** epoll event bits. */
export const Ready = {
  In: 0x1,
  Out: 0x4,
  Err: 0x8,
  Hup: 0x10,
  RdHup: 0x2000,
  /** Edge-triggered: reported once per change; the handler must go on until EAGAIN. */
  Edge: 0x80000000,
} as const;

// struct epoll_event is packed on x86-64: u32 events, u64 data.
const EVENT_SIZE = 12;
const MAX_EVENTS = 256;
// Synchronous rounds in a row before the loop awaits (and so yields to the event loop).
const SYNC_ROUNDS = 8;
// A dedicated thread's longest wait in epoll_wait before timers and messages get a turn.
const BLOCK_MS = 10;

// What a write to the eventfd adds: one wake-up.
const ONE = new BigUint64Array([1n]);

/** Called with the ready event bits of its fd. */
export type Handler = (events: number) => void;

/** An epoll set and its serving loop. */
export class Poller {
  readonly #ep: number;
  readonly #wake: number;
  // Indexed by fd (small integers). The generation tells a stale event for a closed fd from
  // one for a new socket that got the same number in the same round.
  #handlers: (Handler | undefined)[] = [];
  #generations = new Uint32Array(1024);
  #generation = 0;
  readonly #events = new Uint8Array(EVENT_SIZE * MAX_EVENTS);
  readonly #eventsView = new DataView(this.#events.buffer);
  readonly #ctl = new Uint8Array(EVENT_SIZE);
  readonly #ctlView = new DataView(this.#ctl.buffer);
  readonly #counter = new BigUint64Array(1);
  #deferred: (() => void)[] = [];
  #waiting = false;
  #closed = false;
  #done: Promise<void>;

  /**
   * `dedicated`: the thread has nothing else to serve but timers and messages (a relay
   * thread), so the loop waits in epoll_wait on the thread itself, at most {@link BLOCK_MS}
   * at a time, as a C server would; woken by the kernel directly, not through a helper thread
   * and the event loop.
   */
  constructor(
    private readonly dedicated = false,
    /**
     * No loop of its own: its owner waits with {@link Poller.waitNow} and
     * {@link Poller.waitOff} (the SYN gate's, driven by the packet loop with the queue's fd).
     */
    private readonly driven = false,
  ) {
    this.#ep = libc().epoll_create1(EPOLL_CLOEXEC);
    if (this.#ep < 0) throw new Error(`epoll_create1: ${errnoText(errno())}`);
    this.#wake = libc().eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (this.#wake < 0) {
      const e = errno();
      libc().close(this.#ep);
      throw new Error(`eventfd: ${errnoText(e)}`);
    }
    this.watch(this.#wake, Ready.In, () => libc().read(this.#wake, this.#counter, 8n));
    this.#done = driven ? Promise.resolve() : this.#run();
  }

  /**
   * A driven poller: waits up to `timeoutMs` on this thread (the kernel wakes it directly, no
   * helper thread) and calls the handlers of what is ready; the number of events.
   */
  waitNow(timeoutMs: number): number {
    if (this.#closed) return 0;
    const n = libc().epoll_wait(this.#ep, this.#events, MAX_EVENTS, timeoutMs);
    this.#dispatch(n);
    return n;
  }

  /** {@link Poller.waitNow} off the JS thread, so that the event loop runs meanwhile. */
  async waitOff(timeoutMs: number): Promise<number> {
    if (this.#closed) return 0;
    this.#waiting = true;
    const wait = libc().epoll_wait_async(this.#ep, this.#events, MAX_EVENTS, timeoutMs);
    this.#done = wait.then(() => {}, () => {});
    let n: number;
    try {
      n = await wait;
    } finally {
      this.#waiting = false;
    }
    if (this.#closed) return 0;
    this.#dispatch(n);
    return n;
  }

  /** Delivers `events` on `fd` to `handler` until {@link unwatch} or {@link forget}. */
  watch(fd: number, events: number, handler: Handler): void {
    if (fd >= this.#generations.length) {
      const grown = new Uint32Array(Math.max(fd + 1, this.#generations.length * 2));
      grown.set(this.#generations);
      this.#generations = grown;
    }
    const generation = this.#generation = (this.#generation + 1) >>> 0;
    this.#ctlView.setUint32(0, events >>> 0, true);
    this.#ctlView.setUint32(4, fd, true);
    this.#ctlView.setUint32(8, generation, true);
    if (libc().epoll_ctl(this.#ep, EPOLL_CTL_ADD, fd, this.#ctl) < 0) {
      throw new Error(`epoll_ctl ADD ${fd}: ${errnoText(errno())}`);
    }
    this.#generations[fd] = generation;
    this.#handlers[fd] = handler;
  }

  /** Hands the events of an fd already watched to another handler; the events stay. */
  handle(fd: number, handler: Handler): void {
    if (this.#handlers[fd] === undefined) throw new Error(`fd ${fd} is not watched`);
    this.#handlers[fd] = handler;
  }

  /** Stops delivering events for `fd`, which stays open. */
  unwatch(fd: number): void {
    if (this.#handlers[fd] === undefined) return;
    this.#handlers[fd] = undefined;
    libc().epoll_ctl(this.#ep, EPOLL_CTL_DEL, fd, this.#ctl);
  }

  /**
   * Stops delivering events for `fd` because it is about to be closed: closing removes it
   * from the epoll set, so this spares the epoll_ctl call.
   */
  forget(fd: number): void {
    this.#handlers[fd] = undefined;
  }

  /** Runs `task` in the loop's next round. */
  defer(task: () => void): void {
    this.#deferred.push(task);
    if (this.#waiting) this.#wakeUp();
  }

  /** Stops the loop (handlers are not called again); resolves when it has ended. */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#wakeUp();
      // A driven poller's last wait ends at the wake-up; then its descriptors go.
      if (this.driven) {
        this.#done = this.#done.then(() => {
          this.#handlers = [];
          libc().close(this.#wake);
          libc().close(this.#ep);
        });
      }
    }
    return this.#done;
  }

  #wakeUp(): void {
    libc().write(this.#wake, ONE, 8n);
  }

  async #run(): Promise<void> {
    let rounds = 0;
    try {
      if (this.dedicated) await this.#runDedicated();
      while (!this.#closed) {
        let n = 0;
        if (rounds < SYNC_ROUNDS) {
          n = libc().epoll_wait(this.#ep, this.#events, MAX_EVENTS, 0);
        }
        if (n > 0 || (this.#deferred.length > 0 && rounds < SYNC_ROUNDS)) {
          rounds++;
        } else {
          rounds = 0;
          this.#waiting = true;
          try {
            const timeout = this.#deferred.length > 0 ? 0 : -1;
            n = await libc().epoll_wait_async(this.#ep, this.#events, MAX_EVENTS, timeout);
          } finally {
            this.#waiting = false;
          }
          if (this.#closed) break;
        }
        this.#dispatch(n);
      }
    } finally {
      this.#handlers = [];
      libc().close(this.#wake);
      libc().close(this.#ep);
    }
  }

  /**
   * The dedicated loop: epoll_wait on the thread itself, the kernel waking it directly, for up
   * to BLOCK_MS. Busy, it lets the event loop take a turn (messages; timers at the runtime's
   * own pace) every SYNC_ROUNDS rounds through a message to itself, which, unlike a timer, is
   * not clamped to 4 ms. Idle for BLOCK_MS, it waits as the shared loop does, off the thread,
   * so that the runtime parks and timers run on time.
   */
  async #runDedicated(): Promise<void> {
    const turn = eventLoopTurn();
    let rounds = 0;
    try {
      while (!this.#closed) {
        const timeout = this.#deferred.length > 0 ? 0 : BLOCK_MS;
        let n = libc().epoll_wait(this.#ep, this.#events, MAX_EVENTS, timeout);
        if (n === 0 && this.#deferred.length === 0) {
          rounds = 0;
          this.#waiting = true;
          try {
            n = await libc().epoll_wait_async(this.#ep, this.#events, MAX_EVENTS, -1);
          } finally {
            this.#waiting = false;
          }
          if (this.#closed) break;
        } else if (++rounds >= SYNC_ROUNDS) {
          rounds = 0;
          await turn.next();
        }
        this.#dispatch(n);
      }
    } finally {
      turn.close();
    }
  }

  #dispatch(n: number): void {
    for (let i = 0; i < n; i++) {
      const at = i * EVENT_SIZE;
      const fd = this.#eventsView.getUint32(at + 4, true);
      const handler = this.#handlers[fd];
      if (handler === undefined) continue;
      if (this.#generations[fd] !== this.#eventsView.getUint32(at + 8, true)) continue;
      try {
        handler(this.#eventsView.getUint32(at, true));
      } catch (e) {
        log.error("socket event handler failed: {error}", { error: String(e) });
      }
    }
    const tasks = this.#deferred;
    if (tasks.length === 0) return;
    this.#deferred = [];
    for (const task of tasks) {
      try {
        task();
      } catch (e) {
        log.error("deferred socket work failed: {error}", { error: String(e) });
      }
    }
  }
}

/** Turns of the event loop through messages to itself (see {@link Poller}'s dedicated loop). */
function eventLoopTurn(): { next(): Promise<void>; close(): void } {
  const channel = new MessageChannel();
  let resume = () => {};
  channel.port1.onmessage = () => resume();
  return {
    next: () =>
      new Promise<void>((resolve) => {
        resume = resolve;
        channel.port2.postMessage(0);
      }),
    close: () => {
      channel.port1.close();
      channel.port2.close();
    },
  };
}
