/**
 * TCP relaying (flows T1-T4): the client's connection to relay:port is steered to the relay's
 * gateway port, and the relay's own connection to the real server carries the client's
 * address, so each end sees what it expects:
 *
 * - T1 (PREROUTING)  C:x -> R:80   becomes C:x -> R:A   (destination port to the gateway port)
 * - T2 (POSTROUTING) R:A -> C:x    becomes R:80 -> C:x  (source port back)
 * - T3 (POSTROUTING) Rs:y -> S:80  becomes C:y -> S:80  (source address: the server sees C)
 * - T4 (PREROUTING)  S:80 -> C:y   becomes S:80 -> Rs:y (destination address back)
 *
 * A flow is created by the client's SYN (T1) and records the original destination; the relay
 * reads it when it accepts the connection ({@link TcpNat.acceptedFlow}), takes a port y from
 * the pool and records it before its SYN leaves ({@link TcpNat.bindUpstream}), so concurrent
 * connections are never confused. When the relay has closed both sides, the flow lingers for
 * a moment so that the last FIN and ACK segments, still in flight, are translated too.
 *
 * With kernel_nat none of this is used for TCP: the kernel (sk_lookup or TPROXY) hands the
 * connection over unchanged and the relay connects from the client's address
 * ({@link TcpNat.divertedTarget}).
 *
 * @module
 */

import { type Ipv4Packet, TcpFlag } from "../packet/ipv4_packet.ts";
import type { NatEntry, NatTable } from "./nat_table.ts";
import type { PortPool } from "./port_pool.ts";

/** What the TCP NAT needs to know; read on every use, so live changes apply to new flows. */
export interface TcpNatSettings {
  realIp: number;
  gport: number;
  /** TCP service ports relayed through the gateway port: new flows are for these only. */
  tcpPorts: ReadonlySet<number>;
  /** How long a flow waits for the relay to accept it. */
  tcpSynTimeoutMs: number;
  /** Idle time after which an established flow's entry expires (the relay closes it first). */
  tcpEstablishedTimeoutMs: number;
  /** How long a closed flow's entry stays for segments still in flight. */
  tcpLingerMs: number;
}

/**
 * Where a diverted (kernel_nat) connection goes. Addresses signed, as the socket layer reads
 * them, so that they are the same kind of number to V8 whatever their value.
 */
export interface DivertedTarget {
  readonly server: number;
  readonly serverPort: number;
  /** The one local address the target is for; 0: any of the relay's. */
  readonly local: number;
}

function divertedTarget(server: number, serverPort: number, local: number): DivertedTarget {
  return { server: server | 0, serverPort, local: local | 0 };
}

/** Flow states, as shown by status displays. */
export const TcpState = {
  Syn: "syn",
  Connecting: "connecting",
  Established: "established",
  Closed: "closed",
} as const;

/** Outcome of translating one packet. */
export type TcpResult = "rewritten" | "no-flow" | "conflict" | "full";

/** The key of the client side of a flow: client address and port, and the relay address. */
export function clientKey(client: number, clientPort: number, relay: number): string {
  return `t:${client}:${clientPort}:${relay}`;
}

/** The key of the relay's side toward the server: its port y. */
export function upstreamKey(relayPort: number): string {
  return `ty:${relayPort}`;
}

/** T1-T4 over a {@link NatTable} and a {@link PortPool}. */
export class TcpNat {
  /** Diverted connections' targets by service port (see divertedTarget). */
  #targets = new Map<number, DivertedTarget>();
  readonly #ownTargets = new Map<number, DivertedTarget>();
  /** The settings #targets were made from. */
  #targetPorts: ReadonlySet<number> | undefined;
  #targetIp = 0;

  constructor(
    private readonly table: NatTable,
    private readonly settings: () => TcpNatSettings,
    readonly pool: PortPool,
  ) {
    table.addRemoveListener((entry) => {
      if (entry.protocol === "tcp") this.#releasePort(entry);
    });
  }

