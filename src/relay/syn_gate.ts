/**
 * Holds a client's SYN to a TCP service until the real server has answered the relay's own
 * connection, so that the client sees what it would see talking to the server directly (or
 * through kernel NAT): a refused connection is refused (an RST to its SYN, ECONNREFUSED), an
 * unreachable one unreachable (ICMP host unreachable), a silent one stays unanswered (its own
 * SYN retries and timeout) — never accepted first and reset afterwards.
 *
 * The queue brings the SYN (iptables.ts selects IPv4 clients' SYNs to relay:service,
 * ip6_queue.ts IPv6 clients'); the gate
 * starts the connection from the client's address and port (upstream.ts), and:
 * - connected: records the socket in the {@link UpstreamRegistry}, where the relay thread that
 *   accepts the client's connection takes it, and lets the SYN go on (the kernel's listener
 *   answers it);
 * - refused: drops the SYN and sends the client an RST from relay:port, as a server would;
 * - host or network unreachable: drops it and sends the client an ICMP (ICMPv6) error from the
 *   relay;
 * - no answer in `tcp_connect_timeout`: drops it; the client's retransmitted SYN starts again.
 * A SYN that finds its connection still under way (a retransmission) is dropped: the first is
 * held. Anything the gate cannot decide (no service, no local port left) goes on unheld, and
 * the relay connects after the accept as it does without the gate.
 *
 * The cost is a queue round trip per new connection, and the SYN-ACK waits for the server's
 * (as through NAT). The steering queues the SYNs of the services in `heldSynPorts` only: all
 * with `tcp_hold_syn` true, and with auto (the default) those in doubt (syn_doubt.ts).
 *
 * @module
 */

import { libc } from "../../ffi/libc.ts";
import type { TcpTargets } from "../nat/tcp_targets.ts";
import { buildIcmpError, buildTcpPacket } from "../packet/build.ts";
import { IpProtocol, type Ipv4Packet, TcpFlag } from "../packet/ipv4_packet.ts";
import type { Ipv6Packet } from "../packet/ipv6_packet.ts";
import { buildTcpReset6, buildUnreachable6 } from "../packet/answers6.ts";
import { foldIpv6 } from "../servers/list.ts";
import { Errno, errnoName } from "../system/errno.ts";
import { logger } from "../system/log.ts";
import { Poller, Ready } from "./poller.ts";
import { closeFd, pendingError, resetFd } from "./socket.ts";
import { connectUpstream, connectUpstream6, type Upstream, type UpstreamFlow } from "./upstream.ts";
import type { UpstreamRegistry } from "./upstream_registry.ts";

const log = logger("relay");

/** How long a connection made for a client waits for the client's handshake to complete. */
export const UNCLAIMED_MS = 10_000;
const SWEEP_MS = 100;

/** What a {@link SynGate} works with. */
export interface SynGateOptions {
  targets: TcpTargets;
  registry: UpstreamRegistry;
  settings: () => { connectTimeoutMs: number };
  now: () => number;
  /**
   * The connection made for a held SYN to `servicePort` succeeded, or failed (refused,
   * unreachable, unanswered): for tcp_hold_syn auto (syn_doubt.ts).
   */
  outcome?: (servicePort: number, connected: boolean) => void;
  /**
   * Its poller has no loop of its own: the packet loop waits on it with the queue's fd
   * ({@link SynGate.watchQueue}), on its own thread while SYNs are held, so that neither a
   * SYN nor its server's answer costs a hop through a helper thread.
   */
  driven?: boolean;
  /**
   * A poller of another's to wait in (a relay thread's: the gate per thread,
   * daemon/thread_gate.ts); the gate does not close it.
   */
  poller?: Poller;
}

/** Counters of the gate. */
export interface SynGateCounters {
  /** SYNs held until the server answered. */
  held: number;
  /** ...whose server accepted: the SYN went on. */
  accepted: number;
  /** ...refused by the server: the client got an RST. */
  refused: number;
  /** ...unreachable: the client got an ICMP error. */
  unreachable: number;
  /** ...with no answer in time: the SYN was dropped. */
  unanswered: number;
  /** SYNs let go on unheld (no service, no local port) and retransmissions dropped. */
  passed: number;
  dropped: number;
  /** SYNs let go on unheld because {@link MAX_GATED} were gated already (a flood). */
  overflow: number;
}

