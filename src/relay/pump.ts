/**
 * The TCP relay's byte pump: copies bytes between the client's socket and the relay's own socket
 * to the real server, in both directions, until both are done. It keeps half-close, applies
 * backpressure, passes resets through, ends idle connections and can be aborted; it always
 * resolves with how the connection ended and the bytes moved each way.
 *
 * @module
 */
import type { Socket } from "node:net";

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
  /** Any other socket error; both sides were reset. */
  | "error";

/** Bytes relayed so far, updated live while the pump runs (read it for status displays). */
export interface PumpCounters {
  /** Bytes read from the client and handed to the server's socket. */
  toServer: number;
  /** Bytes read from the server and handed to the client's socket. */
  toClient: number;
}

/** Options of {@linkcode pump}. */
export interface PumpOptions {
  /** Reset both sides when no byte has moved either way for this long; 0 (default) = never. */
  idleTimeoutMs?: number;
  /** Aborting it resets both sides and ends the pump with "aborted". */
  signal?: AbortSignal;
  /** Counters to update live; a fresh zeroed object when omitted. */
  counters?: PumpCounters;
}

/** How the pump ended and what it moved; {@linkcode pump} resolves with it, never rejects. */
export interface PumpResult {
  reason: PumpEndReason;
  /** Bytes relayed client -> server and server -> client in all. */
  bytesToServer: number;
  bytesToClient: number;
  /** The socket error behind "reset-by-*" and "error", prefixed with the side it came from. */
  message?: string;
}

/** Error codes that mean the peer reset or broke the connection (rather than a local failure). */
const RESET_CODES: ReadonlySet<string> = new Set([
  "ECONNRESET",
  "EPIPE",
  "ECONNABORTED",
  "ENOTCONN",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
]);

/** A zeroed set of counters, to pass as {@linkcode PumpOptions.counters} and read live. */
export function newPumpCounters(): PumpCounters {
  return { toServer: 0, toClient: 0 };
}

type Side = "client" | "server";
// deno-lint-ignore no-explicit-any -- EventEmitter's own listener type
type Listener = (...args: any[]) => void;

/**
 * Relays between two connected sockets until both directions are done, then releases them.
 *
 * - Bytes are copied both ways in order; when a write returns false the reading side is paused
 *   until 'drain', so each direction buffers at most about one high-water mark plus one chunk.
 * - A FIN from one side ends the write side toward the other once its pending data is flushed;
 *   the other direction keeps flowing until it ends too. Then both sockets are closed (FIN, no
 *   RST) and the result is "closed".
 * - A reset on one side resets the other at once (`resetAndDestroy()`); any other error, the idle
 *   timeout and the abort signal reset both.
 * - When it resolves, both sockets are destroyed and closed, its listeners removed, its timer
 *   cleared. Both sockets are switched to half-open and no-delay mode and resumed.
 *
 * @example Relaying each accepted client to a backend
 * ```ts
 * import net from "node:net";
 * import { newPumpCounters, pump } from "./pump.ts";
 *
 * net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (client) => {
 *   const server = net.connect({ host: "203.0.113.10", port: 80, allowHalfOpen: true });
 *   const refused = () => client.resetAndDestroy();
 *   server.once("error", refused);
 *   server.once("connect", async () => {
 *     server.off("error", refused); // from here on the pump handles errors
 *     const counters = newPumpCounters(); // readable while the pump runs
 *     const result = await pump(client, server, { idleTimeoutMs: 300_000, counters });
 *     console.log(result.reason, result.bytesToServer, result.bytesToClient);
 *   });
 * }).listen(16000);
 * ```
 */
