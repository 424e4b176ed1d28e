/**
 * The TCP relay's byte pump: moves bytes between the client's socket and the relay's socket to
 * the real server, both ways, until both sides are done. It keeps half-close, applies
 * backpressure (a direction reads only once what it read is written), passes resets through,
 * and can be checked for idleness and aborted; it always ends by calling its `onEnd` once,
 * with how the connection ended and the bytes moved each way.
 *
 * Each direction starts by copying through one buffer shared by all pumps (recv + send: for
 * the small messages of most connections, the fewest and cheapest calls), and switches to
 * splice(2) through a borrowed pipe once a read fills that buffer (bulk: the bytes then never
 * enter user space). Sockets are watched edge-triggered; a read shorter than the buffer means
 * the socket is drained, so no call is spent on learning it from EAGAIN.
 *
 * - A FIN read on one side is passed on (shutdown SHUT_WR) once everything before it is
 *   written; the other direction keeps flowing until it ends too. Then both sockets are closed
 *   with nothing unread (FIN, no RST) and the result is "closed".
 * - A reset on one side resets the other at once (SO_LINGER 0); any other error, idleness
 *   and abort reset both.
 * - The pump owns both sockets: when it ends they are closed, its pipes returned.
 *
 * No timer or promise per connection: the owner calls {@link Pump.checkIdle} for all its pumps
 * from one timer.
 *
 * Longer than 400 lines on purpose: the two directions and the close sequence are one state
 * machine over the same two sockets, and V8 keeps its fields' kinds best when one class holds
 * them (system/v8_shapes.ts); split, each part would need the others' state.
 *
 * @example Relaying an accepted client fd to a connected server fd
 * ```ts ignore
 * const pump = new Pump(shared, clientFd, serverFd, (result) => console.log(result.reason));
 * pump.start();
 * setInterval(() => pump.checkIdle(performance.now(), 300_000), 75_000);
 * ```
 *
 * @module
 */

import { libc } from "../../ffi/libc.ts";
import { Errno, errno, errnoName, errnoText } from "../system/errno.ts";
import type { Pipe, PipePool } from "./pipe_pool.ts";
import { type Poller, Ready } from "./poller.ts";
import { closeFd, pendingError, resetFd, segmentsIn, setNoDelay, shutdownWrite } from "./socket.ts";
import {
  MSG_DONTWAIT,
  MSG_MORE,
  MSG_NOSIGNAL,
  SPLICE_F_MOVE,
  SPLICE_F_NONBLOCK,
} from "../../ffi/linux.ts";
import { DOUBLE_ZERO } from "../system/v8_shapes.ts";

/** How a pumped connection ended. */
export type PumpEndReason =
  /** Both directions ended with FIN and both sockets were closed gracefully. */
  | "closed"
  /** The client reset (or broke) its connection; the server side was reset. */
  | "reset-by-client"
  /** The server reset (or broke) its connection; the client side was reset. */
  | "reset-by-server"
  /** Nothing moved either way for the idle timeout (no byte, no segment); both sides reset. */
  | "idle"
  /** The owner aborted; both sides were reset. */
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

/** How the pump ended and what it moved. */
export interface PumpResult {
  reason: PumpEndReason;
  /** Bytes relayed client -> server and server -> client in all. */
  bytesToServer: number;
  bytesToClient: number;
  /** The error behind "reset-by-*" and "error", prefixed with the side it came from. */
  message?: string;
}

