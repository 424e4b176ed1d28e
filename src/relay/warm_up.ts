/**
 * Loopback traffic for a relay's warm-up: a client that opens connections to the relay's
 * gateway listener on 127.0.0.1, sends a small request on each, half-closes, and reads the
 * answer to its end, and an origin the relay connects to, which answers each request and
 * closes. Both run on the relay's own poller, so the relay serves them with the same code and
 * the same events as its clients: accept, transparent connect, pump, FIN both ways, close.
 * The client and the relay close first, so the TIME_WAIT entries left are on ports the kernel
 * picked at connect, which do not keep other connections from those ports.
 *
 * Why: V8 optimises a function only after hundreds of calls, and a relay started cold served
 * its first seconds of clients at 0.75-0.8x its later rate (README, Performance). This spends
 * that time before the steering sends any client to the relay.
 *
 * Bounded in connections and time; every socket it opened is closed when it resolves.
 *
 * @example
 * ```ts ignore
 * const origin = new WarmUpOrigin(poller);
 * // ... let the relay send connections to its gateway port to origin.port ...
 * const done = await warmUpClient(poller, gatewayPort, warmUpLimits(2000));
 * origin.close();
 * ```
 *
 * @module
 */

import { libc } from "../../ffi/libc.ts";
import { Errno, errno } from "../system/errno.ts";
import { logger } from "../system/log.ts";
import { type Poller, Ready } from "./poller.ts";
import {
  acceptFrom,
  bindTo,
  closeFd,
  listenOn,
  localEndpoint,
  resetFd,
  shutdownWrite,
  startConnect,
  tcpSocket,
} from "./socket.ts";

/** 127.0.0.1 as a number. */
export const LOOPBACK = 0x7f000001;

const REQUEST = new TextEncoder().encode(
  "GET /warm-up HTTP/1.1\r\nHost: krelay\r\nConnection: close\r\n\r\n",
);
const ANSWER = new TextEncoder().encode(
  "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n" + "k".repeat(100),
);
const EVENTS = Ready.In | Ready.Out | Ready.RdHup | Ready.Edge;
const MSG_DONTWAIT = 0x40;
const MSG_NOSIGNAL = 0x4000;

/** How much loopback traffic to make. */
export interface WarmUpLimits {
  /** Connections in all. */
  connections: number;
  /** Connections open at once. */
  concurrency: number;
  /** No connection is started after this many milliseconds; the rest are closed after twice it. */
  budgetMs: number;
}

/** The limits for `connections` at start: 16 at a time, new ones for at most a second. */
export function warmUpLimits(connections: number): WarmUpLimits {
  return { connections, concurrency: 16, budgetMs: 1000 };
}

/** What a warm-up did. */
export interface WarmUpResult {
  /** Connections that got the whole answer. */
  answered: number;
  /** Connections that failed (reset, refused, or closed at the deadline). */
  failed: number;
  elapsedMs: number;
}

/** The origin: reads a request to the client's FIN, then answers and closes the connection. */
export class WarmUpOrigin {
  readonly #listener: number;
  readonly #open = new Set<number>();
  readonly #buffer = new Uint8Array(4096);
  /** The port it listens on (127.0.0.1). */
  readonly port: number;