export function pump(client: Socket, server: Socket, opts: PumpOptions = {}): Promise<PumpResult> {
  const counters = opts.counters ?? newPumpCounters();
  const idleTimeoutMs = opts.idleTimeoutMs ?? 0;
  const signal = opts.signal;

  return new Promise((resolve) => {
    let outcome: { reason: PumpEndReason; message?: string } | null = null;
    // A socket destroyed before the pump already emitted (or queued) its 'close'.
    let clientClosed = client.destroyed;
    let serverClosed = server.destroyed;
    // Set when the FIN of one direction has been passed on and flushed ('finish').
    let clientToServerDone = false;
    let serverToClientDone = false;
    let idleTimer: ReturnType<typeof setInterval> | undefined;

    const onClientData = (chunk: Uint8Array) => {
      counters.toServer += chunk.length;
      if (!server.write(chunk)) client.pause();
    };
    const onServerData = (chunk: Uint8Array) => {
      counters.toClient += chunk.length;
      if (!client.write(chunk)) server.pause();
    };
    const onServerDrain = () => client.resume();
    const onClientDrain = () => server.resume();
    // end() sends FIN only after the data already written is flushed.
    const onClientEnd = () => server.end();
    const onServerEnd = () => client.end();
    const onServerFinish = () => {
      clientToServerDone = true;
      if (serverToClientDone) finish("closed");
    };
    const onClientFinish = () => {
      serverToClientDone = true;
      if (clientToServerDone) finish("closed");
    };
    const onClientError = (err: Error) => fail("client", err);
    const onServerError = (err: Error) => fail("server", err);
    const onClientClose = (hadError: boolean) => {
      clientClosed = true;
      closed("client", hadError);
    };
    const onServerClose = (hadError: boolean) => {
      serverClosed = true;
      closed("server", hadError);
    };
    const onAbort = () => finish("aborted");

    const listeners: [Socket, string, Listener][] = [
      [client, "data", onClientData],
      [server, "data", onServerData],
      [client, "drain", onClientDrain],
      [server, "drain", onServerDrain],
      [client, "end", onClientEnd],
      [server, "end", onServerEnd],
      [client, "finish", onClientFinish],
      [server, "finish", onServerFinish],
      [client, "error", onClientError],
      [server, "error", onServerError],
      [client, "close", onClientClose],
      [server, "close", onServerClose],
    ];

    /** Decides how the pump ends (first cause wins), then closes or resets the sockets. */
    function finish(reason: PumpEndReason, message?: string, resetBy?: Side): void {
      if (outcome) return;
      outcome = message === undefined ? { reason } : { reason, message };
      if (reason === "closed") {
        // Both FINs were exchanged and read: a plain close, nothing unread, so no RST.
        client.destroy();
        server.destroy();
      } else {
        if (resetBy !== "client") reset(client);
        if (resetBy !== "server") reset(server);
        // The side that reset is already broken; destroy it without sending anything more.
        client.destroy();
        server.destroy();
      }
      release();
    }

    function fail(side: Side, err: Error): void {
      const code = (err as NodeJS.ErrnoException).code ?? "";
      const message = `${side}: ${err.message}`;
      if (RESET_CODES.has(code)) finish(`reset-by-${side}`, message, side);
      else finish("error", message);
    }

    function closed(side: Side, hadError: boolean): void {
      if (!outcome) {
        const done = side === "client"
          ? client.readableEnded && serverToClientDone
          : server.readableEnded && clientToServerDone;
        // An error-less close of a socket whose directions are both done is its auto-destroy;
        // the other socket may still be flushing. Any other close is unexpected.
        if (hadError) finish(`reset-by-${side}`, `${side}: connection closed with an error`, side);
        else if (!done) finish("error", `${side}: socket closed before the relay was done`, side);
      }
      release();
    }

    /** Resolves once an outcome is set and both 'close' events are in (no late 'error' then). */
    function release(): void {
      if (!outcome || !clientClosed || !serverClosed) return;
      for (const [socket, event, fn] of listeners) socket.off(event, fn);
      if (idleTimer !== undefined) clearInterval(idleTimer);
      signal?.removeEventListener("abort", onAbort);
      resolve({
        ...outcome,
        bytesToServer: counters.toServer,
        bytesToClient: counters.toClient,
      });
    }

    for (const [socket, event, fn] of listeners) socket.on(event, fn);
    for (const socket of [client, server]) {
      // Without it the socket would end its own write side on the peer's FIN.
      socket.allowHalfOpen = true;
      if (!socket.destroyed) socket.setNoDelay(true);
    }

    if (clientClosed || serverClosed) {
      finish("error", `${clientClosed ? "client" : "server"}: socket destroyed before the pump`);
      return;
    }
    if (signal?.aborted) {
      finish("aborted");
      return;
    }
    signal?.addEventListener("abort", onAbort, { once: true });
    if (idleTimeoutMs > 0) {
      idleTimer = startIdleCheck(idleTimeoutMs, counters, () => finish("idle"));
    }
    // An 'end' emitted before the pump started would never be seen again.
    if (client.readableEnded) onClientEnd();
    if (server.readableEnded) onServerEnd();
    // A 'data' listener does not restart a socket the caller paused explicitly.
    client.resume();
    server.resume();
  });
}

/** Sends an RST (SO_LINGER 0) when the socket still has its handle; otherwise just destroys it. */
function reset(socket: Socket): void {
  if (socket.destroyed) return;
  try {
    socket.resetAndDestroy();
  } catch {
    socket.destroy();
  }
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
