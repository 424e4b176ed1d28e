/**
 * IPv6 UDP in the `ip6 krelay` table (nft.ts), with one or several IPv6 servers: as IPv4's, a
 * new flow's first packet is marked {@link UDP_FIRST_MARK} and queued (the table's own queue
 * chain, queue_chain.ts); krelay picks its server and rewrites it (nat/rewriter.ts), and the
 * forward chain learns the flow from it. Known flows are then carried by the kernel, each to
 * its own server.
 *
 * Where a flow's server is kept: nft 1.0.6 aborts on any rule that adds or updates an element
 * with a value under a concatenated IPv6 key (a server address, a mark or a verdict alike:
 * `netlink_gen_expr: Assertion dreg < reg_low`), and the kernel refuses verdict values from the
 * packet path anyway. Sets of keys alone work, so each server has its own flow set,
 * `udp_flows_<id>`, and rules of its own: a request in server N's set goes to server N; the
 * first packet rewritten to server N joins its set; a reply from server N refreshes its set.
 * A request meets one set lookup per server (a few hash lookups), not one per flow.
 *
 * The ids are the daemon's, stable for a server while krelay runs: a server taken out of
 * real_ip keeps its set and rules (its flows go on to it until they time out), so IPv6 flows
 * keep their server when real_ip changes, as IPv4's do.
 *
 * @module
 */

import { UDP_FIRST_MARK } from "./marks.ts";
import { TO_QUEUE } from "./queue_chain.ts";
import type { Server6, SteeringSpec } from "./steering.ts";

/** A flow's key (client, client port, service port) as a request carries it, and a reply. */
const REQUEST_KEY = "ip6 saddr . udp sport . udp dport";
const REPLY_KEY = "ip6 daddr . udp dport . udp sport";
/** A flow's whole tuple in `udp_replies` (server, service port, client, client port). */
const REPLY_TUPLE = "ip6 saddr . udp sport . ip6 daddr . udp dport";
const REQUEST_TUPLE = "ip6 daddr . udp dport . ip6 saddr . udp sport";

const hex = (n: number) => `0x${n.toString(16)}`;
const set = (ports: readonly number[]) => `{ ${ports.join(", ")} }`;

/** The servers that have flow sets: the spec's, or its one server (id 0). */
export function flowServers(spec: SteeringSpec): readonly Server6[] {
  return spec.servers6 ?? (spec.realIp === undefined ? [] : [{ address: spec.realIp, id: 0 }]);
}

/** A server's flow set. */
export function flowSetName(server: Server6): string {
  return `udp_flows_${server.id}`;
}

/** The declaration of each server's flow set (its body, for `set NAME { ... }`). */
export function flowSetBody(spec: SteeringSpec): string {
  return `type ipv6_addr . inet_service . inet_service; flags dynamic,timeout; ` +
    `size ${spec.natMaxEntries};`;
}

/** The IPv6 table's UDP rules: those of a known flow's datagrams, and the others. */
export interface Udp6Rules {
  /** At the head of `divert` and `udp_forward`, before any other rule (see below). */
  fast: { divert: string[]; udp_forward: string[] };
  /** After the TCP rules. */
  divert: string[];
  udp_forward: string[];
}

/**
 * The UDP rules of `divert` and `udp_forward` for the IPv6 side's spec (ipv6Spec: relayIp is
 * the relay's IPv6 address); `udpPorts`: the ports the kernel NATs.
 *
 * As IPv4's (nft.ts, udpFastPath), a known flow's datagrams meet their own rules first, and
 * look up no set of service ports: the flow's key holds its port, and only a service's first
 * packet makes a flow (a port that got a packet script is left out by its number). In
 * `divert` a request meets its server's set, and any other UDP datagram not addressed to the
 * relay then leaves the chain (a reply would otherwise fail every rule below, the ICMPv6
 * errors' set lookups included); in `udp_forward` a reply meets its server's rule first, and
 * any UDP datagram but a first packet then leaves.
 */
export function renderUdp6Rules(
  spec: SteeringSpec,
  udpPorts: readonly number[],
): Udp6Rules {
  const relay = spec.relayIp!;
  const request = `ip6 daddr ${relay} udp dport ${set(udpPorts)}`;
  const timeout = `timeout ${Math.max(1, Math.round(spec.udpTimeout * 1000))}ms`;
  const first = `meta mark ${hex(UDP_FIRST_MARK)}`;
  const servers = flowServers(spec);
  const scripted = spec.scriptedUdpPorts;
  const udp = (port: "sport" | "dport") =>
    scripted.length > 0 ? `udp ${port} != ${set(scripted)}` : "meta l4proto udp";
  const fast = {
    divert: [
      // A known flow goes to its own server; both of its entries live on.
      ...servers.map((s) =>
        `ip6 daddr ${relay} ${udp("dport")} ${REQUEST_KEY} @${flowSetName(s)} ` +
        `ip6 daddr set ${s.address} update @${flowSetName(s)} { ${REQUEST_KEY} ${timeout} } ` +
        `update @udp_replies { ${REQUEST_TUPLE} ${timeout} } accept`
      ),
      `meta l4proto udp ip6 daddr != ${relay} accept`,
    ],
    udp_forward: [
      // Only the flow's own server answers as the relay: the whole tuple must match.
      ...servers.map((s) =>
        `ip6 saddr ${s.address} ${udp("sport")} ${REPLY_TUPLE} @udp_replies ` +
        `update @udp_replies { ${REPLY_TUPLE} ${timeout} } ` +
        `update @${flowSetName(s)} { ${REPLY_KEY} ${timeout} } ip6 saddr set ${relay} accept`
      ),
      `meta l4proto udp meta mark != ${hex(UDP_FIRST_MARK)} accept`,
    ],
  };
  const divert: string[] = [];
  // No IPv6 server up for these: a new flow is left to the relay's own stack (refused).
  const refused = (spec.refusedUdpPorts6 ?? []).filter((p) => udpPorts.includes(p));
  if (refused.length > 0) divert.push(`ip6 daddr ${relay} udp dport ${set(refused)} accept`);
  divert.push(`${request} meta mark set ${hex(UDP_FIRST_MARK)} ${TO_QUEUE}`);
  const udp_forward = [
    // The first packet, rewritten by krelay to its server: the flow joins that server's set.
    ...servers.map((s) =>
      `${first} ip6 daddr ${s.address} add @${flowSetName(s)} { ${REQUEST_KEY} ${timeout} } ` +
      `add @udp_replies { ${REQUEST_TUPLE} ${timeout} } meta mark set 0x0 accept`
    ),
    // The table is full (or the server unknown): the answer could not find its way back.
    `${first} drop`,
  ];
  return { fast, divert, udp_forward };
}
