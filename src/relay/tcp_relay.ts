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

import type { NatEntry } from "../nat/nat_table.ts";
import type { TcpNat } from "../nat/tcp_nat.ts";
import { formatEndpoint } from "../packet/address.ts";
import { libc } from "../../ffi/libc.ts";
import { Errno, errno, errnoName, errnoText } from "../system/errno.ts";
import { logger } from "../system/log.ts";
import { PipePool } from "./pipe_pool.ts";
import { Poller, Ready } from "./poller.ts";
import {
  acceptFrom,
  bindTo,
  closeFd,
  listenOn,
  localEndpoint,
  originalDestination,
  pendingError,
  resetFd,
  setMark,
  setNoDelay,
  setReuseAddress,
  shutdownWrite,
  SocketError,
  startConnect,
  tcpSocket,
} from "./socket.ts";
import { type PumpResult, splicePump } from "./splice_pump.ts";

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
  /**
   * The mark for the relay's socket to the server of `entry` (SO_MARK), so that the kernel's
   * NAT can map it without asking krelay; undefined for none.
   */
  markFor?: (entry: NatEntry) => number | undefined;
  /**
   * The kernel REDIRECTs connections to the gateway port (kernel_nat): a connection's flow comes
   * from its original destination in conntrack (SO_ORIGINAL_DST) when no queued SYN made it.
   */
  fromConntrack?: boolean;
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
// Connections accepted per listener event; the rest wait for the next round (level-triggered).
const ACCEPTS_PER_EVENT = 64;
// Bytes a splice pipe holds: more per call than the default 64 KiB (kernel memory, lent only
// while bytes are in flight).
const PIPE_SIZE = 256 * 1024;
// How long a client being closed gets to close its side before its socket is closed anyway.
const CLOSE_GRACE_MS = 2_000;

/** One relayed connection, for status displays. */
interface Relayed {
  entry: NatEntry;
  abort: AbortController;
  live?: { toServer: number; toClient: number };
}

/** The gateway-port listener and its connections. */
export class TcpRelay {
  #poller?: Poller;
  #pipes = new PipePool(PIPE_SIZE);
  #listener = -1;
  #port = 0;
  /** An fd held in reserve, given up to accept (and reset) a client at the fd limit. */
  #spare = -1;
  readonly #connections = new Set<Relayed>();
  #finished = { toServer: 0, toClient: 0 };
  #stats = { total: 0, failed: 0 };

  constructor(private readonly options: TcpRelayOptions) {}

  /** The port listened on, 0 when not listening. */
  get port(): number {
    return this.#listener >= 0 ? this.#port : 0;
  }