/** What all pumps of one poller share. */
export interface PumpShared {
  poller: Poller;
  /** Pipes for bulk directions. */
  pipes: PipePool;
  /** The copy buffer; its size is the read size above which a direction switches to splice. */
  scratch: Uint8Array<ArrayBuffer>;
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

const SPLICE_FLAGS = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;
const SEND_FLAGS = MSG_DONTWAIT | MSG_NOSIGNAL;
// The last bytes before a FIN already read: held back so the FIN rides in the same segment
// (shutdown or close pushes them), one packet and one ACK less per connection.
const SEND_LAST_FLAGS = SEND_FLAGS | MSG_MORE;
// Calls one direction makes per wake-up before it lets other connections go first.
const SPINS = 16;
/** The events a pumped socket is watched for (edge-triggered, registered once). */
export const PUMP_EVENTS = Ready.In | Ready.Out | Ready.RdHup | Ready.Edge;

type Side = "client" | "server";

// What a step of a direction came to.
const WAIT = 0;
const DONE = 1;
const FAILED = 2;
const MORE = 3;

/** One direction: bytes read from `from`, written to `to`. */
class Direction {
  /** Reads splice through a pipe (after a read filled the copy buffer). */
  bulk = false;
  /** An In edge came since the last read that drained the socket. */
  readable = false;
  /** The peer's FIN is in (RDHUP): read until EOF, short reads or not. */
  peerClosed = false;
  pipe: Pipe | undefined = undefined;
  /** Bytes in the pipe, read but not yet written. */
  pending = 0;
  /** Copied bytes the other socket did not take yet. */
  stash: Uint8Array<ArrayBuffer> | undefined = undefined;
  /** EOF read from `from`. */
  eof = false;
  /** The FIN was passed on to `to`. */
  done = false;
  /** Already queued in the poller's next round. */
  deferred = false;
  /**
   * `to` still has Nagle's algorithm on (the socket to the server, see socket.ts's
   * upstreamSocket): turned off before the second write.
   */
  nagle = false;
  /**
   * Bytes written to `to`. A double from the start: a bulk transfer passes 2^31 bytes (see
   * system/v8_shapes.ts, rule 1). Read it as `moved + 0`, which is never -0.
   */
  moved = DOUBLE_ZERO;

  constructor(
    readonly from: number,
    readonly to: number,
    readonly fromSide: Side,
    readonly toSide: Side,
  ) {}
}

/** One relayed connection's two directions; see the module documentation. */
export class Pump {
  readonly #up: Direction;
  readonly #down: Direction;
  #ended = false;
  // Idleness: the byte total and when it was last seen to change.
  #lastTotal = DOUBLE_ZERO;
  #lastMoveSeen: number;
  // Segments both sockets had received at the last reading of this quiet spell; -1: none yet.
  #segmentsSeen = -1;

  /**
   * @param client the accepted client socket (not watched yet)
   * @param server the connected server socket, watched with {@link PUMP_EVENTS} already or not
   * @param onEnd called once when the pump has ended and both sockets are closed
   */
  constructor(
    private readonly shared: PumpShared,
    readonly client: number,
    readonly server: number,
    private readonly onEnd: (result: PumpResult) => void,
    now = performance.now(),
  ) {
    this.#up = new Direction(client, server, "client", "server");
    this.#down = new Direction(server, client, "server", "client");
    // The client's socket has TCP_NODELAY from the gateway listener already.
    this.#up.nagle = true;
    this.#lastMoveSeen = now;
  }

  /** Bytes moved so far, live. */
  get counters(): PumpCounters {
    return { toServer: this.#up.moved + 0, toClient: this.#down.moved + 0 };
  }

  /**
   * When a byte (or, once quiet, a segment) was last seen moving (`performance.now()`, as of
   * the last idle check).
   */
  get lastMove(): number {
    return this.#lastMoveSeen;
  }

  /** Whether the pump has ended (and its sockets are closed). */
  get ended(): boolean {
    return this.#ended;
  }

  /**
   * Starts pumping: watches both sockets, or takes over the events of those already watched
   * (with {@link PUMP_EVENTS}). `serverEvents` and `clientEvents` are the edges their previous
   * handlers took (bytes, a FIN, an error that came while connecting), which get no new edge.
   */
  start(serverWatched = false, serverEvents = 0, clientWatched = false, clientEvents = 0): void {
    try {
      this.#take(this.server, serverWatched);
      // Watching reports what is already there (bytes, a FIN) as a first edge.
      this.#take(this.client, clientWatched);
    } catch (e) {
      this.#finish("error", `relay: ${(e as Error).message}`);
      return;
    }
    // The client's first: its bytes go out in the segment that acknowledges the server.
    if (clientEvents !== 0) this.#onEvent(this.client, clientEvents);
    if (serverEvents & (Ready.In | Ready.RdHup | Ready.Err | Ready.Hup)) {
      this.#onEvent(this.server, serverEvents);
    }
  }

  #take(fd: number, watched: boolean): void {
    const handler = (ev: number) => this.#onEvent(fd, ev);
    if (watched) this.shared.poller.handle(fd, handler);
    else this.shared.poller.watch(fd, PUMP_EVENTS, handler);
  }

