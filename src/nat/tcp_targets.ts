/**
 * Where relayed TCP connections go. The kernel (sk_lookup or TPROXY) hands a client's
 * connection to the gateway listener unchanged, so the accepted socket's local address is where
 * the client meant to go (relay:service); the relay connects to the real server on that service
 * port, from the client's own address. The kernel rewrites nothing for these connections, so
 * there is no NAT entry for them: the relay lists them itself. With several real servers, the
 * server is picked per connection (src/servers/balancer.ts) among those up.
 *
 * @example
 * ```ts
 * import { TcpTargets } from "./tcp_targets.ts";
 * const pool = { servers: [{ ip: 0xcb00710a, weight: 1, backup: false }], balance: "client-hash", up: {} } as const;
 * const targets = new TcpTargets(() => ({ pool, tcpPorts: new Set([80]) }));
 * targets.target(80, 0, 0xc6336410)?.serverPort; // 80
 * ```
 * @module
 */

import { signed32 } from "../system/v8_shapes.ts";
import { Balancer, type ServerPool, serviceKey } from "../servers/balancer.ts";

/** What the targets follow; read on every lookup, so live changes apply to new connections. */
export interface TcpTargetSettings {
  /** The real servers, how new flows are spread over them, and which are up. */
  pool: ServerPool;
  /**
   * The IPv6 real servers (their entries carry the address), as {@link pool}: IPv6 clients are
   * relayed to them (not without any).
   */
  pool6?: ServerPool;
  /** The relay's IPv6 address, given only with an IPv6 real server (IPv6 is relayed then). */
  relayIp6?: string;
  /** TCP service ports relayed through the gateway port. */
  tcpPorts: ReadonlySet<number>;
}

/** Connections to one server's one service, counted by the relay (passive health checks). */
export interface FlowCounts {
  /** Open now, and accepted since start. */
  active: number;
  total: number;
  /** The server accepted the relay's connection. */
  connected: number;
  /** It refused, was unreachable or did not answer in time. */
  failed: number;
}

/**
 * Where a diverted connection goes. Addresses signed, as the socket layer reads them, so that
 * they are the same kind of number to V8 whatever their value (system/v8_shapes.ts, rule 2).
 */
export interface DivertedTarget {
  readonly server: number;
  readonly serverPort: number;
  /** The one local address the target is for; 0: any of the relay's. */
  readonly local: number;
  /** The connections to this server and port, kept across changes of the settings. */
  readonly counts: FlowCounts;
}

function divertedTarget(
  server: number,
  serverPort: number,
  local: number,
  counts: FlowCounts,
): DivertedTarget {
  return { server: signed32(server), serverPort, local: signed32(local), counts };
}

/** Where an IPv6 client's connection goes: an IPv6 server (canonical text) on the port. */
export interface DivertedTarget6 {
  readonly server: string;
  readonly serverPort: number;
  readonly counts: FlowCounts;
}

const NO_SERVERS: ServerPool = { servers: [], balance: "client-hash", up: {} };

function noCounts(): FlowCounts {
  return { active: 0, total: 0, connected: 0, failed: 0 };
}

/** One service port's servers: a target per server, and the balancer that picks one. */
class PortTargets {
  constructor(
    /** The one local address the port is diverted from; 0: any of the relay's. */
    readonly local: number,
    readonly balancer: Balancer,
    /** By server index, as the balancer picks. */
    readonly targets: readonly DivertedTarget[],
  ) {}
}

/** Flow states, as shown by status displays. */
export const TcpState = {
  Connecting: "connecting",
  Established: "established",
} as const;

/** The targets of diverted connections, by service port. */
export class TcpTargets {
  #ports = new Map<number, PortTargets>();
  readonly #own = new Map<number, PortTargets>();
  /** Counts by "port/server" (unsigned), for targets made again after a change. */
  readonly #counts = new Map<string, FlowCounts>();
  /** The settings #ports were made from. */
  #madePorts: ReadonlySet<number> | undefined;
  #madePool: ServerPool | undefined;
  /** IPv6's: per service port, its balancer and a target per IPv6 server. */
  #ports6 = new Map<number, { balancer: Balancer; targets: DivertedTarget6[] }>();
  #madePorts6: ReadonlySet<number> | undefined;
  #madePool6: ServerPool | undefined;

  constructor(private readonly settings: () => TcpTargetSettings) {}

