/**
 * Steering: what makes the kernel carry established flows and hand krelay exactly the packets it
 * must decide. Two parts, composed by {@link ComposedSteering}:
 *
 * - the kernel path (kernel_path.ts): krelay's nftables table (UDP NAT against its flow set,
 *   the servers' TCP answers handed to the relay's sockets), the UDP flowtable that forwards
 *   established flows at ingress, and the BPF sk_lookup program (or TPROXY) that hands clients'
 *   TCP connections to the gateway listener;
 * - the queue selection: which packets go to krelay's NFQUEUE (each new UDP flow's first
 *   packet, and every packet of a service that has a packet script), by iptables rules
 *   (iptables_steering.ts) or by krelay.ko's hooks (kmod.ts).
 *
 * @module
 */

import type { FlowtableCounters } from "./udp_flowtable.ts";
import type { KernelUdpFlow } from "./kernel_udp_flows.ts";

/** What the steering carries and selects. */
export interface SteeringSpec {
  queue: number;
  /**
   * The relay's IPv4 address and the first IPv4 real server (krelay.ko shows it); IPv4
   * clients are steered only when both are given (an IPv6-only relay has neither).
   */
  relayIp?: string;
  realIp?: string;
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
  /**
   * UDP services with no real server up: a new flow's first packet is not queued but left to
   * the relay's own stack, which has no socket there and answers ICMP port unreachable (known
   * flows still go to their servers).
   */
  refusedUdpPorts?: readonly number[];
  /** Conntrack tracks relayed TCP; false exempts it (see nft.ts). */
  tcpConntrack: boolean;
  /**
   * TCP services whose clients' SYNs are queued, for krelay to hold until the server has
   * answered (syn_gate.ts): every one with `tcp_hold_syn` true, those in doubt with auto
   * (syn_doubt.ts); scripted services' are queued anyway.
   */
  heldSynPorts?: readonly number[];
  /**
   * IPv4 clients' held SYNs go to these queues rather than `queue`: `count` queues from
   * `base`, each SYN to the one of the CPU that received it (`base` + CPU % `count`), where the
   * relay thread keeping to that CPU holds it (daemon/thread_gate.ts).
   */
  heldSynQueues?: { base: number; count: number };
  /**
   * TCP services with no real server up: a client's SYN to one is answered with an RST by the
   * kernel (nft.ts), as by a host with nothing listening there, and goes no further; segments
   * of established connections pass as before.
   */
  refusedTcpPorts?: readonly number[];
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
  /**
   * The IPv6 servers UDP flows may be carried to, with the daemon's stable ids: those of
   * real_ip, and those taken out of it while krelay runs (their flows go on). Without it, the
   * one server realIp6 (id 0).
   */
  servers6?: readonly Server6[];
  /** {@link SteeringSpec.refusedUdpPorts} for IPv6 clients (no IPv6 server up). */
  refusedUdpPorts6?: readonly number[];
  /** {@link SteeringSpec.refusedTcpPorts} for IPv6 clients (no IPv6 server up). */
  refusedTcpPorts6?: readonly number[];
}

/** An IPv6 server of the steering: its address and the id of its flow set (udp6_rules.ts). */
export interface Server6 {
  address: string;
  id: number;
}

/** A spec of one family's side: its relay address and server given. */
export type FamilySpec = SteeringSpec & { relayIp: string; realIp: string };

/** The spec of the IPv4 side, or undefined when IPv4 clients are not steered (IPv6 only). */
export function ipv4Spec(spec: SteeringSpec): FamilySpec | undefined {
  const { relayIp, realIp } = spec;
  return relayIp === undefined || realIp === undefined ? undefined : { ...spec, relayIp, realIp };
}

/**
 * The spec of the IPv6 side, in the IPv4 spec's fields (relayIp and realIp the IPv6 ones), or
 * undefined when IPv6 clients are not steered. Scripted services are queued as IPv4's are
 * (ip6_queue.ts), and krelay NATs their UDP flows itself.
 */
