/**
 * What the daemon reports about itself: the status and the NAT table as plain data, for the
 * control socket, the metrics endpoint and logs.
 *
 * @module
 */

import type { FlowtableCounters } from "../steering/udp_flowtable.ts";
import type { SynGateCounters } from "../relay/syn_gate.ts";
import type { Config } from "../config/schema.ts";
import type { DatapathStats } from "../queue/queue.ts";
import type { PacketCounters } from "../nat/counters.ts";
import type { NatEntry, NatTableStats } from "../nat/nat_table.ts";
import { formatEndpoint } from "../packet/address.ts";
import type { KernelQueueCounters } from "../queue/kernel_counters.ts";
import type { RelayThreadView } from "../relay/relay_threads.ts";
import { formatEndpoint6 } from "../packet/ipv6_address.ts";
import type { Ipv6UdpFlow } from "../steering/ipv6_flows.ts";
import type { Udp6Flow } from "../nat/udp6_flows.ts";
import type { DivertedConnection } from "../relay/relayed.ts";
import type { TcpRelayStats } from "../relay/stats.ts";
import type { ServerView } from "./servers.ts";
import type { KernelUdpStats } from "./kernel_udp.ts";

/** Whether krelay is relaying. */
export type RelayState = "started" | "stopped";

/** The answer to `status`. */
export interface StatusReport {
  pid: number;
  state: RelayState;
  /** ISO time krelay started, and seconds since. */
  startedAt: string;
  uptimeSeconds: number;
  /** The relay's IPv4 address in use (configured or detected); none when IPv6 only. */
  relayIp?: string;
  /** The relay's IPv6 address, when IPv6 clients are relayed. */
  relayIp6?: string;
  config: Config;
  packets: PacketCounters;
  /** Packets whose processing threw (accepted unchanged). */
  engineErrors: number;
  datapath: DatapathStats;
  /** The kernel's counters of krelay's queue (what it dropped); absent when it is not bound. */
  queue?: KernelQueueCounters;
  tcp: TcpRelayStats;
  /** The relay threads (relay_threads > 1), each one's CPU and connections; empty otherwise. */
  relayThreads: RelayThreadView[];
  nat: NatTableStats;
  /** The kernel's IPv4 UDP flows: unanswered ones evicted for new ones (kernel_udp.ts). */
  kernelUdp: KernelUdpStats;
  /** The UDP flowtable's counters (udp_flowtable.ts); absent while there is none. */
  flowtable?: FlowtableCounters;
  /** The real servers: health per service, and the flows relayed to each. */
  servers: ServerView[];
  /** Where clients' SYNs to TCP services go now (tcp_hold_syn; see syn_gate.ts). */
  syn?: SynReport;
}

/** Where clients' SYNs go: the services whose SYNs are held, those the kernel refuses. */
export interface SynReport {
  /** Held by the SYN gate: every service (tcp_hold_syn true), those in doubt (auto). */
  heldPorts: number[];
  /** No server up: refused by the kernel (an RST to the SYN). */
  refusedPorts: number[];
  /** ...for IPv6 clients: no IPv6 server up (absent without IPv6 servers). */
  refusedPorts6?: number[];
  /** The gate's counters since start. */
  gate?: SynGateCounters;
}

/** One NAT entry as `krelay nat` shows it. */
export interface NatEntryView {
  protocol: "udp" | "tcp";
  /** The clients' family: 4, or 6 (addresses then in brackets). */
  family: 4 | 6;
  /** "198.51.100.10:40000" */
  client: string;
  /** The address and service port the client asked: "198.51.100.1:80". */
  relay: string;
  /** TCP: the relay's own port toward the server (y); UDP: the service port. */
  relayPort: number;
  /** "203.0.113.10:80" */
  server: string;
  ageSeconds: number;
  idleSeconds: number;
  state: string;
  packetsToServer: number;
  bytesToServer: number;
  packetsToClient: number;
  bytesToClient: number;
}

/**
 * A scripted IPv6 service's UDP flow (krelay NATs it itself, nat/udp6_flows.ts) as a view: it
 * keeps when it ends and whether it was answered, not its counters. Ages from `now` (ms).
 */
export function udp6FlowView(f: Udp6Flow, relayIp6: string, now: number): NatEntryView {
  const idle = Math.max(0, (f.timeoutMs - (f.expires - now)) / 1000);
  const age = Math.max(0, (now - f.created) / 1000);
  return udp6View(f, relayIp6, age, idle, f.answered ? "replied" : "unreplied");
}

/** What `config set` changed. */
export interface ConfigChange {
  key: string;
  from: unknown;
  to: unknown;
}

/** A relayed TCP connection (it has no NAT entry) as a view, like {@link natEntryView}. */
export function divertedView(c: DivertedConnection, now: number): NatEntryView {
  // Segments are the kernel's business here; bytes are the relay's.
  const view = natEntryView(
    { ...c, protocol: "tcp", packetsToServer: 0, packetsToClient: 0 },
    now,
  );
  const v6 = c.v6;
  if (v6 === undefined) return view;
  return {
    ...view,
    family: 6,
    client: formatEndpoint6(v6.client, c.clientPort),
    relay: formatEndpoint6(v6.relay, c.servicePort),
    server: formatEndpoint6(v6.server, c.serverPort),
  };
}

/** What a view is made of: a NAT entry, or a diverted connection given the same fields. */
type ViewedFlow = Omit<
  NatEntry,
  "id" | "timeoutMs" | "assured" | "gatewayPort" | "relayLocal" | "keys"
>;

/** A NAT entry as a view, with ages from the clock value `now` (ms). */
export function natEntryView(e: ViewedFlow, now: number): NatEntryView {
  return {
    protocol: e.protocol,
    family: 4,
    client: formatEndpoint(e.client, e.clientPort),
    relay: formatEndpoint(e.relay, e.servicePort),
    relayPort: e.protocol === "tcp" ? e.relayPort : e.servicePort,
    server: formatEndpoint(e.server, e.serverPort),
    ageSeconds: Math.max(0, (now - e.created) / 1000),
    idleSeconds: Math.max(0, (now - e.lastSeen) / 1000),
    state: e.state,
    packetsToServer: e.packetsToServer,
    bytesToServer: e.bytesToServer,
    packetsToClient: e.packetsToClient,
    bytesToClient: e.bytesToClient,
  };
}

/**
 * An IPv6 UDP flow of the kernel's set (steering/ipv6_flows.ts) as a view: the kernel keeps
 * no counters or creation time for it, so its idle time is what it shows.
 */
export function ipv6FlowView(f: Ipv6UdpFlow, relayIp6: string): NatEntryView {
  const idle = Math.max(0, f.timeoutSeconds - f.expiresSeconds);
  return udp6View(f, relayIp6, idle, idle, "kernel");
}

/** An IPv6 UDP flow's view without counters (neither record keeps them). */
function udp6View(
  f: Pick<Ipv6UdpFlow, "client" | "clientPort" | "server" | "servicePort">,
  relayIp6: string,
  ageSeconds: number,
  idleSeconds: number,
  state: NatEntryView["state"],
): NatEntryView {
  return {
    protocol: "udp",
    family: 6,
    client: formatEndpoint6(f.client, f.clientPort),
    relay: formatEndpoint6(relayIp6, f.servicePort),
    relayPort: f.servicePort,
    server: formatEndpoint6(f.server, f.servicePort),
    ageSeconds,
    idleSeconds,
    state,
    packetsToServer: 0,
    bytesToServer: 0,
    packetsToClient: 0,
    bytesToClient: 0,
  };
}
