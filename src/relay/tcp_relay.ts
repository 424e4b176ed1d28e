/**
 * The TCP relay: the gateway-port listener and its connections. The kernel (sk_lookup or
 * TPROXY) delivers a client's connection unchanged, so its local address is where the client
 * meant to go; the relay connects to the real server from the client's own address, on a port
 * the kernel picks (upstream.ts), then pumps bytes both ways until both sides are done
 * (connections.ts, pump.ts). The kernel rewrites nothing and no NAT entry is made: the relay
 * lists its connections itself ({@link TcpRelay.diverted}).
 *
 * @example
 * ```ts ignore
 * const relay = new TcpRelay({ targets, settings: () => s, now: () => performance.now() });
 * await relay.listen(16000);
 * // ...
 * await relay.close();
 * ```
 * Longer than 400 lines: one listener per family and one connection table, whose accept,
 * connect and end share the relay's counters and shapes (system/v8_shapes.ts); the connect, the
 * close, the counters and the connection record live in upstream.ts, close.ts, stats.ts and
 * relayed.ts.
 *
 * @module
 */

import { type FlowCounts, TcpState, type TcpTargets } from "../nat/tcp_targets.ts";
import { formatEndpoint } from "../packet/address.ts";
import { Errno, errnoText } from "../system/errno.ts";
import { logger } from "../system/log.ts";
import { PipePool } from "./pipe_pool.ts";
import { Poller, Ready } from "./poller.ts";
import { acceptFrom, closeFd, gatewayListener, localEndpoint, resetFd } from "./socket.ts";
import { closeGracefully, reserveFd } from "./close.ts";
import { connectUpstream, connectUpstream6 } from "./upstream.ts";
import { acceptFrom6, gatewayListener6, localEndpoint6 } from "./socket6.ts";
import { formatEndpoint6, parseIpv6 } from "../packet/ipv6_address.ts";
import { foldIpv6 } from "../servers/list.ts";
import { type DivertedConnection, Relayed } from "./relayed.ts";
import type { TcpRelayStats } from "./stats.ts";
import type { UpstreamRegistry } from "./upstream_registry.ts";
import type { PumpShared } from "./pump.ts";
import { type ConnectionEnd, Connections } from "./connections.ts";
import {
  LOOPBACK,
  warmUpClient,
  type WarmUpLimits,
  WarmUpOrigin,
  type WarmUpResult,
} from "./warm_up.ts";
import { DOUBLE_ZERO, restoreInPlace } from "../system/v8_shapes.ts";

const log = logger("relay");

/** The relay's settings, read for each new connection. */
export interface TcpRelaySettings {
  connectTimeoutMs: number;
  idleTimeoutMs: number;
}

/** What a {@link TcpRelay} works with. */
export interface TcpRelayOptions {
  /** Where connections go, by the service port they were diverted from. */
  targets: TcpTargets;
  settings: () => TcpRelaySettings;
  now: () => number;
  /**
   * The gateway listener shares its port with other relay threads' (SO_REUSEPORT); each
   * thread's listener must say so.
   */
  reusePort?: boolean;
  /** The relay has its thread to itself (a relay thread): see {@link Poller}'s `dedicated`. */
  dedicated?: boolean;
  /**
   * The CPU the relay's thread keeps to: its listener takes the connections whose handshake
   * that CPU handles (SO_INCOMING_CPU), so a connection's work stays on one CPU.
   */
  cpu?: number;
  /**
   * Connections to the server made before the client's handshake (syn_gate.ts): a client's
   * is taken from here, connected, instead of connecting after the accept.
   */
  registry?: UpstreamRegistry;
  /**
   * A connection to a server failed (refused, unreachable, no answer): its client was reset.
   * Called at once, so that the daemon can hold the service's next SYNs (syn_doubt.ts).
   */
  onFailed?: () => void;
}

// Connections accepted per listener event; the rest wait for the next round (level-triggered).
const ACCEPTS_PER_EVENT = 64;
// Bytes a splice pipe holds (kernel memory, lent only while bytes are in flight): 1 MiB, as
// the C splice relay's, moves a bulk stream in a quarter of the splice calls of 256 KiB and
// less CPU per byte (docs/performance.md, 2026-12-07); the first 16 MiB of pipes are that big,
// later ones 256 KiB, so that many bulk connections stay within the user's pipe pages
// (pipe_pool.ts).
const PIPE_SIZES = { size: 1024 * 1024, smallSize: 256 * 1024, budget: 16 * 1024 * 1024 };
// The copy buffer of the pumps: a read that fills it switches its direction to splice.
const COPY_SIZE = 64 * 1024;