  constructor(private readonly poller: Poller) {
    const fd = tcpSocket();
    try {
      if (bindTo(fd, LOOPBACK, 0) !== 0) throw new Error("no loopback port for the warm-up");
      listenOn(fd, 1024);
      this.port = localEndpoint(fd).port;
      poller.watch(fd, Ready.In, () => this.#accept());
    } catch (e) {
      closeFd(fd);
      throw e;
    }
    this.#listener = fd;
  }

  #accept(): void {
    for (;;) {
      const got = acceptFrom(this.#listener);
      if (typeof got === "number") return;
      const fd = got.fd;
      this.#open.add(fd);
      this.poller.watch(fd, Ready.In | Ready.RdHup | Ready.Edge, () => this.#serve(fd));
      this.#serve(fd);
    }
  }

  #serve(fd: number): void {
    for (;;) {
      const n = libc().read(fd, this.#buffer, BigInt(this.#buffer.length));
      if (n > 0) continue;
      if (n < 0 && errno() === Errno.EAGAIN) return;
      break;
    }
    // The request and the client's FIN are in (or the connection failed): answer and close.
    // The relay closed first, so no TIME_WAIT is left on this listener's port, which the kernel
    // took from ip_local_port_range and would otherwise keep from the relay's connects.
    libc().send(fd, ANSWER, BigInt(ANSWER.length), MSG_DONTWAIT | MSG_NOSIGNAL);
    this.#drop(fd);
  }

  #drop(fd: number): void {
    if (!this.#open.delete(fd)) return;
    this.poller.forget(fd);
    closeFd(fd);
  }

  /** Closes the listener and any connection still open. */
  close(): void {
    this.poller.forget(this.#listener);
    closeFd(this.#listener);
    for (const fd of [...this.#open]) this.#drop(fd);
  }
}

/**
 * Opens connections to 127.0.0.1:`port` and reads each answer to its end, up to the limits;
 * resolves when every connection it opened is closed.
 */
export function warmUpClient(
  poller: Poller,
  port: number,
  limits: WarmUpLimits,
): Promise<WarmUpResult> {
  const started = performance.now();
  const buffer = new Uint8Array(4096);
  const open = new Map<number, { sent: boolean; got: number }>();
  const result: WarmUpResult = { answered: 0, failed: 0, elapsedMs: 0 };
  let opened = 0;
  let finish = () => {};
  const finished = new Promise<void>((resolve) => finish = resolve);

  const end = (fd: number, answered: boolean) => {
    if (!open.delete(fd)) return;
    poller.forget(fd);
    if (answered) {
      result.answered++;
      closeFd(fd);
    } else {
      result.failed++;
      resetFd(fd);
    }
    // Deferred: a connect that fails at once must not recurse through open().
    poller.defer(fill);
  };

  const onEvents = (fd: number, events: number) => {
    const c = open.get(fd);
    if (c === undefined) return;
    if (!c.sent && events & Ready.Out) {
      c.sent = true;
      const n = libc().send(fd, REQUEST, BigInt(REQUEST.length), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n !== REQUEST.length) return end(fd, false);
      // Half-closed at once: the FIN passes through the relay, and the origin answers on it.
      shutdownWrite(fd);
    }
    if (!(events & (Ready.In | Ready.RdHup | Ready.Err | Ready.Hup))) return;
    for (;;) {
      const n = libc().read(fd, buffer, BigInt(buffer.length));
      if (n > 0) {
        c.got += n;
        continue;
      }
      if (n === 0) return end(fd, c.got === ANSWER.length);
      if (errno() === Errno.EAGAIN) return;
      return end(fd, false);
    }
  };

  const openOne = (): boolean => {
    const fd = tcpSocket();
    const e = startConnect(fd, { address: LOOPBACK, port });
    if (e !== 0 && e !== Errno.EINPROGRESS) {
      closeFd(fd);
      result.failed++;
      return false;
    }
    open.set(fd, { sent: false, got: 0 });
    poller.watch(fd, EVENTS, (events) => onEvents(fd, events));
    return true;
  };

  function fill(): void {
    const now = performance.now();
    while (
      open.size < limits.concurrency && opened < limits.connections &&
      now - started < limits.budgetMs
    ) {
      opened++;
      // A refused connect (nothing listens, loopback down) will not go better: stop opening.
      if (!openOne()) opened = limits.connections;
    }
    if (open.size === 0) finish();
  }

  // Whatever is still open at twice the budget is reset: the warm-up never holds up a start.
  const deadline = setTimeout(() => {
    for (const fd of [...open.keys()]) end(fd, false);
    finish();
  }, 2 * limits.budgetMs);
  fill();
  return finished.then(() => {
    clearTimeout(deadline);
    result.elapsedMs = performance.now() - started;
    return result;
  });
}

/** A relay that can warm up (see `TcpRelay.warmUp`). */
export interface WarmsUp {
  warmUp(limits: WarmUpLimits): Promise<WarmUpResult | undefined>;
}

/**
 * Warms `relay` up with `connections` loopback connections (none when 0 or undefined) and logs
 * what it did. A warm-up that fails is logged and ignored: the relay works cold as well.
 */
export async function warmUp(relay: WarmsUp, connections = 0): Promise<void> {
  if (connections <= 0) return;
  const log = logger("relay");
  try {
    const r = await relay.warmUp(warmUpLimits(connections));
    if (r === undefined) return;
    log.info("warmed up with {answered} loopback connections in {ms} ms ({failed} failed)", {
      answered: r.answered,
      failed: r.failed,
      ms: Math.round(r.elapsedMs),
    });
  } catch (e) {
    log.warning("no warm-up: {error}", { error: (e as Error).message });
  }
}
