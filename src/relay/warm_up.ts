/**
 * Loopback traffic for a relay's warm-up: a client that opens connections to the relay's
 * gateway listener on 127.0.0.1 and reads each answer to its end, and an origin the relay
 * connects to, which answers each request and closes. Both run on the relay's own poller, so
 * the relay serves them with the same code and the same events as its clients: accept,
 * transparent connect, pump, FIN both ways, close. Three kinds of connection, in turn, so that
 * every path a client's connection takes is compiled before the first client:
 *
 * - the origin closes first, as an HTTP server does after `Connection: close` (the relay passes
 *   the server's FIN on first, then the client's);
 * - the client half-closes after its request and the origin answers on that FIN (the client's
 *   FIN first);
 * - one in sixteen is bulk: a 384 KiB answer sent in bursts, so that the pump fills its copy
 *   buffer, takes its splice path and finds the socket drained between bursts;
 * - one in 32 is reset by the client after its request (the pump passes the reset on).
 *
 * The side that closes first keeps the connection's TIME_WAIT. The origin's is on its
 * listener's port, which keeps that port from connects for a minute, so the origin listens on a
 * port above the kernel's ephemeral range, out of the way of the relay's connects. Where there
 * is none (the range reaches 65535), it takes one from the range and only the client closes
 * first.
 *
 * Why: V8 optimises a function only after hundreds of calls, and a relay started cold served
 * its first seconds of clients at 0.75-0.8x its later rate (docs/performance.md). This spends
 * that time before the steering sends any client to the relay.
 *
 * Bounded in connections and time; every socket it opened is closed when it resolves.
 *
 * @example
 * ```ts ignore
 * const origin = new WarmUpOrigin(poller);
 * // ... let the relay send connections to its gateway port to origin.port ...
 * const done = await warmUpClient(poller, gatewayPort, warmUpLimits(2000), origin.closesFirst);
 * origin.close();
 * ```
 *
 * @module
 */

import { libc } from "../../ffi/libc.ts";
import { kernelEphemeralRange } from "../system/ephemeral_ports.ts";
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

// The kinds of connection; the request's path says which to the origin.
/** The origin answers and closes first; the client closes on its EOF. */
const ORIGIN_CLOSES = 0x6f; // "o"
/** The client half-closes after its request; the origin answers on that FIN and closes. */
const CLIENT_CLOSES = 0x63; // "c"
/** As CLIENT_CLOSES, with an answer of BULK_BYTES in bursts. */
const BULK = 0x62; // "b"
/** The client resets its connection once its request is sent. */
const RESET = 0x72; // "r"

const request = (kind: number) =>
  new TextEncoder().encode(
    `GET /${String.fromCharCode(kind)} HTTP/1.1\r\nHost: krelay\r\nConnection: close\r\n\r\n`,
  );
const REQUESTS = new Map([ORIGIN_CLOSES, CLIENT_CLOSES, BULK, RESET].map((k) => [k, request(k)]));
/** All requests are this long; the kind is the byte after "GET /". */
const REQUEST_LENGTH = request(BULK).length;
const KIND_AT = 5;
const ANSWER = new TextEncoder().encode(
  "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n" + "k".repeat(100),
);
/** The origin sends a bulk answer a burst per poller round, each twice the pump's copy buffer. */
const BULK_BURST = 128 * 1024;
const BULK_BYTES = 3 * BULK_BURST;
const EVENTS = Ready.In | Ready.Out | Ready.RdHup | Ready.Edge;
const MSG_DONTWAIT = 0x40;
const MSG_NOSIGNAL = 0x4000;
const SEND_FLAGS = MSG_DONTWAIT | MSG_NOSIGNAL;
const PORT_TRIES = 32;

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
  /** Of those, the ones the origin closed first. */
  originClosed: number;
  /** Of those, the bulk ones. */
  bulk: number;
  /** Connections the client reset, as it meant to. */
  reset: number;
  /** Connections that failed (reset by the relay or the origin, refused, or closed at the deadline). */
  failed: number;
  elapsedMs: number;
}