  /**
   * Listens on `port` (all addresses); rejects with a clear error if it is taken. Already
   * listening elsewhere, the new listener replaces the old one once it is up: connections
   * accepted on the old port go on.
   */
  listen(port: number): Promise<void> {
    if (this.#listener >= 0 && this.#port === port) return Promise.resolve();
    const fd = bindListener(port);
    this.#poller ??= new Poller();
    if (this.#spare < 0) this.#spare = reserveFd();
    const old = this.#listener;
    try {
      this.#poller.watch(fd, Ready.In, () => this.#acceptSome(fd));
    } catch (e) {
      closeFd(fd);
      throw e;
    }
    this.#listener = fd;
    this.#port = port;
    if (old >= 0) this.#closeListener(old);
    return Promise.resolve();
  }

  /** Stops listening; relayed connections go on. */
  unlisten(): Promise<void> {
    if (this.#listener >= 0) this.#closeListener(this.#listener);
    this.#listener = -1;
    return Promise.resolve();
  }

  #closeListener(fd: number): void {
    this.#poller?.unwatch(fd);
    closeFd(fd);
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

  /**
   * Stops listening and resets every relayed connection; resolves when all are gone and the
   * relay's sockets, pipes and poller are released.
   */
  async close(): Promise<void> {
    await this.unlisten();
    for (const c of this.#connections) c.abort.abort();
    // Bounded: each reset settles within a loop round or two.
    for (let i = 0; i < 100 && this.#connections.size > 0; i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    if (this.#connections.size === 0) {
      await this.#poller?.close();
      this.#poller = undefined;
      this.#pipes.close();
      this.#pipes = new PipePool(PIPE_SIZE);
      if (this.#spare >= 0) closeFd(this.#spare);
      this.#spare = -1;
    }
  }

  /** The NAT flows of the connections being relayed now. */
  flows(): NatEntry[] {
    return [...this.#connections].map((c) => c.entry);
  }

  #acceptSome(listener: number): void {
    for (let i = 0; i < ACCEPTS_PER_EVENT; i++) {
      const got = acceptFrom(listener);
      if (typeof got !== "number") {
        this.#accept(got.fd, got.peer.address, got.peer.port);
        continue;
      }
      if (got === Errno.EMFILE || got === Errno.ENFILE) this.#refuseAtLimit(listener, got);
      else if (got !== Errno.EAGAIN && got !== Errno.ECONNABORTED && got !== Errno.EINTR) {
        log.error("accept on the gateway port failed: {error}", { error: errnoText(got) });
      }
      return;
    }
  }

  /**
   * At the fd limit a waiting client would make the listener ready forever: give up the spare
   * fd to accept it, reset it, and take the spare back.
   */
  #refuseAtLimit(listener: number, e: number): void {
    log.warning("no file descriptor left for a new connection ({error}): resetting it", {
      error: errnoText(e),
    });
    if (this.#spare >= 0) closeFd(this.#spare);
    const got = acceptFrom(listener);
    if (typeof got !== "number") {
      this.#stats.total++;
      this.#stats.failed++;
      resetFd(got.fd);
    }
    this.#spare = reserveFd();
  }

  #accept(fd: number, client: number, clientPort: number): void {
    this.#stats.total++;
    let entry: NatEntry | undefined;
    try {
      setNoDelay(fd);
      const original = this.options.fromConntrack ? originalDestination(fd) : undefined;
      entry = original === undefined
        ? this.options.nat.acceptedFlow(client, clientPort, localEndpoint(fd).address)
        : this.options.nat.redirectedFlow(
          client,
          clientPort,
          original.address,
          original.port,
          this.options.now(),
        );
    } catch {
      entry = undefined;
    }
    const who = formatEndpoint(client, clientPort);
    if (entry === undefined) {
      // Someone connected to the gateway port directly, or the flow expired before accept.
      log.debug("no NAT flow for {who}: reset", { who });
      this.#stats.failed++;
      resetFd(fd);
      return;
    }
    const relayed: Relayed = { entry, abort: new AbortController() };
    this.#connections.add(relayed);
    this.#relay(fd, relayed, who).catch((e) => {
      log.error("relaying {who} failed: {error}", { who, error: String(e) });
    }).finally(() => {
      this.#connections.delete(relayed);
      this.options.nat.closed(entry, this.options.now());
    });
  }

  async #relay(client: number, relayed: Relayed, who: string): Promise<void> {
    const { entry, abort } = relayed;
    const settings = this.options.settings();
    const target = formatEndpoint(entry.server, entry.serverPort);
    if (this.options.beforeConnect) {
      try {
        await this.options.beforeConnect(entry);
      } catch (e) {
        log.error("cannot prepare the connection for {who}: {error}", { who, error: String(e) });
        this.#stats.failed++;
        resetFd(client);
        return;
      }
    }
    let upstream: number | undefined;
    for (let attempt = 0; attempt <= BIND_RETRIES && upstream === undefined; attempt++) {
      const y = this.options.nat.bindUpstream(entry, settings.connectTimeoutMs);
      if (y === undefined) {
        log.warning("relay port pool exhausted ({size} ports): closing {who}", {
          size: this.options.nat.pool.size,
          who,
        });
        this.#stats.failed++;
        this.#closeGracefully(client);
        return;
      }
      const result = await this.#connectFrom(entry, y, settings.connectTimeoutMs, abort.signal);
      if (typeof result === "number") upstream = result;
      else if (result !== "EADDRINUSE" && result !== "EADDRNOTAVAIL") {
        log.info("cannot reach {target} for {who}: {why}", { target, who, why: result });
        this.#stats.failed++;
        resetFd(client);
        return;
      }
    }
    if (upstream === undefined || abort.signal.aborted) {
      this.#stats.failed++;
      if (upstream !== undefined) resetFd(upstream);
      resetFd(client);
      return;
    }
    this.options.nat.established(entry);
    const live = { toServer: 0, toClient: 0 };
    relayed.live = live;
    const result: PumpResult = await splicePump(this.#poller!, this.#pipes, client, upstream, {
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

  /**
   * Connects to the flow's server from local port y: the connected fd, or the errno name or
   * a reason on failure.
   */
  #connectFrom(
    entry: NatEntry,
    y: number,
    timeoutMs: number,
    signal: AbortSignal,
  ): Promise<number | string> {
    let fd: number;
    try {
      fd = tcpSocket();
      setReuseAddress(fd);
      const mark = this.options.markFor?.(entry);
      if (mark !== undefined) setMark(fd, mark);
      const bound = bindTo(fd, 0, y);
      if (bound !== 0) {
        closeFd(fd);
        return Promise.resolve("EADDRINUSE");
      }
    } catch (e) {
      return Promise.resolve(e instanceof SocketError ? e.code : String(e));
    }
    const to = { address: entry.server, port: entry.serverPort };
    const started = startConnect(fd, to);
    if (started === 0) {
      setNoDelay(fd);
      return Promise.resolve(fd);
    }
    if (started !== Errno.EINPROGRESS) {
      closeFd(fd);
      return Promise.resolve(errnoName(started));
    }
    const poller = this.#poller!;
    return new Promise((resolve) => {
      const finish = (outcome: number | string) => {
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        poller.unwatch(fd);
        if (typeof outcome === "string") closeFd(fd);
        else setNoDelay(fd);
        resolve(outcome);
      };
      const timer = setTimeout(() => finish(`no answer in ${timeoutMs} ms`), timeoutMs);
      const onAbort = () => finish("relay stopping");
      signal.addEventListener("abort", onAbort, { once: true });
      poller.watch(fd, Ready.Out | Ready.Edge, () => {
        const e = pendingError(fd);
        finish(e === 0 ? fd : errnoName(e));
      });
    });
  }

  /**
   * Closes with a FIN, not a reset: what the client sent is read and discarded (closing with
   * unread data would make the kernel send an RST), and the socket goes once the client has
   * closed too, or after a grace period.
   */
  #closeGracefully(fd: number): void {
    const poller = this.#poller!;
    const scratch = new Uint8Array(4096);
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      poller.unwatch(fd);
      closeFd(fd);
    };
    const timer = setTimeout(finish, CLOSE_GRACE_MS);
    const drain = () => {
      for (;;) {
        const n = libc().read(fd, scratch, scratch.length);
        if (n > 0) continue;
        if (n === 0 || errno() !== Errno.EAGAIN) finish();
        return;
      }
    };
    shutdownWrite(fd);
    poller.watch(fd, Ready.In | Ready.RdHup | Ready.Edge, drain);
    drain();
  }
}

/** A cheap fd (an eventfd, close-on-exec) held only to be given up; -1 when none is left. */
function reserveFd(): number {
  return libc().eventfd(0, 0o2000000);
}

/** A listening socket on 0.0.0.0:port; a clear error when the port is taken. */
function bindListener(port: number): number {
  const fd = tcpSocket();
  try {
    setReuseAddress(fd);
    if (bindTo(fd, 0, port) !== 0) throw new Error(`gateway port ${port} is already in use`);
    listenOn(fd, 4096);
    return fd;
  } catch (e) {
    closeFd(fd);
    if (e instanceof SocketError) {
      throw new Error(`cannot listen on gateway port ${port}: ${e.message}`);
    }
    throw e;
  }
}