/** The gateway-port listener and its connections. */
export class TcpRelay {
  #shared?: PumpShared;
  #host?: Connections;
  #listener = -1;
  /** The IPv6 gateway listener, -1 when IPv6 is unavailable or not listening. */
  #listener6 = -1;
  #ipv6Refused = false;
  #port = 0;
  /** An fd held in reserve, given up to accept (and reset) a client at the fd limit. */
  #spare = -1;
  /** Open connections by id. */
  readonly #connections = new Map<number, Relayed>();
  #nextId = 1;
  /** Bytes of finished connections: doubles from the start, as a Pump's (see Direction.moved). */
  #finished = { toServer: DOUBLE_ZERO, toClient: DOUBLE_ZERO };
  #stats = { total: 0, failed: 0, fdLimit: 0, noServer: 0, total6: 0 };
  /** IPv6 connections' counts: their one server is no pool's, and has no health checks. */
  /** Within a burst of accepts at the fd limit (logged once per burst). */
  #atLimit = false;
  /** Open connections of IPv6 clients. */
  #active6 = 0;
  /** The connect and idle timeouts last passed to the host. */
  #timeouts = [-1, -1];
  #stopping = false;
  #warmed = false;

  constructor(private readonly options: TcpRelayOptions) {}

  /** The port listened on, 0 when not listening. */
  get port(): number {
    return this.#listener >= 0 ? this.#port : 0;
  }

  /** The listener's descriptor (for the steering's sk_lookup), -1 when not listening. */
  get listenerFd(): number {
    return this.#listener;
  }

  /** The IPv6 listener's descriptor, -1 when none (not listening, or no IPv6 here). */
  get listenerFd6(): number {
    return this.#listener6;
  }

  /** The poller serving the relay's sockets, once it has listened. */
  get poller(): Poller | undefined {
    return this.#shared?.poller;
  }