  /** Resets both sides; the pump ends "aborted" (no-op once ended). */
  abort(): void {
    this.#finish("aborted");
  }

  /**
   * Ends the pump "idle" when nothing moved for `timeoutMs` up to `now` (0: never). Call it a
   * few times per timeout: it fires between the timeout and the timeout plus the call period.
   *
   * Bytes are counted as they pass; segments without any (keepalive probes, bare ACKs, from
   * either side) count too, as they do for conntrack, but they are read from the sockets
   * (TCP_INFO) only once the connection has been quiet half the timeout: a few system calls
   * per quiet connection and check, none per byte.
   */
  checkIdle(now: number, timeoutMs: number): void {
    const total = this.#up.moved + this.#down.moved;
    if (total !== this.#lastTotal) {
      this.#lastTotal = total;
      this.#lastMoveSeen = now;
      this.#segmentsSeen = -1;
      return;
    }
    if (timeoutMs <= 0 || now - this.#lastMoveSeen < timeoutMs / 2) return;
    const segments = segmentsIn(this.client) + segmentsIn(this.server);
    // The first reading of a quiet spell is only the baseline: segments before it are the
    // tail of the bytes' own exchange.
    if (this.#segmentsSeen >= 0 && segments !== this.#segmentsSeen) this.#lastMoveSeen = now;
    else if (now - this.#lastMoveSeen >= timeoutMs) {
      this.#finish("idle");
      return;
    }
    this.#segmentsSeen = segments;
  }

  #onEvent(fd: number, events: number): void {
    const from = fd === this.client ? this.#up : this.#down;
    const to = fd === this.client ? this.#down : this.#up;
    if (events & Ready.Err) {
      // A reset seen here even when neither direction would touch the socket now.
      const e = pendingError(fd);
      if (e !== 0) {
        this.#fail(from.fromSide, e);
        return;
      }
    }
    if (events & (Ready.In | Ready.RdHup | Ready.Err | Ready.Hup)) {
      from.readable = true;
      if (events & (Ready.RdHup | Ready.Hup)) from.peerClosed = true;
      this.#step(from);
    }
    if (events & (Ready.Out | Ready.Err | Ready.Hup)) this.#step(to);
  }

  /** Runs one direction until it must wait, is done, or has had its share of this round. */
  #step(d: Direction): void {
    if (this.#ended || d.done) return;
    const r = this.#move(d);
    if (r === DONE) {
      if (this.#up.done && this.#down.done) this.#finish("closed");
    } else if (r === MORE && !d.deferred) {
      // Still going after its share: let the other connections have a turn first.
      d.deferred = true;
      this.shared.poller.defer(() => {
        d.deferred = false;
        this.#step(d);
      });
    }
  }

  #move(d: Direction): number {
    for (let i = 0; i < SPINS; i++) {
      // What was read goes out first.
      if (d.stash !== undefined) {
        if (d.nagle) this.#beforeWrite(d);
        const n = libc().send(d.to, d.stash, BigInt(d.stash.length), SEND_FLAGS);
        if (n < 0) {
          const e = errno();
          return e === Errno.EAGAIN ? WAIT : this.#fail(d.toSide, e);
        }
        d.moved += n;
        if (n < d.stash.length) {
          d.stash = d.stash.subarray(n);
          return WAIT;
        }
        d.stash = undefined;
        continue;
      }
      if (d.pending > 0) {
        if (d.nagle) this.#beforeWrite(d);
        const n = libc().splice(d.pipe!.r, null, d.to, null, BigInt(d.pending), SPLICE_FLAGS);
        if (n < 0) {
          const e = errno();
          return e === Errno.EAGAIN ? WAIT : this.#fail(d.toSide, e);
        }
        d.pending -= n;
        d.moved += n;
        continue;
      }
      if (d.eof) return this.#passFin(d);
      if (!d.readable) return WAIT;
      const r = d.bulk ? this.#spliceIn(d) : this.#copy(d);
      if (r !== MORE) return r;
    }
    return MORE;
  }

  /** Reads into the shared buffer and sends at once; what the other socket refuses is kept. */
  #copy(d: Direction): number {
    const scratch = this.shared.scratch;
    const n = libc().recvInto(d.from, scratch, BigInt(scratch.length), 0);
    if (n > 0) {
      // Short with the peer's FIN in: the socket holds nothing more but the EOF.
      const last = n < scratch.length && d.peerClosed;
      if (n === scratch.length) d.bulk = true;
      else if (!d.peerClosed) d.readable = false;
      if (d.nagle) this.#beforeWrite(d);
      const sent = libc().send(d.to, scratch, BigInt(n), last ? SEND_LAST_FLAGS : SEND_FLAGS);
      if (sent < 0) {
        const e = errno();
        if (e !== Errno.EAGAIN) return this.#fail(d.toSide, e);
      }
      const m = sent < 0 ? 0 : sent;
      d.moved += m;
      // Nothing but the EOF is left to read: no call is spent on reading it.
      if (last) d.eof = true;
      if (m < n) {
        d.stash = scratch.slice(m, n);
        return WAIT;
      }
      return d.readable || last ? MORE : WAIT;
    }
    return this.#readNothing(d, n);
  }

