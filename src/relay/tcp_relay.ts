/**
 * The TCP relay: listens on the gateway port, and for each client connection that the NAT
 * steered there, finds the original destination, opens its own connection to the real server
 * from a port y of its pool (recorded in the NAT table before the SYN leaves, so the server's
 * answers find their way back), then pumps bytes both ways until both sides are done.
 *
 * @example
 * ```ts ignore
 * const relay = new TcpRelay({ nat: engine.tcp, settings: () => s, now: () => performance.now() });
 * await relay.listen(16000);
 * // ...
 * await relay.close();
 * ```
 * @module
 */

import net from "node:net";
import type { NatEntry } from "../nat/nat_table.ts";
import type { TcpNat } from "../nat/tcp_nat.ts";
import { formatEndpoint, formatIpv4, isIpv4, parseIpv4 } from "../packet/address.ts";
import { logger } from "../system/log.ts";
import { pump, type PumpResult } from "./pump.ts";

const log = logger("relay");

/** The relay's settings, read for each new connection. */
export interface TcpRelaySettings {
  connectTimeoutMs: number;
  idleTimeoutMs: number;
}

/** What a {@link TcpRelay} works with. */
export interface TcpRelayOptions {
  nat: TcpNat;
  settings: () => TcpRelaySettings;
  now: () => number;
  /** Runs before the relay connects to the server for `entry` (e.g. to prepare its SNAT). */
  beforeConnect?: (entry: NatEntry) => Promise<void>;
}

/** Connection counters. */
export interface TcpRelayStats {
  /** Connections being relayed now. */
  active: number;
  /** Connections accepted since start. */
  total: number;
  /** Connections that could not be relayed (no flow, pool exhausted, server refused or silent). */
  failed: number;
  /** Bytes relayed client -> server and server -> client, of finished and live connections. */
  bytesToServer: number;
  bytesToClient: number;
}

// How many other ports to try when the port y taken from the pool cannot be bound.
const BIND_RETRIES = 3;

/** One relayed connection, for status displays. */
interface Relayed {
  entry: NatEntry;
  abort: AbortController;
  live?: { toServer: number; toClient: number };
}

/** The gateway-port listener and its connections. */
export class TcpRelay {
  #server?: net.Server;
  #port = 0;
  readonly #connections = new Set<Relayed>();
  #finished = { toServer: 0, toClient: 0 };
  #stats = { total: 0, failed: 0 };

  constructor(private readonly options: TcpRelayOptions) {}

  /** The port listened on, 0 when not listening. */
  get port(): number {
    return this.#server ? this.#port : 0;
  }