  /**
   * Listens on `port` (all addresses); rejects with a clear error if it is taken. Already
   * listening elsewhere, the new listener replaces the old one once it is up: connections
   * accepted on the old port go on.
   */
  listen(port: number): Promise<void> {
    if (this.#listener >= 0 && this.#port === port) {
      // The same port: IPv6 may have come or gone with the real servers.
      const wanted = this.options.targets.ipv6();
      if (wanted !== this.#listener6 >= 0) this.#listen6(port, this.#shared!);
      return Promise.resolve();
    }
    const fd = gatewayListener(
      port,
      true,
      this.options.reusePort === true,
      this.options.cpu,
    );
    const shared = this.#shared ??= {
      poller: new Poller(this.options.dedicated === true),
      pipes: new PipePool(PIPE_SIZES),
      scratch: new Uint8Array(COPY_SIZE),
    };
    this.#host ??= this.#newHost(shared);
    this.#stopping = false;
    if (this.#spare < 0) this.#spare = reserveFd();
    const old = this.#listener;
    try {
      shared.poller.watch(fd, Ready.In, () => this.#acceptSome(fd));
    } catch (e) {
      closeFd(fd);
      throw e;
    }
    this.#listener = fd;
    this.#port = port;
    if (old >= 0) this.#closeListener(old);
    this.#listen6(port, shared);
    return Promise.resolve();
  }

  /**
   * The IPv6 listener on the same port, beside the IPv4 one, when IPv6 clients are relayed
   * (closed when they no longer are). Where the host has no IPv6 (or the port is taken for
   * IPv6 only), IPv4 goes on alone: said once.
   */
  #listen6(port: number, shared: PumpShared): void {
    const old = this.#listener6;
    this.#listener6 = -1;
    let fd = -1;
    if (!this.options.targets.ipv6()) {
      if (old >= 0) this.#closeListener(old);
      return;
    }
    try {
      fd = gatewayListener6(port, true, this.options.reusePort === true, this.options.cpu);
      shared.poller.watch(fd, Ready.In, () => this.#acceptSome6(fd));
      this.#listener6 = fd;
    } catch (e) {
      if (fd >= 0) closeFd(fd);
      if (!this.#ipv6Refused) {
        log.warning("no IPv6 gateway listener: {error}", { error: String(e) });
        this.#ipv6Refused = true;
      }
    }
    if (old >= 0) this.#closeListener(old);
  }
  #newHost(shared: PumpShared): Connections {
    // A new host starts with its own defaults: the next accept passes the settings on.
    this.#timeouts = [-1, -1];
    return new Connections(shared, {
      connected: (id: number) => {
        const c = this.#connections.get(id);
        if (c === undefined) return;
        c.established = true;
        c.counts.connected++;
      },
      ended: (id: number, end: ConnectionEnd) => this.#ended(id, end),
    });
  }

  /** Stops listening; relayed connections go on. */
  unlisten(): Promise<void> {
    if (this.#listener >= 0) this.#closeListener(this.#listener);
    this.#listener = -1;
    if (this.#listener6 >= 0) this.#closeListener(this.#listener6);
    this.#listener6 = -1;
    return Promise.resolve();
  }

  #closeListener(fd: number): void {
    this.#shared?.poller.forget(fd);
    closeFd(fd);
  }

  /** Counters now. */
  stats(): TcpRelayStats {
    const live = this.#host?.live() ?? { toServer: 0, toClient: 0 };
    return {
      active: this.#connections.size,
      total: this.#stats.total,
      failed: this.#stats.failed,
      noServer: this.#stats.noServer,
      bytesToServer: this.#finished.toServer + live.toServer,
      bytesToClient: this.#finished.toClient + live.toClient,
      fdLimit: this.#stats.fdLimit,
      ipv6Active: this.#active6,
      ipv6Total: this.#stats.total6,
    };
  }

  /**
   * Stops listening and resets every relayed connection; resolves when all are gone and the
   * relay's sockets, pipes and poller are released.
   */
  async close(): Promise<void> {
    await this.unlisten();
    this.#stopping = true;
    this.#host?.abortAll();
    // Bounded: connections end within a round or two.
    for (let i = 0; i < 100 && this.#connections.size > 0; i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    if (this.#connections.size === 0) {
      this.#host?.close();
      this.#host = undefined;
      await this.#shared?.poller.close();
      this.#shared?.pipes.close();
      this.#shared = undefined;
      if (this.#spare >= 0) closeFd(this.#spare);
      this.#spare = -1;
    }
  }

  /**
   * Connections by server and service port since start (passive health checks, status):
   * "port/server" (unsigned) -> counts.
   */
  serverCounts(): Record<string, FlowCounts> {
    const all: Record<string, FlowCounts> = {};
    for (const [key, counts] of this.options.targets.counts()) all[key] = { ...counts };
    return all;
  }

  /** The service ports of the connections being relayed now. */
  divertedPorts(): Set<number> {
    const ports = new Set<number>();
    for (const c of this.#connections.values()) ports.add(c.flow.servicePort);
    return ports;
  }

  /** The connections being relayed now, which have no NAT entry. */
  diverted(): DivertedConnection[] {
    const list: DivertedConnection[] = [];
    for (const c of this.#connections.values()) {
      const activity = this.#host?.activity(c.id);
      const { client, relay, server } = c.flow;
      list.push({
        ...c.flow,
        client: client >>> 0,
        relay: relay >>> 0,
        server: server >>> 0,
        relayPort: c.upstream < 0
          ? 0
          : c.flow.v6 !== undefined
          ? localEndpoint6(c.upstream).port
          : localEndpoint(c.upstream).port,
        state: c.established ? TcpState.Established : TcpState.Connecting,
        created: c.created,
        lastSeen: activity?.lastMove ?? c.created,
        bytesToServer: activity?.toServer ?? 0,
        bytesToClient: activity?.toClient ?? 0,
      });
    }
    return list;
  }

  #acceptSome(listener: number): void {
    this.#syncTimeouts();
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

  /** {@link TcpRelay.#acceptSome} for the IPv6 listener. */
  #acceptSome6(listener: number): void {
    this.#syncTimeouts();
    for (let i = 0; i < ACCEPTS_PER_EVENT; i++) {
      const got = acceptFrom6(listener);
      if (typeof got !== "number") {
        this.#accept6(got.fd, got.peer.address, got.peer.port);
        continue;
      }
      if (got === Errno.EMFILE || got === Errno.ENFILE) this.#refuseAtLimit6(listener, got);
      else if (got !== Errno.EAGAIN && got !== Errno.ECONNABORTED && got !== Errno.EINTR) {
        log.error("accept on the IPv6 gateway port failed: {error}", { error: errnoText(got) });
      }
      return;
    }
  }

  #refuseAtLimit6(listener: number, e: number): void {
    this.#noteFdLimit(errnoText(e));
    if (this.#spare >= 0) closeFd(this.#spare);
    const got = acceptFrom6(listener);
    if (typeof got !== "number") {
      this.#stats.total++;
      this.#stats.failed++;
      resetFd(got.fd);
    }
    this.#spare = reserveFd();
  }

  /** An IPv6 client's connection: relayed to the IPv6 real server, or reset when none. */
  #accept6(fd: number, client: string, clientPort: number): void {
    this.#stats.total++;
    this.#stats.total6++;
    let c: Relayed | undefined;
    try {
      const local = localEndpoint6(fd);
      const target = this.options.targets.target6(local.port, foldIpv6(parseIpv6(client)));
      if (target) {
        c = new Relayed(
          this.#nextId++,
          {
            client: 0,
            clientPort,
            relay: 0,
            servicePort: local.port,
            server: 0,
            serverPort: target.serverPort,
            v6: { client, relay: local.address, server: target.server },
          },
          this.options.now(),
          target.counts,
        );
      }
    } catch {
      c = undefined;
    }
    if (c === undefined) {
      log.debug("no IPv6 service or server up for {who}: reset", {
        who: formatEndpoint6(client, clientPort),
      });
      this.#stats.failed++;
      resetFd(fd);
      return;
    }
    this.#connections.set(c.id, c);
    this.#active6++;
    c.counts.total++;
    c.counts.active++;
    this.#connect(c, fd);
  }

  /** Passes the timeouts on when the settings changed. */
  #syncTimeouts(): void {
    const { connectTimeoutMs, idleTimeoutMs } = this.options.settings();
    if (connectTimeoutMs === this.#timeouts[0] && idleTimeoutMs === this.#timeouts[1]) return;
    this.#timeouts = [connectTimeoutMs, idleTimeoutMs];
    this.#host?.setTimeouts(connectTimeoutMs, idleTimeoutMs);
  }

  /**
   * At the fd limit a waiting client would make the listener ready forever: give up the spare
   * fd to accept it, reset it, and take the spare back.
   */
  #refuseAtLimit(listener: number, e: number): void {
    this.#noteFdLimit(errnoText(e));
    if (this.#spare >= 0) closeFd(this.#spare);
    const got = acceptFrom(listener);
    if (typeof got !== "number") {
      this.#stats.total++;
      this.#stats.failed++;
      resetFd(got.fd);
    }
    this.#spare = reserveFd();
  }

  /**
   * Counts a client reset for want of a descriptor; logs once per burst (until a connection
   * is relayed again).
   */
  #noteFdLimit(error: string): void {
    this.#stats.fdLimit++;
    if (this.#atLimit) return;
    this.#atLimit = true;
    log.warning("no file descriptor left for new connections ({error}): resetting them", {
      error,
    });
  }

  #accept(fd: number, client: number, clientPort: number): void {
    this.#stats.total++;
    let c: Relayed | null | undefined;
    try {
      c = this.#diverted(fd, client, clientPort);
    } catch {
      c = undefined;
    }
    if (c === null) {
      // No server of the service is up: a reset at once, not a client left waiting.
      log.debug("no server up for {who}: reset", { who: formatEndpoint(client, clientPort) });
      this.#stats.failed++;
      this.#stats.noServer++;
      resetFd(fd);
      return;
    }
    if (c === undefined) {
      // Someone connected to the gateway port directly, or to a service since removed.
      log.debug("no service for {who}: reset", { who: formatEndpoint(client, clientPort) });
      this.#stats.failed++;
      resetFd(fd);
      return;
    }
    this.#connections.set(c.id, c);
    c.counts.total++;
    c.counts.active++;
    this.#connect(c, fd);
  }

  /**
   * A connection TPROXY diverted: its local address is where the client meant to go. Addresses
   * are kept signed, as the socket layer reads them (see socket.ts's Endpoint).
   */
  #diverted(fd: number, client: number, clientPort: number): Relayed | null | undefined {
    const local = localEndpoint(fd);
    const target = this.options.targets.target(local.port, local.address, client);
    if (target === undefined || target === null) return target;
    const flow = {
      client,
      clientPort,
      relay: local.address,
      servicePort: local.port,
      server: target.server,
      serverPort: target.serverPort,
      v6: undefined,
    };
    return new Relayed(this.#nextId++, flow, this.options.now(), target.counts);
  }

  /**
   * Relays loopback connections through this relay's own code before any client comes, so that
   * V8 has optimised it by then (see warm_up.ts): a client on 127.0.0.1 connects to the gateway
   * listener, the relay connects transparently from the client's address to a loopback origin,
   * and the request, the answer and both FINs pass as a client's would. Only for a transparent
   * relay that listens, and once; undefined otherwise. The counters are left as they were, so
   * the warm-up's connections are not counted as clients'.
   */
  async warmUp(limits: WarmUpLimits): Promise<WarmUpResult | undefined> {
    const shared = this.#shared;
    if (this.#listener < 0 || shared === undefined) return undefined;
    if (this.#warmed || limits.connections <= 0) return undefined;
    this.#warmed = true;
    const origin = new WarmUpOrigin(shared.poller);
    const stats = { ...this.#stats };
    const finished = { ...this.#finished };
    // Looked up as a service's connections are (see TcpTargets.target), from 127.0.0.1 only.
    const port = localEndpoint(this.#listener).port;
    this.options.targets.divertOwn(port, LOOPBACK, LOOPBACK, origin.port);
    try {
      return await warmUpClient(shared.poller, port, limits, origin.closesFirst);
    } finally {
      // The relay's side of the last connections closes a round or two after the client's.
      for (let i = 0; i < 50 && this.#connections.size > 0; i++) {
        await new Promise((r) => setTimeout(r, 2));
      }
      this.options.targets.undivertOwn(port);
      origin.close();
      // In place (system/v8_shapes.ts, rule 3).
      restoreInPlace(this.#stats, stats);
      restoreInPlace(this.#finished, finished);
    }
  }

  /** Connects to the server from the client's address and hands both sockets to the host. */
  #connect(c: Relayed, client: number): void {
    if (this.#stopping || this.#host === undefined) {
      this.#fail(c, client, resetFd);
      return;
    }
    const { client: who, clientPort, servicePort } = c.flow;
    const registry = this.options.registry;
    const v6client = c.flow.v6?.client;
    const made = registry === undefined || registry.size === 0
      ? -1
      : v6client === undefined
      ? registry.take(who, clientPort, servicePort)
      : registry.take6(parseIpv6(v6client), clientPort, servicePort);
    if (made >= 0) {
      c.upstream = made;
      this.#host.add(c.id, client, made, false);
      return;
    }
    const v6 = c.flow.v6;
    const outcome = v6 === undefined ? connectUpstream(c.flow) : connectUpstream6({
      client: v6.client,
      clientPort: c.flow.clientPort,
      server: v6.server,
      serverPort: c.flow.serverPort,
    });
    if (typeof outcome !== "string") {
      c.upstream = outcome.fd;
      this.#atLimit = false;
      this.#host.add(c.id, client, outcome.fd, outcome.connecting);
      return;
    }
    if (outcome === "EADDRINUSE" || outcome === "EADDRNOTAVAIL") {
      // Every port of ip_local_port_range is in a connection from this client to this server.
      log.warning("no local port left toward {target} for {who} (ip_local_port_range): closing", {
        target: c.target,
        who: c.who,
      });
      this.#fail(c, client, (fd) => closeGracefully(this.#shared!.poller, fd));
    } else if (outcome === "EMFILE" || outcome === "ENFILE") {
      this.#noteFdLimit(outcome);
      this.#fail(c, client, resetFd);
    } else {
      log.info("cannot reach {target} for {who}: {why}", {
        target: c.target,
        who: c.who,
        why: outcome,
      });
      c.counts.failed++;
      this.options.onFailed?.();
      this.#fail(c, client, resetFd);
    }
  }

  /** A connection handed to the host ended. */
  #ended(id: number, end: ConnectionEnd): void {
    const c = this.#connections.get(id);
    if (c === undefined) return;
    this.#finished.toServer += end.bytesToServer;
    this.#finished.toClient += end.bytesToClient;
    if (end.reason === "unreachable") {
      this.#stats.failed++;
      c.counts.failed++;
      this.options.onFailed?.();
      log.info("cannot reach {target} for {who}: {why}", {
        target: c.target,
        who: c.who,
        why: end.message,
      });
    } else if (log.isEnabledFor("debug")) {
      log.debug("{who} -> {target} ended: {reason}, {up} bytes up, {down} down", {
        who: c.who,
        target: c.target,
        reason: end.reason,
        up: end.bytesToServer,
        down: end.bytesToClient,
      });
    }
    this.#remove(c);
  }

  /** Ends a connection never handed over: its client `closer`ed. */
  #fail(c: Relayed, client: number, closer: (fd: number) => void): void {
    this.#stats.failed++;
    closer(client);
    this.#remove(c);
  }

  #remove(c: Relayed): void {
    if (this.#connections.delete(c.id) && c.flow.v6 !== undefined) this.#active6--;
    c.counts.active--;
  }
}