  /**
   * Turns Nagle's algorithm off on `d.to` before its second write: the first is never held
   * (see socket.ts's upstreamSocket), a later short one would wait for the ACK of an earlier
   * short one. A connection that writes once to its server spares the call.
   */
  #beforeWrite(d: Direction): void {
    if (d.moved + 0 === 0) return;
    d.nagle = false;
    setNoDelay(d.to);
  }

  /** Splices from the socket into the direction's pipe. */
  #spliceIn(d: Direction): number {
    if (d.pipe === undefined) {
      try {
        d.pipe = this.shared.pipes.take();
      } catch (e) {
        this.#finish("error", `relay: ${(e as Error).message}`);
        return FAILED;
      }
    }
    const n = libc().splice(
      d.from,
      null,
      d.pipe.w,
      null,
      BigInt(d.pipe.size),
      SPLICE_FLAGS,
    );
    if (n > 0) {
      d.pending = n;
      return MORE;
    }
    return this.#readNothing(d, n);
  }

  /** A read that gave no bytes (`n` 0 or -1): EOF, drained, or the side's error. */
  #readNothing(d: Direction, n: number): number {
    if (n === 0) {
      d.eof = true;
      return MORE;
    }
    const e = errno();
    if (e !== Errno.EAGAIN) return this.#fail(d.fromSide, e);
    // Drained: an (empty) pipe goes back, an idle connection holds none.
    d.readable = false;
    this.#release(d);
    return WAIT;
  }

  /** Passes the FIN on; when the other way is done too, closing both sockets sends it. */
  #passFin(d: Direction): number {
    this.#release(d);
    d.done = true;
    const other = d === this.#up ? this.#down : this.#up;
    if (other.done) return DONE;
    const e = shutdownWrite(d.to);
    if (e !== 0) return this.#fail(d.toSide, e);
    return DONE;
  }

  #release(d: Direction): void {
    if (d.pipe !== undefined) this.shared.pipes.give(d.pipe, d.pending === 0);
    d.pipe = undefined;
  }

  #fail(side: Side, e: number): number {
    const message = `${side}: ${errnoText(e)}`;
    // Constant strings (system/v8_shapes.ts, rule 4).
    const reason = side === "client" ? "reset-by-client" : "reset-by-server";
    if (RESET_ERRNOS.has(e)) this.#finish(reason, message, side);
    else this.#finish("error", `${message} (${errnoName(e)})`);
    return FAILED;
  }

  /** Decides how the pump ends (first cause wins), then closes or resets the sockets. */
  #finish(reason: PumpEndReason, message?: string, resetBy?: Side): void {
    if (this.#ended) return;
    this.#ended = true;
    const poller = this.shared.poller;
    poller.forget(this.client);
    poller.forget(this.server);
    if (reason === "closed") {
      // Both FINs were read: a plain close sends the last FIN, nothing unread, so no RST.
      closeFd(this.client);
      closeFd(this.server);
    } else {
      // The side that reset is already broken; close it without sending anything more.
      (resetBy === "client" ? closeFd : resetFd)(this.client);
      (resetBy === "server" ? closeFd : resetFd)(this.server);
    }
    this.#release(this.#up);
    this.#release(this.#down);
    this.#up.stash = this.#down.stash = undefined;
    const result: PumpResult = {
      reason,
      bytesToServer: this.#up.moved + 0,
      bytesToClient: this.#down.moved + 0,
    };
    if (message !== undefined) result.message = message;
    this.onEnd(result);
  }
}
