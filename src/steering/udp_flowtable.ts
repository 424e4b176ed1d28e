/**
 * A software flowtable for the established IPv4 UDP flows the kernel path NATs (nft.ts): two
 * tc programs (flowtable_programs.ts) on every Ethernet interface of the namespace. nftables still NATs
 * each flow's first datagrams and marks what it translated ({@link FLOW_LEARN_MARK}); the
 * egress program learns the flow from that mark, and the ingress program then forwards the
 * flow's datagrams itself: one hash lookup, the address, TTL and checksums rewritten, and out
 * through the device the FIB names, with no netfilter hook, no routing decision and no
 * forward path on the way (the kernel's own flowtable offload does the same for conntrack's
 * flows; it is not built into every kernel).
 *
 * nftables stays the flow table of record: one datagram per flow, direction and
 * {@link SYNC_MS} goes its usual way, so that its entries (timeouts, the status, eviction, the
 * passive health checks) are refreshed as before; a flow nftables forgot is forgotten here
 * within that time. What the programs do not handle (fragments, IP options, a TTL about to run
 * out, a datagram too big for the next hop, ICMP errors) passes untouched to the stack and its
 * rules, as before.
 *
 * Each configuration gets new maps and programs, swapped in on the same links (tcx), so that a
 * flow of a service now scripted, or of an old relay address, is never carried here again. The
 * links belong to the process: they go with it, a crash included.
 *
 * @example
 * ```ts ignore
 * const table = UdpFlowtable.open({ relayIp: "198.51.100.1", timeoutMs: 30_000, maxEntries: 65_536 });
 * table.attach(); // interfaces added later: attach() again
 * table.counters(); // { forwarded, synced, learnedRequests, learnedReplies }
 * table.close();
 * ```
 *
 * @module
 */

import {
  AttachType,
  closeQuietly,
  createLink,
  createMap,
  loadProgram,
  mapDelete,
  mapLookup,
  MapType,
  ProgType,
  updateLink,
} from "./bpf.ts";
import {
  FLOW_KEY_SIZE,
  FLOW_VALUE_SIZE,
  flowKey,
  FlowStat,
  forwardProgram,
  learnProgram,
  REPLY_KEY_SIZE,
  replyKey,
} from "./flowtable_programs.ts";
import type { KernelUdpFlow } from "./kernel_udp_flows.ts";
import { FLOW_LEARN_MARK } from "./marks.ts";
import { libc } from "../../ffi/libc.ts";

/**
 * How often a flow's datagram goes through nftables, each direction (see the module doc): at
 * most a quarter of udp_timeout, so that its entries never expire while the flow talks.
 */
export const SYNC_MS = 1_000;

/**
 * The most flows each map holds, whatever nat_max_entries says: LRU maps are allocated whole
 * (about 90 bytes a flow each), where nftables' sets grow as flows come. Beyond it, the least
 * recently used flows take the rules' path until they are learned again.
 */
export const MAX_ENTRIES = 1 << 18;

/** What a flowtable carries for: the kernel path's IPv4 UDP NAT. */
export interface FlowtableConfig {
  relayIp: string;
  /** A flow unused this long is left to nftables (udp_timeout). */
  timeoutMs: number;
  /** Flows each map holds (nat_max_entries, at most {@link MAX_ENTRIES}). */
  maxEntries: number;
}

/** Datagrams and flows since the flowtable was opened. */
export interface FlowtableCounters {
  /** Datagrams forwarded at ingress. */
  forwarded: number;
  /** Datagrams of known flows passed to nftables to refresh its entries. */
  synced: number;
  learnedRequests: number;
  learnedReplies: number;
}

/** One configuration's maps and programs. */
interface Generation {
  flows: number;
  replies: number;
  stats: number;
  forward: number;
  learn: number;
}

/** The Ethernet interfaces of this network namespace: name -> index. */
export function namespaceInterfaces(): Map<string, number> {
  const found = new Map<string, number>();
  // /proc/net is this process's namespace's (sysfs is the mount's).
  const lines = Deno.readTextFileSync("/proc/net/dev").split("\n").slice(2);
  const fd = libc().socket(AF_INET, SOCK_DGRAM, 0);
  try {
    for (const line of lines) {
      const name = line.split(":")[0].trim();
      if (name === "" || !isEthernet(fd, name)) continue;
      const index = libc().if_nametoindex(new TextEncoder().encode(`${name}\0`));
      if (index > 0) found.set(name, index);
    }
  } finally {
    closeQuietly(fd);
  }
  return found;
}

const AF_INET = 2, SOCK_DGRAM = 2, SIOCGIFHWADDR = 0x8927n, ARPHRD_ETHER = 1;

/**
 * Whether `name` has Ethernet framing, as the programs read packets: loopback and tunnels
 * (no link-layer header) are left to the rules.
 */
function isEthernet(fd: number, name: string): boolean {
  // struct ifreq: the name (16 bytes), then the hardware address, its family first.
  const ifreq = new Uint8Array(40);
  ifreq.set(new TextEncoder().encode(name).subarray(0, 15));
  if (libc().ioctl(fd, SIOCGIFHWADDR, ifreq) !== 0) return false;
  return new DataView(ifreq.buffer).getUint16(16, true) === ARPHRD_ETHER;
}

/**
 * CPUs a per-CPU map has a value for (the possible ones, not only those online): fixed at
 * boot, so read once.
 */
let possible = 0;
function possibleCpus(): number {
  if (possible > 0) return possible;
  const text = Deno.readTextFileSync("/sys/devices/system/cpu/possible").trim();
  // "0-3" or "0,2-5": the highest number, plus one.
  possible = Math.max(...text.split(/[,-]/).map(Number)) + 1;
  return possible;
}