/** Adds `b` (if any) to `a`, which it returns: several gates' counters as one. */
export function addGateCounters(
  a: SynGateCounters,
  b: SynGateCounters | undefined,
): SynGateCounters {
  if (b === undefined) return a;
  for (const k of Object.keys(a) as (keyof SynGateCounters)[]) a[k] += b[k];
  return a;
}

/**
 * SYNs held, and connections made for clients that have not come for them yet, at most: past
 * that a SYN goes on unheld (the relay accepts it, and resets it if the server then fails), so
 * that a flood of spoofed SYNs costs no more than this many connections to the servers; the
 * kernel's SYN cookies take care of the rest.
 */
export const MAX_GATED = 512;

/** A held SYN: `decide(true)` lets it go on, `decide(false)` drops it. */
export type Decide = (accept: boolean) => void;

interface Held {
  syn: Uint8Array;
  fd: number;
  flow: UpstreamFlow;
  /** An IPv6 client's address (16 bytes); `flow.client` is then 0. */
  client6?: Uint8Array;
  servicePort: number;
  deadline: number;
  decide: Decide;
}

/** See the module documentation. */
export class SynGate {
  readonly counters: SynGateCounters = {
    held: 0,
    accepted: 0,
    refused: 0,
    unreachable: 0,
    unanswered: 0,
    passed: 0,
    dropped: 0,
    overflow: 0,
  };
  readonly #poller: Poller;
  readonly #held = new Map<string, Held>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #raw = -1;
  #raw6 = -1;

  /** Its poller is the packet loop's to drive (see {@link SynGateOptions.driven}). */
  get driven(): boolean {
    return this.options.driven === true;
  }

  constructor(private readonly options: SynGateOptions) {
    this.#poller = options.poller ?? new Poller(false, options.driven === true);
    this.#timer = setInterval(() => this.#sweep(), SWEEP_MS);
  }

  /** SYNs held now, their servers' answers awaited. */
  get pending(): number {
    return this.#held.size;
  }

  /** When (ms, performance.now()) the gate last got a SYN to decide. */
  lastSynAt = -Infinity;

  /** A driven gate: `ready` is called when the queue's `fd` has packets (see waitNow). */
  watchQueue(fd: number, ready: () => void): void {
    this.#poller.watch(fd, Ready.In, ready);
  }

  /**
   * A driven gate: waits up to `timeoutMs` on this thread for a held SYN's server or the
   * queue, and handles what came; the number of events.
   */
  waitNow(timeoutMs: number): number {
    return this.#poller.waitNow(timeoutMs);
  }

  /** {@link SynGate.waitNow} off the JS thread (the event loop runs meanwhile). */
  waitOff(timeoutMs: number): Promise<number> {
    return this.#poller.waitOff(timeoutMs);
  }

  /** Whether `bytes` is a client's SYN (no ACK): one for {@link SynGate.hold}. */
  static isSyn(bytes: Uint8Array): boolean {
    if (bytes.length < 40 || bytes[9] !== IpProtocol.TCP) return false;
    const ihl = (bytes[0] & 0x0f) * 4;
    if (bytes.length < ihl + 20 || ((bytes[6] << 8) | bytes[7]) & 0x3fff) return false;
    return (bytes[ihl + 13] & (TcpFlag.SYN | TcpFlag.ACK | TcpFlag.RST)) === TcpFlag.SYN;
  }

  /** Whether `bytes` is an IPv6 client's SYN (no extension headers): one for {@link SynGate.hold6}. */
  static isSyn6(bytes: Uint8Array): boolean {
    if (bytes.length < 60 || bytes[0] >>> 4 !== 6 || bytes[6] !== IpProtocol.TCP) return false;
    return (bytes[53] & (TcpFlag.SYN | TcpFlag.ACK | TcpFlag.RST)) === TcpFlag.SYN;
  }

  /** Decides a client's SYN (see {@link SynGate.isSyn}) once its server has answered. */
  hold(syn: Ipv4Packet, decide: Decide): void {
    this.lastSynAt = performance.now();
    const key = `${syn.src}:${syn.srcPort}:${syn.dstPort}`;
    if (this.#held.has(key)) {
      this.counters.dropped++;
      decide(false);
      return;
    }
    // Connected already, the client's SYN-ACK lost: the retransmitted SYN goes on.
    if (this.options.registry.has(syn.src | 0, syn.srcPort, syn.dstPort)) {
      return this.#pass(decide);
    }
    if (this.#held.size + this.options.registry.size >= MAX_GATED) {
      this.counters.overflow++;
      return this.#pass(decide);
    }
    const target = this.options.targets.target(syn.dstPort, syn.dst | 0, syn.src | 0);
    if (target === undefined) return this.#pass(decide);
    // No server of the service up: refused now, as the relay would reset it at accept.
    if (target === null) return this.#refuse(syn.bytes, decide);
    const flow = {
      client: syn.src | 0,
      clientPort: syn.srcPort,
      server: target.server,
      serverPort: target.serverPort,
    };
    this.#start(key, syn.bytes, flow, undefined, syn.dstPort, connectUpstream(flow), decide);
  }

