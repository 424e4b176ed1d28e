/**
 * UDP relaying by NAT (flows U1-U4): a request to relay:port has its destination rewritten
 * to the real server (the client's source is kept, so the server sees the client); the
 * server's reply, forwarded back through the relay, has its source rewritten to the address
 * the client asked. Timeouts follow conntrack's UDP model: a short one until the flow has
 * talked both ways for a while, then a longer "stream" one.
 *
 * @module
 */

import type { Ipv4Packet } from "../packet/ipv4_packet.ts";
import type { NatEntry, NatTable } from "./nat_table.ts";

/** What the UDP NAT needs to know; read on every packet, so live changes apply to new flows. */
export interface UdpNatSettings {
  realIp: number;
  udpTimeoutMs: number;
  udpStreamTimeoutMs: number;
}

/** A flow that still talks after this long, both ways, is assured (conntrack uses 2 s). */
export const STREAM_AFTER_MS = 2000;

/** The result of a lookup-or-create for a request. */
export type RequestResult = NatEntry | "full" | "conflict" | "no-flow";

/** Lookup key of a request, client -> relay:service. */
export function requestKey(
  client: number,
  clientPort: number,
  relay: number,
  port: number,
): string {
  return `u>${client}:${clientPort}>${relay}:${port}`;
}

/** Lookup key of a reply, server:port -> client. */
export function replyKey(server: number, port: number, client: number, clientPort: number): string {
  return `u<${server}:${port}>${client}:${clientPort}`;
}

/** U1/U2 and U3/U4 over a {@link NatTable}. */
export class UdpNat {
  constructor(
    private readonly table: NatTable,
    private readonly settings: () => UdpNatSettings,
  ) {}

  /**
   * U1 -> U2: `packet` is client -> relay:service. Finds or creates its flow and rewrites the
   * destination to the flow's server. Returns the flow, or why there is none. With `allowNew`
   * false (a service no longer configured), only existing flows are translated.
   */
  request(packet: Ipv4Packet, now: number, allowNew = true): RequestResult {
    const { src, srcPort, dst, dstPort } = packet;
    const key = requestKey(src, srcPort, dst, dstPort);
    let entry = this.table.get(key);
    if (entry === undefined) {
      if (!allowNew) return "no-flow";
      const s = this.settings();
      const keys = [
        key,
        replyKey(s.realIp, dstPort, src, srcPort),
      ];
      // The same client port already talks to this server through another relay address.
      if (this.table.get(keys[1]) !== undefined) return "conflict";
      entry = this.table.add({
        protocol: "udp",
        client: src,
        clientPort: srcPort,
        relay: dst,
        servicePort: dstPort,
        server: s.realIp,
        serverPort: dstPort,
        state: "unreplied",
        timeoutMs: s.udpTimeoutMs,
      }, keys);
      if (entry === undefined) return "full";
    }
    entry.lastSeen = now;
    entry.packetsToServer++;
    entry.bytesToServer += packet.bytes.length;
    this.#maybeAssure(entry, now);
    packet.setDst(entry.server);
    return entry;
  }

  /**
   * U3 -> U4: `packet` is server -> client. Rewrites the source back to the relay address
   * the client asked, when the packet belongs to a flow. Returns the flow or undefined.
   */
  reply(packet: Ipv4Packet, now: number): NatEntry | undefined {
    const entry = this.table.get(replyKey(packet.src, packet.srcPort, packet.dst, packet.dstPort));
    if (entry === undefined) return undefined;
    entry.lastSeen = now;
    entry.packetsToClient++;
    entry.bytesToClient += packet.bytes.length;
    if (entry.state === "unreplied") {
      entry.state = "replied";
      this.table.answered(entry);
    }
    this.#maybeAssure(entry, now);
    packet.setSrc(entry.relay);
    if (entry.servicePort !== entry.serverPort) packet.setSrcPort(entry.servicePort);
    return entry;
  }

  #maybeAssure(entry: NatEntry, now: number): void {
    if (entry.assured || entry.state !== "replied" || now - entry.created < STREAM_AFTER_MS) return;
    entry.state = "stream";
    entry.timeoutMs = this.settings().udpStreamTimeoutMs;
    this.table.assure(entry);
  }
}