/** The flowtable: its current generation and its links. See the module documentation. */
export class UdpFlowtable {
  #gen: Generation;
  #config: FlowtableConfig;
  /** The counters of the generations replaced. */
  #done: FlowtableCounters = { forwarded: 0, synced: 0, learnedRequests: 0, learnedReplies: 0 };
  /** tcx links by interface index: [ingress, egress]. */
  readonly #links = new Map<number, [number, number]>();

  private constructor(gen: Generation, config: FlowtableConfig) {
    this.#gen = gen;
    this.#config = config;
  }

  /** Maps and programs for `config`; throws, leaving nothing, when the kernel refuses them. */
  static open(config: FlowtableConfig): UdpFlowtable {
    return new UdpFlowtable(build(config), config);
  }

  /** The configuration in effect. */
  get config(): FlowtableConfig {
    return this.#config;
  }

  /**
   * Attaches both programs to every interface not yet attached (a link whose interface is gone
   * is dropped); returns how many interfaces are attached. Throws when the kernel refuses a
   * link (the interfaces attached so far stay).
   */
  attach(interfaces = namespaceInterfaces()): number {
    const present = new Set(interfaces.values());
    for (const [index, links] of this.#links) {
      if (present.has(index)) continue;
      links.forEach(closeQuietly);
      this.#links.delete(index);
    }
    for (const index of present) {
      if (this.#links.has(index)) continue;
      const ingress = createLink(this.#gen.forward, index, AttachType.TcxIngress);
      try {
        const egress = createLink(this.#gen.learn, index, AttachType.TcxEgress);
        this.#links.set(index, [ingress, egress]);
      } catch (e) {
        closeQuietly(ingress);
        throw e;
      }
    }
    return this.#links.size;
  }

  /**
   * Follows a new configuration with new, empty maps and their programs, swapped in on the
   * links at once: every flow is learned again from nftables' next translation of it.
   */
  reconfigure(config: FlowtableConfig): void {
    const gen = build(config);
    try {
      for (const [ingress, egress] of this.#links.values()) {
        updateLink(ingress, gen.forward);
        updateLink(egress, gen.learn);
      }
    } catch (e) {
      // Some links may run the new programs: they hold them; the old ones stay with the rest.
      release(gen);
      throw e;
    }
    this.#done = this.counters();
    release(this.#gen);
    this.#gen = gen;
    this.#config = config;
  }

  /**
   * Forgets flows nftables no longer has (evicted): their next datagram goes to the rules,
   * as a new flow's.
   */
  forget(flows: readonly KernelUdpFlow[]): void {
    for (const f of flows) {
      mapDelete(this.#gen.flows, flowKey(f.client, f.clientPort, f.servicePort));
      mapDelete(this.#gen.replies, replyKey(f.server, f.client, f.servicePort, f.clientPort));
    }
  }

  /** The counters since the flowtable was opened, summed over CPUs. */
  counters(): FlowtableCounters {
    const done = this.#done;
    return {
      forwarded: done.forwarded + this.#count(FlowStat.Forwarded),
      synced: done.synced + this.#count(FlowStat.Synced),
      learnedRequests: done.learnedRequests + this.#count(FlowStat.LearnedRequests),
      learnedReplies: done.learnedReplies + this.#count(FlowStat.LearnedReplies),
    };
  }

  /** One counter of the current generation, summed over CPUs. */
  #count(stat: number): number {
    if (this.#gen.stats < 0) return 0;
    const key = new Uint8Array(4);
    new DataView(key.buffer).setUint32(0, stat, true);
    const perCpu = new BigUint64Array(possibleCpus());
    if (!mapLookup(this.#gen.stats, key, new Uint8Array(perCpu.buffer))) return 0;
    return Number(perCpu.reduce((a, b) => a + b, 0n));
  }

  /** Detaches from every interface and frees the maps. Idempotent. */
  close(): void {
    for (const links of this.#links.values()) links.forEach(closeQuietly);
    this.#links.clear();
    release(this.#gen);
    this.#gen = { flows: -1, replies: -1, stats: -1, forward: -1, learn: -1 };
  }
}

/** New maps and programs for `config`; nothing is left when the kernel refuses one. */
function build(config: FlowtableConfig): Generation {
  const gen: Generation = { flows: -1, replies: -1, stats: -1, forward: -1, learn: -1 };
  try {
    const max = Math.min(MAX_ENTRIES, Math.max(1, config.maxEntries));
    gen.flows = createMap(MapType.LruHash, FLOW_KEY_SIZE, FLOW_VALUE_SIZE, max);
    gen.replies = createMap(MapType.LruHash, REPLY_KEY_SIZE, FLOW_VALUE_SIZE, max);
    gen.stats = createMap(MapType.PercpuArray, 4, 8, Object.keys(FlowStat).length);
    const layout = {
      relayIp: config.relayIp,
      flows: gen.flows,
      replies: gen.replies,
      stats: gen.stats,
      timeoutMs: config.timeoutMs,
      syncMs: Math.min(SYNC_MS, Math.max(1, Math.floor(config.timeoutMs / 4))),
      learnMark: FLOW_LEARN_MARK,
    };
    gen.forward = loadProgram(ProgType.SchedCls, AttachType.TcxIngress, forwardProgram(layout));
    gen.learn = loadProgram(ProgType.SchedCls, AttachType.TcxEgress, learnProgram(layout));
    return gen;
  } catch (e) {
    release(gen);
    throw e;
  }
}

/** Closes a generation's descriptors (the links hold what they still run). */
function release(gen: Generation): void {
  for (const fd of [gen.forward, gen.learn, gen.flows, gen.replies, gen.stats]) closeQuietly(fd);
}
