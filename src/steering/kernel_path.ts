/**
 * The kernel path: what carries established flows without krelay. An nftables table of
 * krelay's own (nft.ts: UDP NAT against a flow set, TCP's servers' answers handed to the
 * relay's sockets), the BPF sk_lookup program (sk_lookup.ts) that hands clients' new TCP
 * connections to the gateway listeners (TPROXY in the table where the kernel refuses BPF), and
 * the UDP flowtable (udp_flowtable.ts) that forwards established IPv4 UDP flows at ingress. The
 * policy routes of earlier versions (tproxy_route.ts) are only removed.
 *
 * @module
 */

import { type CommandRunner, mustRun, runCommand } from "../system/command.ts";
import { logger } from "../system/log.ts";
import { NFT_TABLE, QUEUE_CHAIN, renderNatTable, renderNatUpdate } from "./nft.ts";
import { SkLookup, type SkLookupTarget } from "./sk_lookup.ts";
import {
  ipv4Spec,
  ipv6Spec,
  kernelUdpPorts,
  sameButHeldSyns,
  type Steering,
  type SteeringSpec,
} from "./steering.ts";
import { routeRemovalCommands } from "./tproxy_route.ts";
import {
  heldSynQueueRules,
  removeIcmp6Queue,
  scriptedQueueChange,
  scriptedQueueRules,
} from "./ip6_queue.ts";
import { insertQueueRule } from "./nft_queue.ts";
import type { FlowtableConfig, FlowtableCounters } from "./udp_flowtable.ts";
import type { KernelUdpFlow } from "./kernel_udp_flows.ts";

const log = logger("steering");

/** What hands the client's connections to the gateway listeners (sk_lookup.ts), if allowed. */
export interface ListenerSteering {
  update(target: SkLookupTarget, listeners: readonly number[]): void;
  close(): void;
}

/** Puts the NFQUEUE rule for `queue` in a table's queue chain (nft_queue.ts). */
export type QueueRule = (table: string, chain: string, queue: number) => void;

/** The IPv6 table's queue rule: always krelay's own (krelay.ko's hooks are IPv4's). */
const ipv6QueueRule: QueueRule = (table, chain, queue) =>
  insertQueueRule(table, chain, queue, "ip6");

/** The UDP flowtable (udp_flowtable.ts), as the kernel path uses it. */
export interface UdpFastPath {
  readonly config: FlowtableConfig;
  /** Attaches to the interfaces not yet attached; returns how many are. */
  attach(): number;
  reconfigure(config: FlowtableConfig): void;
  counters(): FlowtableCounters;
  forget(flows: readonly KernelUdpFlow[]): void;
  close(): void;
}

/** Opens a flowtable; throws when the kernel refuses it. */
export type OpenFlowtable = (config: FlowtableConfig) => UdpFastPath;

/** Attaches the steering to the listeners; throws when the kernel refuses. */
export type AttachListeners = (
  target: SkLookupTarget,
  listeners: readonly number[],
) => ListenerSteering;

// A crashed run can leave at most a few duplicate policy rules; this bounds the removal loop.
const MAX_STALE_RULES = 16;

/** {@link Steering}'s kernel path, through `nft`, `ip` and the bpf(2) system call. */
export class KernelPath implements Steering {
  #listeners?: ListenerSteering;
  /** The IPv4 table is installed (IPv4 clients are steered). */
  #ipv4 = false;
  /** The IPv6 table and route are installed (IPv6 clients are steered). */
  #ipv6 = false;
  /**
   * The ip6tables rules queueing scripted IPv6 services and IPv6 clients' held SYNs
   * (ip6_queue.ts), as installed.
   */
  #scripted6: string[][] = [];
  /** The spec last installed or updated to. */
  #last?: SteeringSpec;
  /** Said once: why TPROXY diverts instead of sk_lookup. */
  #fallbackLogged = false;
  /** The kernel refused `reject` in prerouting (before Linux 5.x): the relay resets instead. */
  #noReject = false;
  /** The IPv4 UDP flowtable, while the table NATs UDP services (and the kernel allows it). */
  #flowtable?: UdpFastPath;
  /** What the flowtable's maps were made for: any change empties them (new ones). */
  #flowtableFor = "";
  /** The kernel refused the flowtable: said once, not tried again. */
  #flowtableRefused = false;

  constructor(
    private readonly run: CommandRunner = runCommand,
    private readonly nft = "nft",
    private readonly ip = "ip",
    private readonly attachListeners: AttachListeners = (t, l) => SkLookup.attach(t, l),
    private readonly ip6tables = "ip6tables",
    /**
     * Whether the table's own chain queues the packets krelay must decide (the default
     * datapath), and how; undefined: krelay.ko's hooks select them.
     */
    private readonly queueRule?: QueueRule,
    /** The same for the IPv6 table, which has it whatever selects IPv4's packets. */
    private readonly queueRule6: QueueRule = ipv6QueueRule,
    /** The UDP flowtable's maker; undefined: none (UDP takes the rules' path alone). */
    private readonly openFlowtable?: OpenFlowtable,
  ) {}