  /**
   * Where a connection goes that the kernel diverted to the relay from `local`:servicePort (its
   * local address, signed as the socket layer reads it) from `client`: the server the balancer
   * picks for the client, on the same port. Undefined when servicePort is not a configured
   * service (someone connected to the gateway port itself, or to a service since removed);
   * null when no server of the service is up.
   *
   * The targets are kept per port and server, made again only when the services or the
   * servers (or their health) change: no object per connection, and the relay's own ports
   * ({@link TcpTargets.divertOwn}) are looked up by the same code as the services, so that a
   * warm-up on them prepares it for clients.
   */
  target(servicePort: number, local: number, client: number): DivertedTarget | null | undefined {
    const s = this.settings();
    if (s.tcpPorts !== this.#madePorts || s.pool !== this.#madePool) this.#makeTargets(s);
    const t = this.#ports.get(servicePort);
    if (t === undefined || (t.local !== 0 && t.local !== local)) return undefined;
    const i = t.balancer.pick(client);
    return i < 0 ? null : t.targets[i];
  }

  /**
   * Where an IPv6 connection to service port `servicePort` from `client` (its address folded,
   * servers/list.ts's foldIpv6) goes: the IPv6 server the balancer picks, on the same port.
   * Undefined when the port is no service, null when no IPv6 server of it is up (or none is
   * listed). IPv4 and IPv6 clients are each relayed within their family.
   */
  target6(servicePort: number, client: number): DivertedTarget6 | null | undefined {
    const s = this.settings();
    if (s.tcpPorts !== this.#madePorts6 || s.pool6 !== this.#madePool6) this.#makeTargets6(s);
    const t = this.#ports6.get(servicePort);
    if (t === undefined) return undefined;
    const i = t.balancer.pick(client);
    return i < 0 ? null : t.targets[i];
  }

  #makeTargets6(s: TcpTargetSettings): void {
    this.#ports6 = new Map();
    const pool6 = s.pool6 ?? NO_SERVERS;
    const { servers } = pool6;
    for (const port of s.tcpPorts) {
      const targets = servers.map((server) => {
        const address = server.address ?? "";
        const key = `${port}/${address}`;
        let counts = this.#counts.get(key);
        if (counts === undefined) this.#counts.set(key, counts = noCounts());
        return { server: address, serverPort: port, counts };
      });
      const balancer = new Balancer(servers, pool6.up[serviceKey("tcp", port)], pool6.balance);
      this.#ports6.set(port, { balancer, targets });
    }
    this.#madePorts6 = s.tcpPorts;
    this.#madePool6 = s.pool6;
  }

  /** True when IPv6 clients are relayed: the relay then listens for them too. */
  ipv6(): boolean {
    const s = this.settings();
    return s.relayIp6 !== undefined && (s.pool6?.servers.length ?? 0) > 0;
  }

  /**
   * Diverts connections to `local`:`port` (a port of the relay's own, such as its warm-up's)
   * to `server`:`serverPort`, until {@link TcpTargets.undivertOwn}. Addresses signed or not.
   */
  divertOwn(port: number, local: number, server: number, serverPort: number): void {
    const one = [{ ip: server, weight: 1, backup: false }];
    this.#own.set(
      port,
      new PortTargets(local | 0, new Balancer(one, undefined, "client-hash"), [
        divertedTarget(server, serverPort, local, noCounts()),
      ]),
    );
    // Made now, not at the next connection: a warm-up then prepares the lookup's usual path.
    this.#makeTargets(this.settings());
  }

  /** Ends {@link TcpTargets.divertOwn} for `port`. */
  undivertOwn(port: number): void {
    this.#own.delete(port);
    this.#makeTargets(this.settings());
  }

  /**
   * The counts of every server and service port connections went to, by "port/server" (an
   * IPv4 server as an unsigned number, an IPv6 one as its address).
   */
  counts(): ReadonlyMap<string, FlowCounts> {
    return this.#counts;
  }

  #makeTargets(s: TcpTargetSettings): void {
    this.#ports = new Map(this.#own);
    const { servers } = s.pool;
    for (const port of s.tcpPorts) {
      const targets = servers.map((server) => {
        const key = `${port}/${server.ip >>> 0}`;
        let counts = this.#counts.get(key);
        if (counts === undefined) this.#counts.set(key, counts = noCounts());
        return divertedTarget(server.ip, port, 0, counts);
      });
      const balancer = new Balancer(servers, s.pool.up[serviceKey("tcp", port)], s.pool.balance);
      this.#ports.set(port, new PortTargets(0, balancer, targets));
    }
    this.#madePorts = s.tcpPorts;
    this.#madePool = s.pool;
  }
}