/**
 * Binds `fd` to 127.0.0.1 on a port above the kernel's ephemeral range, from a random start;
 * false if the range leaves none or none of the ports tried was free.
 */
function bindAboveEphemeral(fd: number): boolean {
  const range = kernelEphemeralRange();
  if (range === undefined || range[1] >= 65535) return false;
  const first = range[1] + 1;
  const span = 65536 - first;
  const start = Math.floor(Math.random() * span);
  for (let i = 0; i < Math.min(PORT_TRIES, span); i++) {
    if (bindTo(fd, LOOPBACK, first + (start + i) % span) === 0) return true;
  }
  return false;
}

/** An origin's connection: the request read so far and the answer's progress. */
interface Served {
  kind: number;
  got: number;
  eof: boolean;
  answer: Uint8Array<ArrayBuffer> | undefined;
  sent: number;
}

/** The origin: reads a request, answers it by its kind (see the module documentation), closes. */
export class WarmUpOrigin {
  readonly #listener: number;
  readonly #open = new Map<number, Served>();
  readonly #buffer = new Uint8Array(4096);
  readonly #bulk = new Uint8Array(BULK_BYTES).fill(0x6b);
  /** The port it listens on (127.0.0.1). */
  readonly port: number;
  /** Whether it may close first: its port is out of the kernel's ephemeral range. */
  readonly closesFirst: boolean;

