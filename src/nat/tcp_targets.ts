/**
 * Where relayed TCP connections go. The kernel (sk_lookup or TPROXY) hands a client's
 * connection to the gateway listener unchanged, so the accepted socket's local address is where
 * the client meant to go (relay:service); the relay connects to the real server on that service
 * port, from the client's own address. The kernel rewrites nothing for these connections, so
 * there is no NAT entry for them: the relay lists them itself.
 *
 * @example
 * ```ts
 * import { TcpTargets } from "./tcp_targets.ts";
 * const settings = { realIp: 0xcb00710a, tcpPorts: new Set([80]) };
 * const targets = new TcpTargets(() => settings);
 * targets.target(80, 0)?.serverPort; // 80
 * ```
 * @module
 */

import { signed32 } from "../system/v8_shapes.ts";

/** What the targets follow; read on every lookup, so live changes apply to new connections. */
export interface TcpTargetSettings {
  realIp: number;
  /** The IPv6 real server (canonical text); IPv6 clients are not relayed without one. */
  realIp6?: string;
  /** The relay's IPv6 address, given only with an IPv6 real server (IPv6 is relayed then). */
  relayIp6?: string;
  /** TCP service ports relayed through the gateway port. */
  tcpPorts: ReadonlySet<number>;
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
}

function divertedTarget(server: number, serverPort: number, local: number): DivertedTarget {
  return { server: signed32(server), serverPort, local: signed32(local) };
}

/** Flow states, as shown by status displays. */
export const TcpState = {
  Connecting: "connecting",
  Established: "established",
} as const;

/** The targets of diverted connections, by service port. */
export class TcpTargets {
  #targets = new Map<number, DivertedTarget>();
  readonly #ownTargets = new Map<number, DivertedTarget>();
  /** The settings #targets were made from. */
  #targetPorts: ReadonlySet<number> | undefined;
  #targetIp = 0;

  constructor(private readonly settings: () => TcpTargetSettings) {}

  /**
   * Where a connection goes that the kernel diverted to the relay from `local`:servicePort (its
   * local address, signed as the socket layer reads it): the real server, on the same port.
   * Undefined when servicePort is not a configured service (someone connected to the gateway
   * port itself, or to a service since removed).
   *
   * The targets are kept per port and made again only when the services or `real_ip` change:
   * no object per connection, and the relay's own ports ({@link TcpTargets.divertOwn}) are
   * looked up by the same code as the services, so that a warm-up on them prepares it for
   * clients.
   */
  target(servicePort: number, local: number): DivertedTarget | undefined {
    const s = this.settings();
    if (s.tcpPorts !== this.#targetPorts || s.realIp !== this.#targetIp) this.#makeTargets(s);
    const t = this.#targets.get(servicePort);
    return t === undefined || (t.local !== 0 && t.local !== local) ? undefined : t;
  }

  /**
   * Where an IPv6 connection to service port `servicePort` goes: the IPv6 real server on the
   * same port, or undefined (no IPv6 server, or not a service). IPv4 and IPv6 clients are
   * each relayed within their family.
   */
  target6(servicePort: number): string | undefined {
    const s = this.settings();
    return s.realIp6 !== undefined && s.tcpPorts.has(servicePort) ? s.realIp6 : undefined;
  }

  /** True when IPv6 clients are relayed: the relay then listens for them too. */
  ipv6(): boolean {
    return this.settings().relayIp6 !== undefined;
  }

  /**
   * Diverts connections to `local`:`port` (a port of the relay's own, such as its warm-up's)
   * to `server`:`serverPort`, until {@link TcpTargets.undivertOwn}. Addresses signed or not.
   */
  divertOwn(port: number, local: number, server: number, serverPort: number): void {
    this.#ownTargets.set(port, divertedTarget(server, serverPort, local));
    // Made now, not at the next connection: a warm-up then prepares the lookup's usual path.
    this.#makeTargets(this.settings());
  }

  /** Ends {@link TcpTargets.divertOwn} for `port`. */
  undivertOwn(port: number): void {
    this.#ownTargets.delete(port);
    this.#makeTargets(this.settings());
  }

  #makeTargets(s: TcpTargetSettings): void {
    this.#targets = new Map(this.#ownTargets);
    for (const port of s.tcpPorts) this.#targets.set(port, divertedTarget(s.realIp, port, 0));
    this.#targetPorts = s.tcpPorts;
    this.#targetIp = s.realIp;
  }
}
