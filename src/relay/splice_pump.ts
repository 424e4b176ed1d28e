/**
 * The TCP relay's byte pump: moves bytes between the client's socket and the relay's socket to
 * the real server, both ways, with splice(2) through a borrowed pipe, so the bytes never enter
 * user space. It keeps half-close, applies backpressure (a direction reads only once its pipe
 * is drained into the other socket), passes resets through, ends idle connections and can be
 * aborted; it always resolves with how the connection ended and the bytes moved each way.
 *
 * - A FIN read on one side is passed on (shutdown SHUT_WR) once everything before it is
 *   written; the other direction keeps flowing until it ends too. Then both sockets are closed
 *   with nothing unread (FIN, no RST) and the result is "closed".
 * - A reset on one side resets the other at once (SO_LINGER 0); any other error, the idle
 *   timeout and the abort signal reset both.
 * - The pump owns both sockets: when it resolves they are closed and unwatched, its pipes
 *   returned and its timer cleared.
 *
 * @example Relaying an accepted client fd to a connected server fd
 * ```ts ignore
 * const poller = new Poller();
 * const pipes = new PipePool(256 * 1024);
 * const result = await splicePump(poller, pipes, clientFd, serverFd, { idleTimeoutMs: 300_000 });
 * console.log(result.reason, result.bytesToServer, result.bytesToClient);
 * ```
 *
 * @module
 */

import { libc } from "../../ffi/libc.ts";
import { Errno, errno, errnoName, errnoText } from "../system/errno.ts";
import type { Pipe, PipePool } from "./pipe_pool.ts";
import { type Poller, Ready } from "./poller.ts";
import { closeFd, pendingError, resetFd, shutdownWrite } from "./socket.ts";

/** How a pumped connection ended. */
export type PumpEndReason =
  /** Both directions ended with FIN and both sockets were closed gracefully. */
  | "closed"
  /** The client reset (or broke) its connection; the server side was reset. */
  | "reset-by-client"
  /** The server reset (or broke) its connection; the client side was reset. */
  | "reset-by-server"
  /** No byte moved either way for `idleTimeoutMs`; both sides were reset. */
  | "idle"
  /** The caller's signal aborted; both sides were reset. */
  | "aborted"
  /** Any other error; both sides were reset. */
  | "error";

/** Bytes relayed so far, updated live while the pump runs (read it for status displays). */
export interface PumpCounters {
  /** Bytes read from the client and written to the server's socket. */
  toServer: number;
  /** Bytes read from the server and written to the client's socket. */
  toClient: number;
}

/** Options of {@linkcode splicePump}. */
export interface PumpOptions {
  /** Reset both sides when no byte has moved either way for this long; 0 (default) = never. */
  idleTimeoutMs?: number;
  /** Aborting it resets both sides and ends the pump with "aborted". */
  signal?: AbortSignal;
  /** Counters to update live; a fresh zeroed object when omitted. */
  counters?: PumpCounters;
}

/** How the pump ended and what it moved; {@linkcode splicePump} resolves with it, never rejects. */
export interface PumpResult {
  reason: PumpEndReason;
  /** Bytes relayed client -> server and server -> client in all. */
  bytesToServer: number;
  bytesToClient: number;
  /** The error behind "reset-by-*" and "error", prefixed with the side it came from. */
  message?: string;
}

/** A zeroed set of counters, to pass as {@linkcode PumpOptions.counters} and read live. */
export function newPumpCounters(): PumpCounters {
  return { toServer: 0, toClient: 0 };
}

/** errno values that mean the peer reset or broke the connection (not a local failure). */
const RESET_ERRNOS: ReadonlySet<number> = new Set([
  Errno.ECONNRESET,
  Errno.EPIPE,
  Errno.ECONNABORTED,
  Errno.ENOTCONN,
  Errno.ETIMEDOUT,
  Errno.EHOSTUNREACH,
  Errno.ENETUNREACH,
]);

const SPLICE_F_MOVE = 1;
const SPLICE_F_NONBLOCK = 2;
const FLAGS = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;
// Splice calls one direction makes per wake-up before it lets other connections go first.
const SPINS = 16;

type Side = "client" | "server";

/** One direction: bytes read from `from`, written to `to`. */
interface Direction {
  readonly from: number;
  readonly to: number;
  readonly fromSide: Side;
  readonly toSide: Side;
  pipe: Pipe | undefined;
  /** Bytes in the pipe, read but not yet written. */
  pending: number;
  /** EOF read from `from`. */
  eof: boolean;
  /** The FIN was passed on to `to`. */
  done: boolean;
  /** Already queued in the poller's next round. */
  deferred: boolean;
}

const WAIT = 0;
const DONE = 1;
const FAILED = 2;

/**
 * Relays between two connected non-blocking sockets (`client`, `server`) until both directions
 * are done, then closes them. The pump takes ownership of both fds.
 */
