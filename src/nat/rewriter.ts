/**
 * The rewrite engine: for one queued packet (its hook and bytes) decide drop, accept as is,
 * or accept rewritten, applying the relay's flows. Pure: no I/O, time from a clock.
 *
 * @example
 * ```ts
 * import { Rewriter } from "./rewriter.ts";
 * import { NatTable } from "./nat_table.ts";
 * const table = new NatTable({ capacity: 1024, now: Date.now });
 * declare const settings: import("./rewriter.ts").RewriterSettings;
 * const engine = new Rewriter(table, () => settings, Date.now);
 * ```
 * @module
 */

import { IpProtocol, Ipv4Packet, parseIpv4Packet } from "../packet/ipv4_packet.ts";
import { newCounters, type PacketCounters } from "./counters.ts";
import { Hook } from "./hook.ts";
import type { NatTable } from "./nat_table.ts";
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
export interface RewriterSettings extends UdpNatSettings {
  /** The relay address clients talk to. */
  relayIp: number;
  /** UDP service ports relayed by NAT. */
  udpPorts: ReadonlySet<number>;
}

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

  constructor(
    readonly table: NatTable,
    private readonly settings: () => RewriterSettings,
    private readonly now: () => number,
  ) {
    this.#udp = new UdpNat(table, settings);
  }

  /**
   * Decides one packet. `bytes` is the IPv4 datagram (rewritten in place when the result is
   * AcceptRewritten); `checksumPartial` is the kernel's CHECKSUM_PARTIAL flag for it.
   */
  process(hook: Hook, bytes: Uint8Array, checksumPartial: boolean): Action {
    this.counters.seen++;
    const packet = parseIpv4Packet(bytes, checksumPartial);
    if (!(packet instanceof Ipv4Packet)) return this.#pass("passedMalformed");
    if (packet.protocol !== IpProtocol.UDP) return this.#pass("passedOtherProtocol");
    // Whole datagrams only: a rewritten first fragment would part from the rest of it.
    if (packet.isFragment) return this.#pass("passedFragment");
    if (hook === Hook.PreRouting) return this.#udpRequest(packet);
    if (hook === Hook.PostRouting) return this.#udpReply(packet);
    return this.#pass("passedOtherPort");
  }

  #udpRequest(packet: Ipv4Packet): Action {
    const s = this.settings();
    if (packet.dst !== s.relayIp || !s.udpPorts.has(packet.dstPort)) {
      return this.#pass("passedOtherPort");
    }
    const result = this.#udp.request(packet, this.now());
    if (result === "full") {
      this.counters.dropped++;
      this.counters.droppedNatFull++;
      return Action.Drop;
    }
    if (result === "conflict") return this.#pass("passedNoFlow");
    this.counters.udpRequests++;
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