  /** {@link SynGate.hold} for an IPv6 client's SYN (see {@link SynGate.isSyn6}). */
  hold6(syn: Ipv6Packet, decide: Decide): void {
    this.lastSynAt = performance.now();
    const client = syn.src.slice();
    const clientText = syn.srcText;
    const key = `${clientText}:${syn.srcPort}:${syn.dstPort}`;
    if (this.#held.has(key)) {
      this.counters.dropped++;
      decide(false);
      return;
    }
    if (this.options.registry.has6(client, syn.srcPort, syn.dstPort)) return this.#pass(decide);
    if (this.#held.size + this.options.registry.size >= MAX_GATED) {
      this.counters.overflow++;
      return this.#pass(decide);
    }
    const target = this.options.targets.target6(syn.dstPort, foldIpv6(client));
    if (target === undefined) return this.#pass(decide);
    if (target === null) return this.#refuse(syn.bytes, decide);
    const flow = { client: 0, clientPort: syn.srcPort, server: 0, serverPort: target.serverPort };
    const outcome = connectUpstream6({
      client: clientText,
      clientPort: syn.srcPort,
      server: target.server,
      serverPort: target.serverPort,
    });
    this.#start(key, syn.bytes, flow, client, syn.dstPort, outcome, decide);
  }

  /** Holds the SYN until the connection `outcome` started for it is decided. */
  #start(
    key: string,
    syn: Uint8Array,
    flow: UpstreamFlow,
    client6: Uint8Array | undefined,
    servicePort: number,
    outcome: Upstream | string,
    decide: Decide,
  ): void {
    if (typeof outcome === "string") {
      if (outcome === "ECONNREFUSED") {
        this.options.outcome?.(servicePort, false);
        return this.#refuse(syn, decide);
      }
      return this.#pass(decide);
    }
    this.counters.held++;
    const held: Held = {
      syn: syn.slice(),
      fd: outcome.fd,
      flow,
      ...(client6 === undefined ? {} : { client6 }),
      servicePort,
      deadline: this.options.now() + this.options.settings().connectTimeoutMs,
      decide,
    };
    if (!outcome.connecting) {
      this.#connected(held);
      return;
    }
    this.#held.set(key, held);
    this.#poller.watch(outcome.fd, Ready.Out | Ready.Err | Ready.Hup, (events) => {
      if (!(events & (Ready.Out | Ready.Err | Ready.Hup))) return;
      this.#held.delete(key);
      this.#poller.unwatch(outcome.fd);
      const e = events & (Ready.Err | Ready.Hup) ? pendingError(outcome.fd) : 0;
      if (e === 0) this.#connected(held);
      else this.#failed(held, e);
    });
  }

  /** Drops every held SYN, closes the connections not taken, stops. */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    // A packet loop still running goes back to its own receive.
    this.lastSynAt = -Infinity;
    for (const held of this.#held.values()) {
      this.#poller.unwatch(held.fd);
      closeFd(held.fd);
      held.decide(false);
    }
    this.#held.clear();
    for (const fd of this.options.registry.expire(2 ** 31 * 1000 - 1000)) resetFd(fd);
    if (this.#raw >= 0) closeFd(this.#raw);
    if (this.#raw6 >= 0) closeFd(this.#raw6);
    this.#raw = this.#raw6 = -1;
    if (this.options.poller === undefined) await this.#poller.close();
  }

  #connected(held: Held): void {
    const { client, clientPort } = held.flow;
    const now = this.options.now();
    const put = held.client6 === undefined
      ? this.options.registry.put(client, clientPort, held.servicePort, held.fd, now)
      : this.options.registry.put6(held.client6, clientPort, held.servicePort, held.fd, now);
    // No room: the relay connects again after the accept, as without the gate.
    if (!put) resetFd(held.fd);
    this.counters.accepted++;
    this.options.outcome?.(held.servicePort, true);
    held.decide(true);
  }

  #failed(held: Held, e: number): void {
    closeFd(held.fd);
    this.options.outcome?.(held.servicePort, false);
    if (e === Errno.ECONNREFUSED) return this.#refuse(held.syn, held.decide);
    if (e === Errno.EHOSTUNREACH || e === Errno.ENETUNREACH) {
      this.counters.unreachable++;
      held.decide(false);
      // Address (3) or no route (0), from the relay.
      if (held.client6 !== undefined) {
        return this.#send6(buildUnreachable6(held.syn, e === Errno.EHOSTUNREACH ? 3 : 0));
      }
      // Host (1) or network (0) unreachable, about the client's SYN, from the relay.
      this.#send(held.syn, (syn, relay, client) =>
        buildIcmpError(
          {
            src: relay,
            dst: client,
            type: 3,
            code: e === Errno.EHOSTUNREACH ? 1 : 0,
          },
          syn,
          ((syn[0] & 0x0f) * 4) + 8,
        ));
      return;
    }
    log.debug("connect for a held SYN failed: {why}", { why: errnoName(e) });
    this.counters.unanswered++;
    held.decide(false);
  }

  /** The server refused: the SYN goes no further, the client gets an RST from relay:port. */
  #refuse(syn: Uint8Array, decide: Decide): void {
    this.counters.refused++;
    decide(false);
    if (syn[0] >>> 4 === 6) return this.#send6(buildTcpReset6(syn));
    this.#send(syn, (bytes, relay, client) => {
      const ihl = (bytes[0] & 0x0f) * 4;
      const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      return buildTcpPacket({
        src: relay,
        dst: client,
        srcPort: v.getUint16(ihl + 2),
        dstPort: v.getUint16(ihl),
        seq: 0,
        ack: (v.getUint32(ihl + 4) + 1) >>> 0,
        flags: TcpFlag.RST | TcpFlag.ACK,
        window: 0,
      });
    });
  }

  #pass(decide: Decide): void {
    this.counters.passed++;
    decide(true);
  }

  /** Sends the client what `make` builds from its SYN, through a raw socket. */
  #send(
    syn: Uint8Array,
    make: (syn: Uint8Array, relay: number, client: number) => Uint8Array,
  ): void {
    const v = new DataView(syn.buffer, syn.byteOffset, syn.byteLength);
    const client = v.getUint32(12);
    const packet = make(syn, v.getUint32(16), client);
    // sockaddr_in: family, port 0, the destination.
    const to = new Uint8Array(16);
    const view = new DataView(to.buffer);
    view.setUint16(0, 2, true);
    view.setUint32(4, client);
    this.#sendRaw(false, packet, to);
  }

  /** Sends an IPv6 packet built whole (its source the relay's), through a raw socket. */
  #send6(packet: Uint8Array): void {
    // sockaddr_in6: family, port 0, flow info 0, the destination, scope 0.
    const to = new Uint8Array(28);
    new DataView(to.buffer).setUint16(0, 10, true);
    to.set(packet.subarray(24, 40), 8);
    this.#sendRaw(true, packet, to);
  }

  /** Sends `packet`, header and all, to `to` through the family's raw socket (opened once). */
  #sendRaw(v6: boolean, packet: Uint8Array, to: Uint8Array<ArrayBuffer>): void {
    const family = v6 ? "IPv6 " : "";
    let fd = v6 ? this.#raw6 : this.#raw;
    if (fd < 0) {
      // AF_INET(6), SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW: the header is ours (IP_HDRINCL).
      fd = libc().socket(v6 ? 10 : 2, 3 | 0o2000000, 255);
      if (v6) this.#raw6 = fd;
      else this.#raw = fd;
      if (fd < 0) {
        log.warning(`no ${family}raw socket to answer a refused SYN: the client's SYN times out`);
        return;
      }
    }
    const sent = libc().connect(fd, to, to.length) === 0 &&
      libc().send(fd, packet as Uint8Array<ArrayBuffer>, BigInt(packet.length), 0) >= 0;
    if (!sent) log.debug(`the answer to a refused ${family}SYN could not be sent`);
  }

  /** Drops the SYNs whose server has not answered in time; closes connections not taken. */
  #sweep(): void {
    const now = this.options.now();
    for (const [key, held] of this.#held) {
      if (now < held.deadline) continue;
      this.#held.delete(key);
      this.#poller.unwatch(held.fd);
      closeFd(held.fd);
      this.counters.unanswered++;
      this.options.outcome?.(held.servicePort, false);
      held.decide(false);
    }
    for (const fd of this.options.registry.expire(now - UNCLAIMED_MS)) resetFd(fd);
  }
}