export function splicePump(
  poller: Poller,
  pipes: PipePool,
  client: number,
  server: number,
  opts: PumpOptions = {},
): Promise<PumpResult> {
  const counters = opts.counters ?? newPumpCounters();
  const signal = opts.signal;
  const up: Direction = newDirection(client, server, "client", "server");
  const down: Direction = newDirection(server, client, "server", "client");
  let outcome: { reason: PumpEndReason; message?: string } | undefined;
  let idleTimer: ReturnType<typeof setInterval> | undefined;
  let resolve!: (r: PumpResult) => void;
  const result = new Promise<PumpResult>((r) => (resolve = r));

  /** Runs one direction until it must wait, is done, or has had its share of this round. */
  function step(d: Direction): void {
    if (outcome !== undefined || d.done) return;
    const r = move(d);
    if (r === DONE) {
      if (up.done && down.done) finish("closed");
    } else if (r > FAILED && !d.deferred) {
      // Still going after its share: let the other connections have a turn first.
      d.deferred = true;
      poller.defer(() => {
        d.deferred = false;
        step(d);
      });
    }
  }

  /** WAIT, DONE, FAILED, or (more to do) a number above FAILED. */
  function move(d: Direction): number {
    for (let i = 0; i < SPINS; i++) {
      if (d.pending > 0) {
        const n = libc().splice(d.pipe!.r, null, d.to, null, d.pending, FLAGS);
        if (n < 0) {
          const e = errno();
          if (e === Errno.EAGAIN) return WAIT;
          return fail(d.toSide, e);
        }
        d.pending -= n;
        if (d.from === client) counters.toServer += n;
        else counters.toClient += n;
        continue;
      }
      if (d.eof) {
        release(d);
        const e = shutdownWrite(d.to);
        if (e !== 0) return fail(d.toSide, e);
        d.done = true;
        return DONE;
      }
      if (d.pipe === undefined) {
        try {
          d.pipe = pipes.take();
        } catch (e) {
          finish("error", `relay: ${(e as Error).message}`);
          return FAILED;
        }
      }
      const n = libc().splice(d.from, null, d.pipe.w, null, pipes.size, FLAGS);
      if (n > 0) d.pending = n;
      else if (n === 0) d.eof = true;
      else {
        const e = errno();
        if (e !== Errno.EAGAIN) return fail(d.fromSide, e);
        // Nothing to read: the (empty) pipe goes back, an idle connection holds none.
        release(d);
        return WAIT;
      }
    }
    return FAILED + 1;
  }

  function release(d: Direction): void {
    if (d.pipe !== undefined) pipes.give(d.pipe, d.pending === 0);
    d.pipe = undefined;
  }

  function fail(side: Side, e: number): number {
    const message = `${side}: ${errnoText(e)}`;
    if (RESET_ERRNOS.has(e)) finish(`reset-by-${side}`, message, side);
    else finish("error", `${message} (${errnoName(e)})`);
    return FAILED;
  }

  /** Decides how the pump ends (first cause wins), then closes or resets the sockets. */
  function finish(reason: PumpEndReason, message?: string, resetBy?: Side): void {
    if (outcome !== undefined) return;
    outcome = message === undefined ? { reason } : { reason, message };
    poller.unwatch(client);
    poller.unwatch(server);
    if (reason === "closed") {
      // Both FINs were read and passed on: a plain close, nothing unread, so no RST.
      closeFd(client);
      closeFd(server);
    } else {
      // The side that reset is already broken; close it without sending anything more.
      (resetBy === "client" ? closeFd : resetFd)(client);
      (resetBy === "server" ? closeFd : resetFd)(server);
    }
    release(up);
    release(down);
    if (idleTimer !== undefined) clearInterval(idleTimer);
    signal?.removeEventListener("abort", onAbort);
    resolve({ ...outcome, bytesToServer: counters.toServer, bytesToClient: counters.toClient });
  }

  const onAbort = () => finish("aborted");

  const onEvent = (fd: number) => (events: number) => {
    const from = fd === client ? up : down;
    const to = fd === client ? down : up;
    if (events & Ready.Err) {
      // A reset seen here even when neither direction would touch the socket now.
      const e = pendingError(fd);
      if (e !== 0) {
        fail(from.fromSide, e);
        return;
      }
    }
    if (events & (Ready.In | Ready.RdHup | Ready.Err | Ready.Hup)) step(from);
    if (events & (Ready.Out | Ready.Err | Ready.Hup)) step(to);
  };

  if (signal?.aborted) {
    finish("aborted");
    return result;
  }
  const events = Ready.In | Ready.Out | Ready.RdHup | Ready.Edge;
  try {
    poller.watch(client, events, onEvent(client));
    poller.watch(server, events, onEvent(server));
  } catch (e) {
    finish("error", `relay: ${(e as Error).message}`);
    return result;
  }
  signal?.addEventListener("abort", onAbort, { once: true });
  const idleTimeoutMs = opts.idleTimeoutMs ?? 0;
  if (idleTimeoutMs > 0) {
    idleTimer = startIdleCheck(idleTimeoutMs, counters, () => finish("idle"));
  }
  // Bytes or a FIN that arrived before the sockets were watched raise no edge: look now.
  step(up);
  step(down);
  return result;
}

function newDirection(from: number, to: number, fromSide: Side, toSide: Side): Direction {
  return {
    from,
    to,
    fromSide,
    toSide,
    pipe: undefined,
    pending: 0,
    eof: false,
    done: false,
    deferred: false,
  };
}

/**
 * Checks the byte counters a few times per timeout instead of re-arming a timer per chunk: the
 * hot path only adds to the counters. Fires between `timeoutMs` and 1.25 * `timeoutMs` after the
 * last byte moved, never earlier.
 */
function startIdleCheck(
  timeoutMs: number,
  counters: PumpCounters,
  onIdle: () => void,
): ReturnType<typeof setInterval> {
  const tickMs = Math.max(1, Math.floor(timeoutMs / 4));
  let lastTotal = counters.toServer + counters.toClient;
  let lastMoveSeen = performance.now();
  return setInterval(() => {
    const total = counters.toServer + counters.toClient;
    const now = performance.now();
    if (total !== lastTotal) {
      lastTotal = total;
      lastMoveSeen = now;
    } else if (now - lastMoveSeen >= timeoutMs) {
      onIdle();
    }
  }, tickMs);
}