export function ipv6Spec(spec: SteeringSpec): FamilySpec | undefined {
  if (spec.relayIp6 === undefined || spec.realIp6 === undefined) return undefined;
  return { ...spec, relayIp: spec.relayIp6, realIp: spec.realIp6 };
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
  /** The UDP flowtable's counters (udp_flowtable.ts); undefined when there is none. */
  flowtable?(): FlowtableCounters | undefined;
  /** Flows evicted from the kernel's maps: the flowtable forgets them too. */
  forgetUdpFlows?(flows: readonly KernelUdpFlow[]): void;
}

/**
 * The kernel path and a queue selection as one steering: installed in that order (so that a
 * flow the queue records finds its rewriting in place), removed in reverse.
 *
 * When the scripted services change, a service moves between the kernel path and the queue
 * without a moment in which neither takes its packets: the queue selection first adds what is
 * newly scripted (keeping what no longer is), then the kernel path changes, then the selection
 * drops what no longer is scripted. A packet that meets both the kernel's NAT and the queue
 * meanwhile is rewritten once (the first to see it changes its destination).
 */
export class ComposedSteering implements Steering {
  readonly observe?: Steering["observe"];
  #last?: SteeringSpec;

  constructor(readonly kernelPath: Steering, readonly selection: Steering) {
    const observer = [kernelPath, selection].find((p) => p.observe !== undefined);
    if (observer) this.observe = () => observer.observe!();
  }

  flowtable(): FlowtableCounters | undefined {
    return this.kernelPath.flowtable?.();
  }

  forgetUdpFlows(flows: readonly KernelUdpFlow[]): void {
    this.kernelPath.forgetUdpFlows?.(flows);
  }

  async install(spec: SteeringSpec): Promise<void> {
    await this.remove();
    try {
      await this.kernelPath.install(spec);
      await this.selection.install(spec);
      this.#last = spec;
    } catch (e) {
      await this.remove();
      throw e;
    }
  }

  async update(spec: SteeringSpec): Promise<void> {
    const last = this.#last;
    if (last !== undefined && !sameScripted(last, spec)) {
      await this.selection.update({
        ...spec,
        scriptedUdpPorts: union(last.scriptedUdpPorts, spec.scriptedUdpPorts),
        scriptedTcpPorts: union(last.scriptedTcpPorts, spec.scriptedTcpPorts),
      });
    }
    // Only the held SYNs changed (tcp_hold_syn auto): the queue selection alone, at once, and
    // the kernel path's ip6tables rules that queue IPv6 clients' SYNs (it changes only those).
    if (last === undefined || !sameButHeldSyns(last, spec) || ipv6Spec(spec) !== undefined) {
      await this.kernelPath.update(spec);
    }
    await this.selection.update(spec);
    this.#last = spec;
  }

  async remove(): Promise<void> {
    this.#last = undefined;
    let first: unknown;
    for (const p of [this.selection, this.kernelPath]) {
      await p.remove().catch((e) => (first ??= e));
    }
    if (first !== undefined) throw first;
  }
}

/**
 * Whether two specs differ at most in heldSynPorts and heldSynQueues, which only the queue
 * selection (and IPv6's SYN queue rules) render.
 */
export function sameButHeldSyns(a: SteeringSpec, b: SteeringSpec): boolean {
  const but = (x: SteeringSpec) => JSON.stringify({ ...x, heldSynPorts: [], heldSynQueues: 0 });
  return but(a) === but(b);
}

function union(a: readonly number[], b: readonly number[]): number[] {
  return [...new Set([...a, ...b])].sort((x, y) => x - y);
}

function sameScripted(a: SteeringSpec, b: SteeringSpec): boolean {
  const same = (x: readonly number[], y: readonly number[]) =>
    x.length === y.length && x.every((p, i) => p === y[i]);
  return same(a.scriptedUdpPorts, b.scriptedUdpPorts) &&
    same(a.scriptedTcpPorts, b.scriptedTcpPorts);
}
