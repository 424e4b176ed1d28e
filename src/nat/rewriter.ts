/**
 * The rewrite engine: for one queued packet (its hook and bytes) decide drop, accept as is,
 * or accept rewritten, applying the relay's UDP flows. Pure: no I/O, time from a clock.
 *
 * The queue holds only what the kernel path leaves to krelay: each new UDP flow's first packet
 * (recorded and rewritten here; the kernel learns the flow from it), and every packet of a
 * service with a packet script: UDP rewritten here both ways (U1-U4), TCP client segments
 * passed unchanged once the scripts have decided (the kernel relays the connection).
 *
 * @example
 * ```ts
 * import { Rewriter } from "./rewriter.ts";
 * import { NatTable } from "./nat_table.ts";
 * const table = new NatTable({ capacity: 1024, now: Date.now });
 * declare const settings: import("./rewriter.ts").RewriterSettings;
 * const engine = new Rewriter({ table, settings: () => settings, now: Date.now });
 * ```
 * @module
 */

import { parseIcmpError } from "../packet/icmp_error.ts";
import { IpProtocol, Ipv4Packet, parseIpv4Packet } from "../packet/ipv4_packet.ts";
import { Ipv6Header, Ipv6Packet, parseIpv6Packet } from "../packet/ipv6_packet.ts";
import { ServiceBalancers, serviceKey } from "../servers/balancer.ts";
import { foldIpv6 } from "../servers/list.ts";
import { Udp6Flows } from "./udp6_flows.ts";
import { translateIcmp6Error } from "./icmp6_errors.ts";
import { newCounters, type PacketCounters } from "./counters.ts";
import { Hook } from "./hook.ts";
import type { NatTable } from "./nat_table.ts";
import { TcpTargets, type TcpTargetSettings } from "./tcp_targets.ts";
import { replyKey, requestKey, UdpNat, type UdpNatSettings } from "./udp_nat.ts";

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
export interface RewriterSettings extends UdpNatSettings, TcpTargetSettings {
  /** The relay's IPv4 address clients talk to; 0 when IPv4 clients are not relayed. */
  relayIp: number;
  /** UDP service ports relayed by NAT. */
  udpPorts: ReadonlySet<number>;
  /**
   * UDP services with a packet script: the queue has all their packets and krelay NATs them;
   * the others' first packets only, the kernel NATing the rest.
   */
  scriptedUdpPorts: ReadonlySet<number>;
}

/** What a {@link Rewriter} works with. */
export interface RewriterOptions {
  table: NatTable;
  /** Current settings, read on every packet. */
  settings: () => RewriterSettings;
  /** Clock in milliseconds. */
  now: () => number;
}

type PassReason =
  | "passedOtherProtocol"
  | "passedOtherPort"
  | "passedNoFlow"
  | "passedFragment"
  | "passedMalformed";

/** Applies flows U1-U4 to queued packets. */
export class Rewriter {
  /** Counters since start. */
  readonly counters: PacketCounters = newCounters();
  readonly #udp: UdpNat;
  /** Where diverted TCP connections go; the TCP relay asks it. */
  readonly tcp: TcpTargets;
  readonly table: NatTable;
  private readonly settings: () => RewriterSettings;
  private readonly now: () => number;

  constructor(options: RewriterOptions) {
    this.table = options.table;
    this.settings = options.settings;
    this.now = options.now;
    this.#udp = new UdpNat(options.table, options.settings);
    this.tcp = new TcpTargets(options.settings);
    this.udp6 = new Udp6Flows(options.table.options.capacity, options.now);
    this.kernel6 = new Udp6Flows(options.table.options.capacity, options.now);
  }

  /**
   * Decides one packet. `bytes` is the IPv4 datagram (rewritten in place when the result is
   * AcceptRewritten); `checksumPartial` is the kernel's CHECKSUM_PARTIAL flag for it.
   */
  process(hook: Hook, bytes: Uint8Array, checksumPartial: boolean): Action {
    this.counters.seen++;
    // The queue has IPv6 packets only for new UDP flows' first packets and the ICMPv6 errors
    // of UDP flows (udp6_rules.ts, icmp6_rules.ts).
    if (bytes[0] >>> 4 === 6) return this.#ipv6(hook, bytes, checksumPartial);
    const packet = parseIpv4Packet(bytes, checksumPartial);
    if (!(packet instanceof Ipv4Packet)) return this.#pass("passedMalformed");
    if (packet.protocol === IpProtocol.ICMP) return this.#icmpError(hook, bytes);
    const tcp = packet.protocol === IpProtocol.TCP;
    if (!tcp && packet.protocol !== IpProtocol.UDP) return this.#pass("passedOtherProtocol");
    // Whole datagrams only: a rewritten first fragment would part from the rest of it.
    if (packet.isFragment) return this.#pass("passedFragment");
    if (tcp) return this.#tcp(hook, packet);
    if (hook === Hook.PreRouting) return this.#udpRequest(packet);
    if (hook === Hook.PostRouting) return this.#udpReply(packet);
    return this.#pass("passedOtherPort");
  }