  /**
   * T1: client -> relay:service becomes client -> relay:gport. A SYN creates the flow, unless
   * `allowNew` is false (a service no longer configured: only existing flows go on).
   */
  toGateway(packet: Ipv4Packet, now: number, allowNew = true, rewrite = true): TcpResult {
    const key = clientKey(packet.src, packet.srcPort, packet.dst);
    let entry = this.table.get(key);
    const isSyn = (packet.tcpFlags & (TcpFlag.SYN | TcpFlag.ACK)) === TcpFlag.SYN;
    if (isSyn && !allowNew && entry === undefined) return "no-flow";
    if (isSyn) {
      const opened = this.#open(entry, packet.src, packet.srcPort, packet.dst, packet.dstPort);
      if (typeof opened === "string") return opened;
      entry = opened;
    } else if (entry === undefined || entry.servicePort !== packet.dstPort) {
      // Left alone, it reaches relay:service, where nothing listens: the kernel's reset tells
      // the client at once that its connection is gone.
      return "no-flow";
    }
    entry.lastSeen = now;
    entry.packetsToServer++;
    entry.bytesToServer += packet.payload.length;
    if (rewrite) packet.setDstPort(entry.gatewayPort);
    return "rewritten";
  }

  /**
   * A new connection's flow: `entry` (the key's current one) if it is this connection's,
   * else a new one. "conflict" when the client port is busy on another service.
   */
  #open(
    entry: NatEntry | undefined,
    client: number,
    clientPort: number,
    relay: number,
    servicePort: number,
  ): NatEntry | "conflict" | "full" {
    if (entry !== undefined && entry.state === TcpState.Closed) {
      // The client reuses its port for a new connection: the old flow is done.
      this.table.remove(entry, "closed");
      entry = undefined;
    }
    // The same client port on two services would be one connection on the gateway port.
    if (entry !== undefined && entry.servicePort !== servicePort) return "conflict";
    if (entry !== undefined) return entry;
    const s = this.settings();
    const added = this.table.add({
      protocol: "tcp",
      client,
      clientPort,
      relay,
      servicePort,
      server: s.realIp,
      serverPort: servicePort,
      state: TcpState.Syn,
      timeoutMs: s.tcpSynTimeoutMs,
    }, [clientKey(client, clientPort, relay)]);
    if (added === undefined) return "full";
    added.gatewayPort = s.gport;
    return added;
  }

  /** T2: relay:gport -> client becomes relay:service -> client. */
  fromGateway(packet: Ipv4Packet, now: number): TcpResult {
    const entry = this.table.get(clientKey(packet.dst, packet.dstPort, packet.src));
    if (entry === undefined || entry.gatewayPort !== packet.srcPort) return "no-flow";
    entry.lastSeen = now;
    entry.packetsToClient++;
    entry.bytesToClient += packet.payload.length;
    packet.setSrcPort(entry.servicePort);
    return "rewritten";
  }

  /** T3: relay:y -> server becomes client:y -> server. */
  toServer(packet: Ipv4Packet, now: number): TcpResult {
    if (!this.pool.contains(packet.srcPort)) return "no-flow";
    const entry = this.table.get(upstreamKey(packet.srcPort));
    if (entry === undefined || entry.server !== packet.dst || entry.serverPort !== packet.dstPort) {
      return "no-flow";
    }
    if (entry.relayLocal === 0) entry.relayLocal = packet.src;
    entry.lastSeen = now;
    packet.setSrc(entry.client);
    return "rewritten";
  }

  /** T4: server -> client:y becomes server -> relay:y. */
  fromServer(packet: Ipv4Packet, now: number): TcpResult {
    if (!this.pool.contains(packet.dstPort)) return "no-flow";
    const entry = this.table.get(upstreamKey(packet.dstPort));
    if (
      entry === undefined || entry.relayLocal === 0 || entry.client !== packet.dst ||
      entry.server !== packet.src || entry.serverPort !== packet.srcPort
    ) return "no-flow";
    entry.lastSeen = now;
    packet.setDst(entry.relayLocal);
    return "rewritten";
  }

  /**
   * For a connection the relay accepted from client:port on relay address `local`: its flow,
   * whose servicePort, server and serverPort are the original destination and where to relay.
   */
  acceptedFlow(client: number, clientPort: number, local: number): NatEntry | undefined {
    const entry = this.table.get(clientKey(client, clientPort, local));
    return entry?.state === TcpState.Syn ? entry : undefined;
  }

  /**
   * kernel_nat: where a connection goes that the kernel (sk_lookup or TPROXY) diverted to the
   * relay from `local`:servicePort (its local address, signed as the socket layer reads it):
   * the real server, on the same port. Undefined when servicePort is not a configured service
   * (someone connected to the gateway port itself, or to a service since removed). No entry is
   * made: the kernel rewrites nothing for these connections, so the table has nothing to
   * translate, and the relay lists them itself.
   *
   * The targets are kept per port and made again only when the services or `real_ip` change:
   * no object per connection, and the relay's own ports ({@link TcpNat.divertOwn}) are looked
   * up by the same code as the services, so that a warm-up on them prepares it for clients.
   */
  divertedTarget(servicePort: number, local: number): DivertedTarget | undefined {
    const s = this.settings();
    if (s.tcpPorts !== this.#targetPorts || s.realIp !== this.#targetIp) this.#makeTargets(s);
    const t = this.#targets.get(servicePort);
    return t === undefined || (t.local !== 0 && t.local !== local) ? undefined : t;
  }

  /**
   * Diverts connections to `local`:`port` (a port of the relay's own, such as its warm-up's)
   * to `server`:`serverPort`, until {@link TcpNat.undivertOwn}. Addresses signed or not.
   */
  divertOwn(port: number, local: number, server: number, serverPort: number): void {
    this.#ownTargets.set(port, divertedTarget(server, serverPort, local));
    // Made now, not at the next connection: a warm-up then prepares the lookup's usual path.
    this.#makeTargets(this.settings());
  }

  /** Ends {@link TcpNat.divertOwn} for `port`. */
  undivertOwn(port: number): void {
    this.#ownTargets.delete(port);
    this.#makeTargets(this.settings());
  }

  #makeTargets(s: TcpNatSettings): void {
    this.#targets = new Map(this.#ownTargets);
    for (const port of s.tcpPorts) this.#targets.set(port, divertedTarget(s.realIp, port, 0));
    this.#targetPorts = s.tcpPorts;
    this.#targetIp = s.realIp;
  }

  /**
   * Takes a port y for the relay's connection to the server and records it in the flow, before
   * the connection's SYN leaves. Undefined when the pool is exhausted.
   */
  bindUpstream(entry: NatEntry, connectTimeoutMs: number): number | undefined {
    const y = this.pool.acquire();
    if (y === undefined) return undefined;
    if (entry.relayPort !== 0) {
      // A retry after the previous port could not be bound.
      this.table.removeKey(entry, upstreamKey(entry.relayPort));
      this.#releasePort(entry);
    }
    entry.relayPort = y;
    entry.relayLocal = 0;
    this.table.addKey(entry, upstreamKey(y));
    entry.state = TcpState.Connecting;
    entry.timeoutMs = connectTimeoutMs + this.settings().tcpSynTimeoutMs;
    // The client completed its handshake with the gateway: not a spoofed SYN.
    this.table.answered(entry);
    this.table.changed(entry);
    return y;
  }

  /** The relay's connection to the server is up. */
  established(entry: NatEntry): void {
    entry.state = TcpState.Established;
    entry.timeoutMs = this.settings().tcpEstablishedTimeoutMs;
    // A live connection is never evicted for a new flow (table pressure must not reset it).
    this.table.assure(entry);
    this.table.changed(entry);
  }

  /** The relay closed both sides: the flow lingers briefly, then its entry and port go. */
  closed(entry: NatEntry, now: number): void {
    entry.state = TcpState.Closed;
    entry.lastSeen = now;
    entry.timeoutMs = this.settings().tcpLingerMs;
    this.table.changed(entry);
  }

  #releasePort(entry: NatEntry): void {
    if (entry.relayPort !== 0) this.pool.release(entry.relayPort);
    entry.relayPort = 0;
  }
}