  /** The UDP flowtable's counters; undefined when there is none. */
  flowtable(): FlowtableCounters | undefined {
    return this.#flowtable?.counters();
  }

  /** Flows evicted from the table's maps leave the flowtable at once. */
  forgetUdpFlows(flows: readonly KernelUdpFlow[]): void {
    this.#flowtable?.forget(flows);
  }

  async install(spec: SteeringSpec): Promise<void> {
    await this.remove();
    try {
      this.#listeners = this.#attach(spec);
      const skLookup = this.#listeners !== undefined;
      await this.#syncIpv4(spec, skLookup);
      await this.#syncIpv6(spec, skLookup);
      this.#last = spec;
    } catch (e) {
      await this.remove();
      throw e;
    }
  }

  /** sk_lookup for `spec`'s listeners, or undefined (TPROXY then) when none or refused. */
  #attach(spec: SteeringSpec): ListenerSteering | undefined {
    if (!spec.listeners?.length) return undefined;
    try {
      const attached = this.attachListeners(spec, spec.listeners);
      log.info("TCP connections reach the gateway listener by sk_lookup");
      return attached;
    } catch (e) {
      if (!this.#fallbackLogged) {
        log.warn("TCP diverted by TPROXY: sk_lookup refused ({error})", { error: String(e) });
        this.#fallbackLogged = true;
      }
      return undefined;
    }
  }

  async update(spec: SteeringSpec): Promise<void> {
    // Only the held SYNs changed: the IPv4 side has no part; IPv6's queue rules follow. (An
    // update to the same spec applies it all again.)
    const last = this.#last;
    this.#last = spec;
    const held = (x: SteeringSpec) => JSON.stringify(x.heldSynPorts ?? []);
    if (last !== undefined && held(last) !== held(spec) && sameButHeldSyns(last, spec)) {
      const six = ipv6Spec(spec);
      if (six === undefined || !this.#ipv6) return;
      const change = scriptedQueueChange(
        this.run,
        this.#scripted6,
        queueRules6(six),
        this.ip6tables,
      );
      await change.add();
      await change.drop();
      this.#scripted6 = queueRules6(six);
      return;
    }
    // The program first: the rules then stop diverting only once it hands connections over.
    if (this.#listeners === undefined) this.#listeners = this.#attach(spec);
    else this.#listeners.update(spec, spec.listeners ?? []);
    const skLookup = this.#listeners !== undefined;
    await this.#syncIpv4(spec, skLookup);
    await this.#syncIpv6(spec, skLookup);
  }

  /**
   * The IPv4 table when `spec` steers IPv4 clients (it does unless the relay is IPv6 only):
   * created, updated in place, or removed as the spec asks.
   */
  async #syncIpv4(spec: SteeringSpec, skLookup: boolean): Promise<void> {
    const four = ipv4Spec(spec);
    if (four === undefined) {
      if (this.#ipv4) await this.#removeIpv4();
      return;
    }
    if (this.#ipv4) {
      await this.#applyTable(four, (s) => renderNatUpdate(s, skLookup));
      this.#syncFlowtable(four);
      return;
    }
    await this.#applyTable(four, (s) => renderNatTable(s, skLookup));
    this.#ipv4 = true;
    this.queueRule?.(NFT_TABLE, QUEUE_CHAIN, spec.queue);
    this.#syncFlowtable(four);
    // No IPv4 policy route: the table delivers the servers' answers itself (nft.ts,
    // T4_DELIVERY); #removeIpv4 still removes the one of an earlier version's crashed run.
  }

  /**
   * The flowtable for the IPv4 table's UDP services, after the table: new maps whenever what
   * they were learned under changed (a service scripted since, the relay's address, the
   * timeout), so that no flow the rules no longer NAT is carried on. Where the kernel refuses
   * it, UDP takes the rules' path alone.
   */
  #syncFlowtable(four: SteeringSpec & { relayIp: string }): void {
    const ports = kernelUdpPorts(four);
    if (ports.length === 0) {
      this.#closeFlowtable();
      return;
    }
    const config: FlowtableConfig = {
      relayIp: four.relayIp,
      timeoutMs: Math.max(1, Math.round(four.udpTimeout * 1000)),
      maxEntries: four.natMaxEntries,
    };
    const made = JSON.stringify([config, ports]);
    try {
      if (this.#flowtable === undefined) {
        if (this.#flowtableRefused || this.openFlowtable === undefined) return;
        this.#flowtable = this.openFlowtable(config);
      } else if (made !== this.#flowtableFor) {
        this.#flowtable.reconfigure(config);
      }
      this.#flowtableFor = made;
      this.#flowtable.attach();
    } catch (e) {
      this.#closeFlowtable();
      this.#flowtableRefused = true;
      log.warn("UDP flows take the rules' path only: the kernel refused the flowtable ({error})", {
        error: String(e),
      });
    }
  }

  #closeFlowtable(): void {
    this.#flowtable?.close();
    this.#flowtable = undefined;
    this.#flowtableFor = "";
  }

  async #removeIpv4(): Promise<void> {
    this.#ipv4 = false;
    this.#closeFlowtable();
    // Whatever installed it (or a crashed run left it); a missing nft is no error here.
    await this.run(this.nft, ["delete", "table", "ip", NFT_TABLE]);
    const route = routeRemovalCommands();
    for (let i = 0; i < MAX_STALE_RULES; i++) {
      if ((await this.run(this.ip, route.rule)).code !== 0) break;
    }
    await this.run(this.ip, route.routes);
  }

  /**
   * Applies a table's script for `spec`. A kernel that refuses `reject` in prerouting
   * (the refused TCP services' rule) fails the whole transaction: it is then applied without
   * that rule, said once, and the relay resets those clients after the accept instead.
   */
  async #applyTable(spec: SteeringSpec, render: (spec: SteeringSpec) => string): Promise<void> {
    const refusing = (spec.refusedTcpPorts?.length ?? 0) + (spec.refusedTcpPorts6?.length ?? 0) > 0;
    const without = { ...spec, refusedTcpPorts: [], refusedTcpPorts6: [] };
    if (!refusing || this.#noReject) {
      await mustRun(this.run, this.nft, ["-f", "-"], render(without));
      return;
    }
    try {
      await mustRun(this.run, this.nft, ["-f", "-"], render(spec));
    } catch (e) {
      await mustRun(this.run, this.nft, ["-f", "-"], render(without));
      this.#noReject = true;
      log.warn(
        "the kernel refuses reject in prerouting ({error}): a TCP service with no server up " +
          "is accepted and reset, not refused",
        { error: String(e) },
      );
    }
  }

  /**
   * The IPv6 table (nft.ts, family ip6) and queue rules when `spec` steers IPv6 clients:
   * created, updated in place (its flows kept), or removed as the spec asks.
   */
  async #syncIpv6(spec: SteeringSpec, skLookup: boolean): Promise<void> {
    const six = ipv6Spec(spec);
    if (six === undefined) {
      if (this.#ipv6) await this.#removeIpv6();
      return;
    }
    // A newly scripted service is queued before the table stops NATing it, and queued no
    // longer only after the table NATs it again.
    const wanted = queueRules6(six);
    const change = scriptedQueueChange(this.run, this.#scripted6, wanted, this.ip6tables);
    if (this.#ipv6) {
      await change.add();
      this.#scripted6 = [...this.#scripted6, ...wanted];
      await this.#applyTable(six, (s) => renderNatUpdate(s, skLookup, "ip6"));
      await change.drop();
      this.#scripted6 = wanted;
      return;
    }
    await this.#applyTable(six, (s) => renderNatTable(s, skLookup, "ip6"));
    this.#ipv6 = true;
    // No IPv6 policy route either (nft.ts, T4_DELIVERY); #removeIpv6 removes an earlier
    // version's.
    // The table's queue chain takes the ICMPv6 errors of UDP flows, for krelay to translate,
    // and each new flow's first packet; ip6tables rules only every packet of the scripted
    // services and the held SYNs.
    this.queueRule6(NFT_TABLE, QUEUE_CHAIN, spec.queue);
    this.#scripted6 = wanted;
    await scriptedQueueChange(this.run, [], wanted, this.ip6tables).add();
  }

  async #removeIpv6(): Promise<void> {
    this.#ipv6 = false;
    this.#scripted6 = [];
    await removeIcmp6Queue(this.run, this.ip6tables, this.nft);
    await this.run(this.nft, ["delete", "table", "ip6", NFT_TABLE]);
    const route = routeRemovalCommands(true);
    for (let i = 0; i < MAX_STALE_RULES; i++) {
      if ((await this.run(this.ip, route.rule)).code !== 0) break;
    }
    await this.run(this.ip, route.routes);
  }

  async remove(): Promise<void> {
    this.#last = undefined;
    this.#listeners?.close();
    this.#listeners = undefined;
    await this.#removeIpv4();
    await this.#removeIpv6();
  }
}

/** The ip6tables rules that queue the IPv6 side's scripted services and held SYNs. */
function queueRules6(six: SteeringSpec & { relayIp: string }): string[][] {
  const held = (six.heldSynPorts ?? []).filter((p) =>
    six.tcpPorts.includes(p) && !six.scriptedTcpPorts.includes(p)
  );
  return [
    ...scriptedQueueRules(six.queue, six.relayIp, six.scriptedUdpPorts, six.scriptedTcpPorts),
    ...heldSynQueueRules(six.queue, six.relayIp, held),
  ];
}
