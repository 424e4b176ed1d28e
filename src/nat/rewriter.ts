/**
 * The rewrite engine: for one queued packet (its hook and bytes) decide drop, accept as is,
 * or accept rewritten, applying the relay's flows. Pure: no I/O, time from a clock.
 *
 * @example
 * ```ts
 * import { Rewriter } from "./rewriter.ts";
 * import { NatTable } from "./nat_table.ts";
 * import { PortPool } from "./port_pool.ts";
 * const table = new NatTable({ capacity: 1024, now: Date.now });
 * declare const settings: import("./rewriter.ts").RewriterSettings;
 * const pool = new PortPool(20000, 29999);
 * const engine = new Rewriter({ table, pool, settings: () => settings, now: Date.now });
 * ```
 * @module
 */

import { IpProtocol, Ipv4Packet, parseIpv4Packet } from "../packet/ipv4_packet.ts";
import { newCounters, type PacketCounters } from "./counters.ts";
import { Hook } from "./hook.ts";
import type { NatTable } from "./nat_table.ts";
import type { PortPool } from "./port_pool.ts";
import { TcpNat, type TcpNatSettings, type TcpResult } from "./tcp_nat.ts";
import { UdpNat, type UdpNatSettings } from "./udp_nat.ts";

/** What to do with a packet. */
export const Action = {
  /** Drop it. */
  Drop: 0,
  /** Accept it unchanged. */
  Accept: 1,
  /** Accept it: its bytes were rewritten in place. */
  AcceptRewritten: 2,
} as const;
/** One of {@link Action}'s values. */
export type Action = typeof Action[keyof typeof Action];

/** The engine's view of the configuration, read on every packet. */
export interface RewriterSettings extends UdpNatSettings, TcpNatSettings {
  /** The relay address clients talk to. */
  relayIp: number;
  /** UDP service ports relayed by NAT. */
  udpPorts: ReadonlySet<number>;
  /**
   * The kernel does the rewriting: krelay sees only each UDP flow's first packet, records the
   * flow and rewrites that packet, and the kernel's rules (nft_nat.ts) learn the flow from it
   * and rewrite the rest; TCP goes by TPROXY, unrewritten. False: krelay rewrites every packet.
   */
  kernelNat: boolean;
}

/** What a {@link Rewriter} works with. */
export interface RewriterOptions {
  table: NatTable;
  /** The relay's own ports toward servers (TCP). */
  pool: PortPool;
  /** Current settings, read on every packet. */
  settings: () => RewriterSettings;
  /** Clock in milliseconds. */
  now: () => number;
}

type TcpFlowCounter = "tcpToGateway" | "tcpFromGateway" | "tcpToServer" | "tcpFromServer";

type PassReason =
  | "passedOtherProtocol"
  | "passedOtherPort"
  | "passedNoFlow"
  | "passedFragment"
  | "passedMalformed";

/** Applies flows U1-U4 (and T1-T4 with the TCP relay) to queued packets. */
export class Rewriter {
  /** Counters since start. */
  readonly counters: PacketCounters = newCounters();
  readonly #udp: UdpNat;
  /** The TCP flows; the TCP relay uses it to find original destinations and bind ports. */
  readonly tcp: TcpNat;
  readonly table: NatTable;
  private readonly settings: () => RewriterSettings;
  private readonly now: () => number;

  constructor(options: RewriterOptions) {
    this.table = options.table;
    this.settings = options.settings;
    this.now = options.now;
    this.#udp = new UdpNat(options.table, options.settings);
    this.tcp = new TcpNat(options.table, options.settings, options.pool);
  }

  /**
   * Decides one packet. `bytes` is the IPv4 datagram (rewritten in place when the result is
   * AcceptRewritten); `checksumPartial` is the kernel's CHECKSUM_PARTIAL flag for it.
   */
  process(hook: Hook, bytes: Uint8Array, checksumPartial: boolean): Action {
    this.counters.seen++;
    const packet = parseIpv4Packet(bytes, checksumPartial);
    if (!(packet instanceof Ipv4Packet)) return this.#pass("passedMalformed");
    const tcp = packet.protocol === IpProtocol.TCP;
    if (!tcp && packet.protocol !== IpProtocol.UDP) return this.#pass("passedOtherProtocol");
    // Whole datagrams only: a rewritten first fragment would part from the rest of it.
    if (packet.isFragment) return this.#pass("passedFragment");
    if (tcp) return this.#tcp(hook, packet);
    if (hook === Hook.PreRouting) return this.#udpRequest(packet);
    if (hook === Hook.PostRouting) return this.#udpReply(packet);
    return this.#pass("passedOtherPort");
  }

