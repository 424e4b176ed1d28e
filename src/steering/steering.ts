/**
 * Steering: what makes the kernel carry established flows and hand krelay exactly the packets it
 * must decide. Two parts, composed by {@link ComposedSteering}:
 *
 * - the kernel path (kernel_path.ts): krelay's nftables table (UDP NAT against its flow set),
 *   the BPF sk_lookup program (or TPROXY) that hands clients' TCP connections to the gateway
 *   listener, and the policy route that delivers the servers' answers to the relay's sockets;
 * - the queue selection: which packets go to krelay's NFQUEUE (each new UDP flow's first
 *   packet, and every packet of a service that has a packet script), by iptables rules
 *   (iptables_steering.ts) or by krelay.ko's hooks (kmod.ts).
 *
 * @module
 */

/** What the steering carries and selects. */
export interface SteeringSpec {
  queue: number;
  relayIp: string;
  /** The real server new UDP flows are sent to by the kernel. */
  realIp: string;
  /** The gateway port, where the relay listens (the TPROXY target). */
  gport: number;
  /** UDP service ports: the configured ones and those of live flows. */
  udpPorts: readonly number[];
  /** TCP service ports: the configured ones and those of live connections. */
  tcpPorts: readonly number[];
  /**
   * Services whose every packet goes through the queue, because a packet script acts on them:
   * UDP ports (NATed in user space, not by the kernel) and TCP ports (the client's segments
   * are queued for the scripts' verdicts; the connection is still relayed as any other).
   */
  scriptedUdpPorts: readonly number[];
  scriptedTcpPorts: readonly number[];
  /** Conntrack tracks relayed TCP; false exempts it (see nft.ts). */
  tcpConntrack: boolean;
  /** Seconds a UDP flow lives after its last packet, and the most flows the kernel holds. */
  udpTimeout: number;
  natMaxEntries: number;
  /**
   * The gateway listeners' descriptors in this process, for the sk_lookup program
   * (sk_lookup.ts) that hands them new connections; without them, or where BPF is refused,
   * TPROXY does.
   */
  listeners?: readonly number[];
  /**
   * The relay's IPv6 address and the IPv6 real server: IPv6 clients are steered only when
   * both are given (IPv4 and IPv6 clients are each relayed within their family).
   */
  relayIp6?: string;
  realIp6?: string;
  /** The IPv6 gateway listeners' descriptors, for sk_lookup. */
  listeners6?: readonly number[];
}

/**
 * The spec of the IPv6 side, in the IPv4 spec's fields (relayIp and realIp the IPv6 ones), or
 * undefined when IPv6 clients are not steered. Packet scripts see IPv4 only, so the kernel
 * NATs every IPv6 UDP service.
 */
export function ipv6Spec(spec: SteeringSpec): SteeringSpec | undefined {
  if (spec.relayIp6 === undefined || spec.realIp6 === undefined) return undefined;
  return { ...spec, relayIp: spec.relayIp6, realIp: spec.realIp6, scriptedUdpPorts: [] };
}

/** The UDP ports the kernel NATs: those without a script. */
export function kernelUdpPorts(spec: SteeringSpec): number[] {
  return spec.udpPorts.filter((p) => !spec.scriptedUdpPorts.includes(p));
}

/** Installs and removes the steering. Both are idempotent. */
export interface Steering {
  /** Removes anything left by an earlier (crashed) run, then installs for `spec`. */
  install(spec: SteeringSpec): Promise<void>;
  /** Changes the installed steering to `spec` at once (no moment without it). */
  update(spec: SteeringSpec): Promise<void>;
  /**
   * What others set in the steering's own configuration (krelay.ko's /proc files), for the
   * daemon to follow; absent when the steering has no such place.
   */
  observe?(): Promise<{ gport: number; realIp: string; started: boolean }>;
  /** Removes everything krelay installed; safe to call when nothing is installed. */
  remove(): Promise<void>;
}

/**
 * Several steerings as one: installed and updated in order (the kernel path first, so that a
 * flow the queue records finds its rewriting in place), removed in reverse.
 */
export class ComposedSteering implements Steering {
  readonly parts: readonly Steering[];
  readonly observe?: Steering["observe"];

  constructor(...parts: Steering[]) {
    this.parts = parts;
    const observer = parts.find((p) => p.observe !== undefined);
    if (observer) this.observe = () => observer.observe!();
  }

  async install(spec: SteeringSpec): Promise<void> {
    await this.remove();
    try {
      for (const p of this.parts) await p.install(spec);
    } catch (e) {
      await this.remove();
      throw e;
    }
  }

  async update(spec: SteeringSpec): Promise<void> {
    for (const p of this.parts) await p.update(spec);
  }

  async remove(): Promise<void> {
    let first: unknown;
    for (const p of [...this.parts].reverse()) {
      await p.remove().catch((e) => (first ??= e));
    }
    if (first !== undefined) throw first;
  }
}