  constructor(private readonly poller: Poller) {
    const fd = tcpSocket();
    try {
      this.closesFirst = bindAboveEphemeral(fd);
      if (!this.closesFirst && bindTo(fd, LOOPBACK, 0) !== 0) {
        throw new Error("no loopback port for the warm-up");
      }
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
      this.#open.set(fd, { kind: 0, got: 0, eof: false, answer: undefined, sent: 0 });
      this.poller.watch(fd, EVENTS, () => this.#serve(fd));
      this.#serve(fd);
    }
  }

  #serve(fd: number): void {
    const c = this.#open.get(fd);
    if (c === undefined) return;
    while (!c.eof) {
      const n = libc().read(fd, this.#buffer, BigInt(this.#buffer.length));
      if (n > 0) {
        if (c.got <= KIND_AT && c.got + n > KIND_AT) c.kind = this.#buffer[KIND_AT - c.got];
        c.got += n;
      } else if (n === 0) {
        c.eof = true;
      } else if (errno() === Errno.EAGAIN) {
        break;
      } else {
        return this.#drop(fd);
      }
    }
    if (c.answer === undefined) {
      // The client that closes first is answered on its FIN; otherwise, on the whole request.
      if (c.kind === ORIGIN_CLOSES ? c.got < REQUEST_LENGTH : !c.eof) return;
      c.answer = c.kind === BULK ? this.#bulk : ANSWER;
    }
    // A bulk answer goes a burst at a time, the next one in the poller's next round.
    const until = c.kind === BULK
      ? Math.min(c.sent + BULK_BURST, c.answer.length)
      : c.answer.length;
    while (c.sent < until) {
      const rest = c.answer.subarray(c.sent, until);
      const n = libc().send(fd, rest, BigInt(rest.length), SEND_FLAGS);
      if (n < 0) {
        if (errno() === Errno.EAGAIN) return;
        return this.#drop(fd);
      }
      c.sent += n;
    }
    if (c.sent < c.answer.length) this.poller.defer(() => this.#serve(fd));
    else this.#drop(fd);
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
    for (const fd of [...this.#open.keys()]) this.#drop(fd);
  }
}

/** The kind of the `i`th connection (see the module documentation). */
function kindOf(i: number, originMayClose: boolean): number {
  if (i % 32 === 31) return RESET;
  if (i % 16 === 7) return BULK;
  return originMayClose && i % 2 === 0 ? ORIGIN_CLOSES : CLIENT_CLOSES;
}

/** A client's connection: its kind and the answer's bytes read so far. */
interface Asking {
  kind: number;
  sent: boolean;
  got: number;
}

/**
 * Opens connections to 127.0.0.1:`port` and reads each answer to its end, up to the limits;
 * resolves when every connection it opened is closed. With `originMayClose` (the origin's
 * `closesFirst`), half of them leave the first FIN to the origin.
 */
export function warmUpClient(
  poller: Poller,
  port: number,
  limits: WarmUpLimits,
  originMayClose = false,
): Promise<WarmUpResult> {
  const started = performance.now();
  const buffer = new Uint8Array(64 * 1024);
  const open = new Map<number, Asking>();
  const result: WarmUpResult = {
    answered: 0,
    originClosed: 0,
    bulk: 0,
    reset: 0,
    failed: 0,
    elapsedMs: 0,
  };
  let opened = 0;
  let finish = () => {};
  const finished = new Promise<void>((resolve) => finish = resolve);

  /** Ends a connection: closed once answered, else reset (as meant for RESET, or failed). */
  const end = (fd: number, c: Asking, how: "answered" | "reset" | "failed") => {
    if (!open.delete(fd)) return;
    poller.forget(fd);
    result[how]++;
    if (how === "answered") {
      if (c.kind === ORIGIN_CLOSES) result.originClosed++;
      if (c.kind === BULK) result.bulk++;
      closeFd(fd);
    } else {
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
      const req = REQUESTS.get(c.kind)!;
      const n = libc().send(fd, req, BigInt(req.length), SEND_FLAGS);
      if (n !== req.length) return end(fd, c, "failed");
      if (c.kind === RESET) return end(fd, c, "reset");
      // The FIN passes through the relay, and the origin answers on it.
      if (c.kind !== ORIGIN_CLOSES) shutdownWrite(fd);
    }
    if (!(events & (Ready.In | Ready.RdHup | Ready.Err | Ready.Hup))) return;
    for (;;) {
      const n = libc().read(fd, buffer, BigInt(buffer.length));
      if (n > 0) {
        c.got += n;
        continue;
      }
      if (n === 0) {
        const whole = c.got === (c.kind === BULK ? BULK_BYTES : ANSWER.length);
        return end(fd, c, whole ? "answered" : "failed");
      }
      if (errno() === Errno.EAGAIN) return;
      return end(fd, c, "failed");
    }
  };

  const openOne = (kind: number): boolean => {
    const fd = tcpSocket();
    const e = startConnect(fd, { address: LOOPBACK, port });
    if (e !== 0 && e !== Errno.EINPROGRESS) {
      closeFd(fd);
      result.failed++;
      return false;
    }
    open.set(fd, { kind, sent: false, got: 0 });
    poller.watch(fd, EVENTS, (events) => onEvents(fd, events));
    return true;
  };

  function fill(): void {
    const now = performance.now();
    while (
      open.size < limits.concurrency && opened < limits.connections &&
      now - started < limits.budgetMs
    ) {
      // A refused connect (nothing listens, loopback down) will not go better: stop opening.
      if (!openOne(kindOf(opened++, originMayClose))) opened = limits.connections;
    }
    if (open.size === 0) finish();
  }

  // Whatever is still open at twice the budget is reset: the warm-up never holds up a start.
  const deadline = setTimeout(() => {
    for (const [fd, c] of [...open]) end(fd, c, "failed");
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
    log.info(
      "warmed up with {answered} loopback connections ({originClosed} closed by the origin " +
        "first, {bulk} bulk) and {reset} reset in {ms} ms ({failed} failed)",
      {
        answered: r.answered,
        originClosed: r.originClosed,
        bulk: r.bulk,
        reset: r.reset,
        failed: r.failed,
        ms: Math.round(r.elapsedMs),
      },
    );
  } catch (e) {
    log.warning("no warm-up: {error}", { error: (e as Error).message });
  }
}