  /**
   * A TCP segment of a scripted service (its scripts have decided): the kernel relays the
   * connection, so it passes unchanged.
   */
  #tcp(hook: Hook, packet: Ipv4Packet): Action {
    const s = this.settings();
    const service = hook === Hook.PreRouting ? packet.dstPort : packet.srcPort;
    const relay = hook === Hook.PreRouting ? packet.dst : packet.src;
    if (relay !== s.relayIp || !s.tcpPorts.has(service)) return this.#pass("passedOtherPort");
    this.counters.tcpSegments++;
    return Action.Accept;
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
    if (result === "no-server") {
      // No server of the service is up: dropped (the client's resolver tries again or fails).
      this.counters.dropped++;
      this.counters.droppedNoServer++;
      return Action.Drop;
    }
    this.counters.udpRequests++;
    // The flow's first packet: the kernel's rules learn the flow from it.
    if (!s.scriptedUdpPorts.has(packet.dstPort)) this.counters.toKernel++;
    return this.#rewritten(packet);
  }

  #udpReply(packet: Ipv4Packet): Action {
    if (this.#udp.reply(packet, this.now()) === undefined) return this.#pass("passedNoFlow");
    this.counters.udpReplies++;
    return this.#rewritten(packet);
  }

  /**
   * An ICMP error about a UDP flow, translated as kernel NAT would. After routing (toward the
   * client): about the client's request to server:port, sent by the server, a router, or the
   * relay itself; it must come from the relay and be about client -> relay:port. Before
   * routing (from the client's side): about a reply from relay:port; it goes to the server,
   * about server:port -> client. The flow is the NAT table's, or else the kernel's (a service
   * with no script, whose flows only the kernel keeps), which is taken on the configuration.
   */
  #icmpError(hook: Hook, bytes: Uint8Array): Action {
    const e = parseIcmpError(bytes);
    if (e === undefined || e.innerProtocol !== IpProtocol.UDP) {
      return this.#pass("passedOtherProtocol");
    }
    // An error goes to the sender of the datagram it is about.
    if (e.dst !== e.innerSrc) return this.#pass("passedNoFlow");
    const s = this.settings();
    const kernelFlow = (port: number) => s.udpPorts.has(port) && !s.scriptedUdpPorts.has(port);
    // The kernel keeps its flows' servers; with one server that is the one, else unknown here.
    const servers = s.pool.servers;
    const lone = servers.length === 1 ? servers[0].ip >>> 0 : -1;
    const isServer = (ip: number) => servers.some((sv) => sv.ip >>> 0 === ip >>> 0);
    // Toward the client: queued after routing (krelay.ko), from the forward hook (nft.ts), or
    // the relay's own from the output hook.
    if (hook === Hook.PostRouting || hook === Hook.Forward || hook === Hook.LocalOut) {
      const { innerSrc: client, innerSrcPort: clientPort, innerDst: server } = e;
      const port = e.innerDstPort;
      const entry = this.table.get(replyKey(server, port, client, clientPort));
      if (entry === undefined && !(kernelFlow(port) && isServer(server))) {
        return this.#pass("passedNoFlow");
      }
      const relay = entry?.relay ?? s.relayIp;
      e.setOuterSrc(relay);
      e.setInnerDst(relay);
      if (entry !== undefined && entry.servicePort !== port) e.setInnerDstPort(entry.servicePort);
    } else if (hook === Hook.PreRouting) {
      const { innerSrc: relay, innerSrcPort: port, innerDst: client } = e;
      const entry = this.table.get(requestKey(client, e.innerDstPort, relay, port));
      if (entry === undefined && !(kernelFlow(port) && relay === s.relayIp && lone !== -1)) {
        return this.#pass("passedNoFlow");
      }
      const server = entry?.server ?? lone;
      e.setOuterDst(server);
      e.setInnerSrc(server);
      if (entry !== undefined && entry.serverPort !== port) e.setInnerSrcPort(entry.serverPort);
    } else return this.#pass("passedOtherPort");
    e.finalize();
    this.counters.icmpErrors++;
    this.counters.rewritten++;
    return Action.AcceptRewritten;
  }

  #ipv6(hook: Hook, bytes: Uint8Array, checksumPartial: boolean): Action {
    const packet = parseIpv6Packet(bytes, checksumPartial);
    if (!(packet instanceof Ipv6Packet)) return this.#pass("passedMalformed");
    if (packet.protocol === Ipv6Header.UDP) {
      if (hook === Hook.PreRouting) return this.#udpRequest6(packet);
      return hook === Hook.PostRouting ? this.#udpReply6(packet) : this.#pass("passedOtherPort");
    }
    // A scripted TCP service's segment (its scripts have decided): the relay carries it.
    if (packet.protocol === Ipv6Header.TCP) {
      const s = this.settings();
      const port = hook === Hook.PreRouting ? packet.dstPort : packet.srcPort;
      if (!packet.hasPorts || !s.tcpPorts.has(port)) return this.#pass("passedOtherPort");
      this.counters.tcpSegments++;
      return Action.Accept;
    }
    if (!translateIcmp6Error(packet, this.settings(), this.#flow6Server)) {
      return this.#pass("passedOtherProtocol");
    }
    this.counters.icmpErrors++;
    this.counters.rewritten++;
    return Action.AcceptRewritten;
  }

  /**
   * A new IPv6 UDP flow's first packet (client -> relay:port): sent to the IPv6 server the
   * balancer picks for the client. The kernel keeps the flow from then on (udp6_rules.ts: the
   * packet joins its server's flow set as it is forwarded), so krelay records nothing.
   */
  #udpRequest6(packet: Ipv6Packet): Action {
    const s = this.settings();
    if (packet.isFragment || !packet.hasPorts) return this.#pass("passedFragment");
    const port = packet.dstPort;
    if (s.relayIp6 === undefined || !s.udpPorts.has(port) || packet.dstText !== s.relayIp6) {
      return this.#pass("passedOtherPort");
    }
    const scripted = s.scriptedUdpPorts.has(port);
    const pick = () => this.#pick6(port, packet.src);
    let server: string | undefined;
    if (!scripted) server = pick();
    else {
      // A scripted service's flow: krelay's own, both ways.
      const f = this.udp6.request(packet.srcText, packet.srcPort, port, pick, s.udpTimeoutMs);
      if (f === "full") {
        this.counters.dropped++;
        this.counters.droppedNatFull++;
        return Action.Drop;
      }
      server = f === "no-server" ? undefined : f.server;
    }
    if (server === undefined) {
      this.counters.dropped++;
      this.counters.droppedNoServer++;
      return Action.Drop;
    }
    // The kernel keeps the flow's server from now on; krelay's record of it is for the
    // ICMPv6 errors about its replies (a full record table only loses that).
    if (!scripted) {
      this.kernel6.record(packet.srcText, packet.srcPort, port, server, s.udpTimeoutMs);
    }
    packet.setDst(server);
    packet.finalize();
    this.counters.udpRequests++;
    if (!scripted) this.counters.toKernel++;
    this.counters.rewritten++;
    return Action.AcceptRewritten;
  }

  /** The IPv6 server the balancer picks for a new flow from `client` to `port`. */
  #pick6(port: number, client: Uint8Array): string | undefined {
    const pool = this.settings().pool6;
    if (pool === undefined) return undefined;
    const i = this.#balancers6.get(pool, serviceKey("udp", port)).pick(foldIpv6(client));
    return i < 0 ? undefined : pool.servers[i].address;
  }

  /** A scripted IPv6 service's reply (server:port -> client): from the relay again. */
  #udpReply6(packet: Ipv6Packet): Action {
    const s = this.settings();
    if (packet.isFragment || !packet.hasPorts || s.relayIp6 === undefined) {
      return this.#pass("passedNoFlow");
    }
    const f = this.udp6.reply(
      packet.srcText,
      packet.srcPort,
      packet.dstText,
      packet.dstPort,
      s.udpTimeoutMs,
    );
    if (f === undefined) return this.#pass("passedNoFlow");
    packet.setSrc(s.relayIp6);
    packet.finalize();
    this.counters.udpReplies++;
    this.counters.rewritten++;
    return Action.AcceptRewritten;
  }

  /** The IPv6 flows of scripted services, NATed here (the kernel keeps the others). */
  readonly udp6: Udp6Flows;
  /**
   * The IPv6 flows the kernel carries, as recorded at their first packet (and renewed from the
   * kernel's set by the daemon): only their servers are of use here.
   */
  readonly kernel6: Udp6Flows;

  /** An IPv6 flow's server: krelay's own flow's, or the kernel's as recorded. */
  readonly #flow6Server = (client: string, clientPort: number, servicePort: number) =>
    (this.udp6.get(client, clientPort, servicePort) ??
      this.kernel6.get(client, clientPort, servicePort))?.server;

  readonly #balancers6 = new ServiceBalancers();

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
