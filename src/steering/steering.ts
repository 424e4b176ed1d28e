/**
 * Steering: what makes the kernel hand exactly the relayed packets to krelay's queue.
 * Implementations: iptables rules (iptables_steering.ts) and krelay.ko's hooks (kmod.ts).
 *
 * @module
 */

/** What the rules select. */
export interface SteeringSpec {
  queue: number;
  relayIp: string;
  udpPorts: readonly number[];
  tcpPorts: readonly number[];
  /** Gateway ports: the configured one, and older ones that live connections still use. */
  gports: readonly number[];
  /** The relay's own port range toward servers, [low, high]. */
  relayPorts: readonly [number, number];
  /** The kernel's NAT rewrites; only first packets are queued (see {@link KERNEL_NAT_CHAINS}). */
  kernelNat: boolean;
  /** kernel_nat: conntrack tracks relayed TCP; false exempts it (see nft_nat.ts). */
  tcpConntrack: boolean;
  /** kernel_nat: the real server (DNAT target) and the gateway port (TPROXY target). */
  realIp: string;
  gport: number;
  /** kernel_nat: seconds a UDP flow lives after its last packet, and the most flows held. */
  udpTimeout: number;
  natMaxEntries: number;
  /**
   * kernel_nat: the gateway listeners' descriptors in this process, for the sk_lookup program
   * (sk_lookup.ts) that hands them new connections; without them, or where BPF is refused,
   * TPROXY does.
   */
  listeners?: readonly number[];
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