  #tcp(hook: Hook, packet: Ipv4Packet): Action {
    const now = this.now();
    const c = this.counters;
    if (hook === Hook.PreRouting) {
      const s = this.settings();
      if (packet.dst === s.relayIp) {
        const allowNew = s.tcpPorts.has(packet.dstPort);
        const result = this.tcp.toGateway(packet, now, allowNew, !s.kernelNat);
        if (s.kernelNat) return this.#toKernel(result, "tcpToGateway");
        return this.#tcpResult(packet, result, "tcpToGateway");
      }
      if (this.tcp.pool.contains(packet.dstPort)) {
        return this.#tcpResult(packet, this.tcp.fromServer(packet, now), "tcpFromServer");
      }
      return this.#pass("passedOtherPort");
    }
    if (hook === Hook.PostRouting) {
      // kernel_nat queues no TCP (TPROXY and transparent sockets need no rewriting); a
      // packet queued by rules of an older run is left to the kernel.
      if (this.settings().kernelNat) return this.#pass("passedNoFlow");
      if (this.tcp.pool.contains(packet.srcPort)) {
        return this.#tcpResult(packet, this.tcp.toServer(packet, now), "tcpToServer");
      }
      return this.#tcpResult(packet, this.tcp.fromGateway(packet, now), "tcpFromGateway");
    }
    c.passed++;
    c.passedOtherPort++;
    return Action.Accept;
  }

  /** A TCP flow's first packet (from an older run's rules), recorded and left to the kernel. */
  #toKernel(result: TcpResult | "no-flow", flow: TcpFlowCounter): Action {
    if (result === "rewritten") {
      this.counters[flow]++;
      this.counters.toKernel++;
      return Action.Accept;
    }
    if (result === "full") {
      this.counters.dropped++;
      this.counters.droppedNatFull++;
      return Action.Drop;
    }
    return this.#pass(result === "conflict" ? "passedNoFlow" : "passedOtherPort");
  }

  #tcpResult(packet: Ipv4Packet, result: TcpResult, flow: TcpFlowCounter): Action {
    if (result === "rewritten") {
      this.counters[flow]++;
      return this.#rewritten(packet);
    }
    if (result === "full") {
      this.counters.dropped++;
      this.counters.droppedNatFull++;
      return Action.Drop;
    }
    return this.#pass("passedNoFlow");
  }

  #udpRequest(packet: Ipv4Packet): Action {
    const s = this.settings();
    if (packet.dst !== s.relayIp) return this.#pass("passedOtherPort");
    const result = this.#udp.request(packet, this.now(), s.udpPorts.has(packet.dstPort));
    if (result === "no-flow") return this.#pass("passedOtherPort");
    if (result === "full") {
      this.counters.dropped++;
      this.counters.droppedNatFull++;
      return Action.Drop;
    }
    if (result === "conflict") return this.#pass("passedNoFlow");
    this.counters.udpRequests++;
    // kernel_nat: the flow's first packet; the kernel's rules learn the flow from it.
    if (s.kernelNat) this.counters.toKernel++;
    return this.#rewritten(packet);
  }

  #udpReply(packet: Ipv4Packet): Action {
    if (this.#udp.reply(packet, this.now()) === undefined) return this.#pass("passedNoFlow");
    this.counters.udpReplies++;
    return this.#rewritten(packet);
  }

  #rewritten(packet: Ipv4Packet): Action {
    packet.finalize();
    this.counters.rewritten++;
    return Action.AcceptRewritten;
  }

  #pass(reason: PassReason): Action {
    this.counters.passed++;
    this.counters[reason]++;
    return Action.Accept;
  }
}
