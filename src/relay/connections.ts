/**
 * The relayed connections, from the relay's connect to the server until both sides are closed:
 * waits for the connect to complete (or fail, or time out), then pumps (pump.ts), and checks
 * idleness and connect deadlines from one timer for all. The TCP relay hands each connection
 * over as two fds; the host reports back when a connection is up and when it ended.
 *
 * @example
 * ```ts ignore
 * const host = new Connections(shared, {
 *   connected: (id) => console.log(id, "up"),
 *   ended: (id, end) => console.log(id, end.reason),
 * });
 * host.setTimeouts(5_000, 300_000);
 * host.add(1, clientFd, serverFd, true); // server fd: a connect in progress
 * ```
 *
 * @module
 */

import { errnoName } from "../system/errno.ts";
import { Ready } from "./poller.ts";
import { Pump, PUMP_EVENTS, type PumpCounters, type PumpResult, type PumpShared } from "./pump.ts";
import { closeFd, flushAck, pendingError, resetFd } from "./socket.ts";

/** The server did not accept the connection: refused, unreachable or silent. */
export interface Unreachable {
  reason: "unreachable";
  /** Why: the errno name, or "no answer in N ms". */
  message: string;
  bytesToServer: 0;
  bytesToClient: 0;
}

/** How a connection handed to a host ended. */
export type ConnectionEnd = PumpResult | Unreachable;

/** What a host reports. */
export interface ConnectionEvents {
  /** The connection to the server is up; bytes flow. */
  connected(id: number): void;
  /** Both sockets are closed (called once per connection). */
  ended(id: number, end: ConnectionEnd): void;
}

// Bounds of the timer's period (a quarter of the shortest timeout).
const MIN_SWEEP_MS = 20;
const MAX_SWEEP_MS = 1_000;

/** How often to check timeouts: a quarter of the shortest, within bounds. */
function sweepPeriod(connectTimeoutMs: number, idleTimeoutMs: number): number {
  const shortest = Math.min(connectTimeoutMs, idleTimeoutMs > 0 ? idleTimeoutMs : Infinity);
  return Math.max(MIN_SWEEP_MS, Math.min(MAX_SWEEP_MS, Math.floor(shortest / 4)));
}

/** One connection: connecting (no pump yet) or pumping. */
class Connection {
  pump: Pump | undefined = undefined;
  /** The client's events while connecting (watched, not yet pumped). */
  clientEvents = 0;

  constructor(
    readonly id: number,
    readonly client: number,
    readonly server: number,
    readonly deadline: number,
  ) {}
}

/** The relayed connections on one poller. */
export class Connections {
  readonly #byId = new Map<number, Connection>();
  #connectTimeoutMs = 5_000;
  #idleTimeoutMs = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;

  constructor(private readonly shared: PumpShared, private readonly events: ConnectionEvents) {}

  /** Connections open now. */
  get size(): number {
    return this.#byId.size;
  }

  /**
   * Takes over `client` and `server` (connected, or connecting when `connecting`); `id` names
   * the connection in the events.
   */
  add(id: number, client: number, server: number, connecting: boolean): void {
    const c = new Connection(id, client, server, performance.now() + this.#connectTimeoutMs);
    this.#byId.set(id, c);
    this.#arm();
    if (!connecting) {
      // Connected at once (the handshake ran within connect(), as it can on loopback): whether
      // the client has sent anything is not known yet, so the held ACK goes now.
      flushAck(server);
      this.#startPump(c, false);
      return;
    }
    try {
      // Both watched once for the connection's whole life: the pump takes these events over.
      // The client's are kept until then: whether its bytes are in decides the ACK below.
      this.shared.poller.watch(client, PUMP_EVENTS, (events) => {
        c.clientEvents |= events;
      });
      this.shared.poller.watch(server, PUMP_EVENTS, (events) => {
        if (!(events & (Ready.Out | Ready.Err | Ready.Hup))) return;
        // Writable without an error flag: connected (Linux), no SO_ERROR call needed.
        const e = events & (Ready.Err | Ready.Hup) ? pendingError(server) : 0;
        if (e !== 0) {
          this.#unreachable(c, errnoName(e));
          return;
        }
        // The server waits for the handshake's last ACK, held back to ride in the client's
        // first bytes (setDelayedAck): with none to send (the server speaks first), now.
        if (!(c.clientEvents & Ready.In)) flushAck(server);
        this.#startPump(c, true, events);
      });
    } catch (e) {
      this.#unreachable(c, (e as Error).message);
    }
  }

  /** The timeouts for connects started from now on and for idleness. */
  setTimeouts(connectTimeoutMs: number, idleTimeoutMs: number): void {
    this.#connectTimeoutMs = connectTimeoutMs;
    this.#idleTimeoutMs = idleTimeoutMs;
  }

  /** Resets every connection, connecting or not: each ends "aborted", with an event. */
  abortAll(): void {
    for (const c of this.#byId.values()) {
      if (c.pump !== undefined) c.pump.abort();
      else this.#drop(c, { reason: "aborted", bytesToServer: 0, bytesToClient: 0 });
    }
  }

  /** Bytes moved by the connections still open. */
  live(): PumpCounters {
    let toServer = 0;
    let toClient = 0;
    for (const c of this.#byId.values()) {
      if (c.pump === undefined) continue;
      const counters = c.pump.counters;
      toServer += counters.toServer;
      toClient += counters.toClient;
    }
    return { toServer, toClient };
  }

  /** A connection's bytes so far and when it last moved one; undefined until it is pumping. */
  activity(id: number): (PumpCounters & { lastMove: number }) | undefined {
    const pump = this.#byId.get(id)?.pump;
    return pump && { ...pump.counters, lastMove: pump.lastMove };
  }

  /** Stops the timer (call once the connections have ended). */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Checks connect deadlines and idleness now. */
  sweep(now: number): void {
    for (const c of this.#byId.values()) {
      if (c.pump !== undefined) c.pump.checkIdle(now, this.#idleTimeoutMs);
      else if (now >= c.deadline) this.#unreachable(c, `no answer in ${this.#connectTimeoutMs} ms`);
    }
  }

  /** Runs the sweep while there are connections. */
  #arm(): void {
    // #closed first: both fields are read on every call, whichever way it goes.
    if (this.#closed || this.#timer !== undefined) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.sweep(performance.now());
      if (this.#byId.size > 0) this.#arm();
    }, sweepPeriod(this.#connectTimeoutMs, this.#idleTimeoutMs));
  }

  #startPump(c: Connection, watched: boolean, serverEvents = 0): void {
    c.pump = new Pump(this.shared, c.client, c.server, (result) => this.#end(c, result));
    this.events.connected(c.id);
    c.pump.start(watched, serverEvents, watched, c.clientEvents);
  }

  /** The server refused or did not answer: the client is reset. */
  #unreachable(c: Connection, why: string): void {
    this.#drop(c, { reason: "unreachable", message: why, bytesToServer: 0, bytesToClient: 0 });
  }

  /** Ends a connection still connecting: its connect is abandoned, its client reset. */
  #drop(c: Connection, end: ConnectionEnd): void {
    this.shared.poller.forget(c.client);
    this.shared.poller.forget(c.server);
    closeFd(c.server);
    resetFd(c.client);
    this.#end(c, end);
  }

  #end(c: Connection, end: ConnectionEnd): void {
    if (!this.#byId.delete(c.id)) return;
    this.events.ended(c.id, end);
  }
}