  /**
   * Listens on `port` (all addresses); rejects with a clear error if it is taken. Already
   * listening elsewhere, the new listener replaces the old one once it is up: connections
   * accepted on the old port go on.
   */
  async listen(port: number): Promise<void> {
    if (this.#server && this.#port === port) return;
    const server = await this.#bind(port);
    const old = this.#server;
    this.#server = server;
    this.#port = port;
    old?.close();
  }

  /**
   * Stops listening; relayed connections go on. The listening socket closes at once; the
   * promise settles only when the connections it accepted have ended too (node's server.close).
   */
  unlisten(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    return server
      ? new Promise<void>((resolve) => server.close(() => resolve()))
      : Promise.resolve();
  }

  #bind(port: number): Promise<net.Server> {
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
    server.on("connection", (socket) => this.#accept(socket));
    return new Promise((resolve, reject) => {
      server.once("error", (e: NodeJS.ErrnoException) => {
        reject(
          new Error(
            e.code === "EADDRINUSE"
              ? `gateway port ${port} is already in use`
              : `cannot listen on gateway port ${port}: ${e.message}`,
          ),
        );
      });
      server.listen({ port, host: "0.0.0.0", backlog: 4096 }, () => {
        server.removeAllListeners("error");
        server.on("error", (e) => log.error("listener error: {error}", { error: String(e) }));
        resolve(server);
      });
    });
  }

  /** Counters now. */
  stats(): TcpRelayStats {
    let toServer = this.#finished.toServer;
    let toClient = this.#finished.toClient;
    for (const c of this.#connections) {
      toServer += c.live?.toServer ?? 0;
      toClient += c.live?.toClient ?? 0;
    }
    return {
      active: this.#connections.size,
      total: this.#stats.total,
      failed: this.#stats.failed,
      bytesToServer: toServer,
      bytesToClient: toClient,
    };
  }

  /** Stops listening and resets every relayed connection; resolves when all are gone. */
  async close(): Promise<void> {
    const closed = this.unlisten();
    for (const c of this.#connections) c.abort.abort();
    // Bounded: each reset settles in a few event-loop turns.
    for (let i = 0; i < 100 && this.#connections.size > 0; i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    await closed;
  }

  /** The NAT flows of the connections being relayed now. */
  flows(): NatEntry[] {
    return [...this.#connections].map((c) => c.entry);
  }

  #accept(client: net.Socket): void {
    this.#stats.total++;
    const remote = unmapped(client.remoteAddress);
    const local = unmapped(client.localAddress);
    const who = `${remote}:${client.remotePort}`;
    const entry = isIpv4(remote) && isIpv4(local)
      ? this.options.nat.acceptedFlow(parseIpv4(remote), client.remotePort!, parseIpv4(local))
      : undefined;
    if (entry === undefined) {
      // Someone connected to the gateway port directly, or the flow expired before accept.
      log.debug("no NAT flow for {who}: reset", { who });
      this.#stats.failed++;
      client.resetAndDestroy();
      return;
    }
    const relayed: Relayed = { entry, abort: new AbortController() };
    this.#connections.add(relayed);
    this.#relay(client, relayed, who).catch((e) => {
      log.error("relaying {who} failed: {error}", { who, error: String(e) });
      client.destroy();
    }).finally(() => {
      this.#connections.delete(relayed);
      this.options.nat.closed(entry, this.options.now());
    });
  }

  async #relay(client: net.Socket, relayed: Relayed, who: string): Promise<void> {
    const { entry, abort } = relayed;
    const settings = this.options.settings();
    const target = formatEndpoint(entry.server, entry.serverPort);
    // A client that gives up while the server is being reached ends the attempt.
    const clientGone = () => abort.abort();
    client.once("close", clientGone);
    client.on("error", () => {});
    let upstream: net.Socket | undefined;
    if (this.options.beforeConnect) {
      try {
        await this.options.beforeConnect(entry);
      } catch (e) {
        log.error("cannot prepare the connection for {who}: {error}", { who, error: String(e) });
        this.#stats.failed++;
        client.resetAndDestroy();
        return;
      }
    }
    for (let attempt = 0; attempt <= BIND_RETRIES && upstream === undefined; attempt++) {
      const y = this.options.nat.bindUpstream(entry, settings.connectTimeoutMs);
      if (y === undefined) {
        log.warning("relay port pool exhausted ({size} ports): closing {who}", {
          size: this.options.nat.pool.size,
          who,
        });
        this.#stats.failed++;
        await closeGracefully(client);
        return;
      }
      const result = await connectFrom(entry, y, settings.connectTimeoutMs, abort.signal);
      if (result instanceof net.Socket) upstream = result;
      else if (result !== "EADDRINUSE") {
        log.info("cannot reach {target} for {who}: {why}", { target, who, why: result });
        this.#stats.failed++;
        client.resetAndDestroy();
        return;
      }
    }
    client.off("close", clientGone);
    if (upstream === undefined || abort.signal.aborted) {
      this.#stats.failed++;
      upstream?.resetAndDestroy();
      client.resetAndDestroy();
      return;
    }
    this.options.nat.established(entry);
    const live = { toServer: 0, toClient: 0 };
    relayed.live = live;
    const result: PumpResult = await pump(client, upstream, {
      idleTimeoutMs: settings.idleTimeoutMs,
      signal: abort.signal,
      counters: live,
    });
    this.#finished.toServer += result.bytesToServer;
    this.#finished.toClient += result.bytesToClient;
    relayed.live = undefined;
    log.debug("{who} -> {target} ended: {reason}, {up} bytes up, {down} down", {
      who,
      target,
      reason: result.reason,
      up: result.bytesToServer,
      down: result.bytesToClient,
    });
  }
}

/** Connects to the flow's server from local port y; the error code or a reason on failure. */
function connectFrom(
  entry: NatEntry,
  y: number,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<net.Socket | string> {
  return new Promise((resolve) => {
    const socket = net.connect({
      host: formatIpv4(entry.server),
      port: entry.serverPort,
      localPort: y,
      allowHalfOpen: true,
    });
    socket.pause();
    const timer = setTimeout(() => finish(`no answer in ${timeoutMs} ms`), timeoutMs);
    const onAbort = () => finish("client left");
    signal.addEventListener("abort", onAbort, { once: true });
    function finish(outcome: net.Socket | string): void {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      socket.removeAllListeners("connect");
      socket.removeAllListeners("error");
      if (typeof outcome === "string") socket.destroy();
      resolve(outcome);
    }
    socket.once("connect", () => finish(socket));
    socket.once("error", (e: NodeJS.ErrnoException) => finish(e.code ?? e.message));
  });
}

// How long a client being closed gets to close its side before it is reset.
const CLOSE_GRACE_MS = 2_000;

/**
 * Closes with a FIN, not a reset: what the client sent is read and discarded (closing with
 * unread data would make the kernel send an RST), and the socket goes once the client has
 * closed too, or after a grace period.
 */
function closeGracefully(socket: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve();
    };
    const timer = setTimeout(done, CLOSE_GRACE_MS);
    socket.on("data", () => {});
    socket.once("end", done);
    socket.once("close", done);
    socket.once("error", done);
    socket.resume();
    socket.end();
  });
}

/** "::ffff:198.51.100.10" -> "198.51.100.10". */
function unmapped(address: string | undefined): string {
  return (address ?? "").replace(/^::ffff:/, "");
}
