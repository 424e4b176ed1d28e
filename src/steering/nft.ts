/**
 * The kernel path's rules, as an nftables table of krelay's own (`ip krelay`):
 *
 * - chain `divert` (filter, prerouting, raw priority, before routing):
 *   - TCP: a client's SYN to relay:tcp-port reaches the gateway port's listener unchanged: the
 *     accepted socket's local address is where the client meant to go (T1/T2 without
 *     rewriting). The sk_lookup program of sk_lookup.ts hands it over where BPF is allowed, so
 *     the client's segments pass no rule; elsewhere a TPROXY rule here does, for every
 *     segment. The relay's own socket to the server is transparent and
 *     bound to the client's address (T3), so the server's answers are addressed to the client:
 *     `tproxy` finds that socket and hands them to it, readdressed to the relay so that routing
 *     delivers them locally, with no policy route (T4, see T4_DELIVERY).
 *   - UDP (U1/U2): a request of a known flow (map `udp_flows`: client, client port, service
 *     port to the flow's server) is sent to its server by rewriting its destination, and
 *     refreshes the flow.
 *     A new flow's first packet gets {@link UDP_FIRST_MARK}, which krelay's queue rule selects
 *     (iptables.ts, or krelay.ko's hooks): krelay records the flow and rewrites that packet
 *     itself. UDP services with a packet script are left out: the queue takes all their
 *     packets and krelay NATs them itself.
 * - the UDP rules set {@link FLOW_LEARN_MARK} (or-ed in) on each IPv4 datagram they translate
 *   (a first packet, a known request, an answer): the flowtable (udp_flowtable.ts) learns the
 *   flow from it and forwards the flow's next datagrams at ingress, past these chains, but for
 *   one a second that keeps the flow's entries here fresh.
 * - chain `udp_forward` (filter, forward): the rewritten first packet adds its flow to
 *   `udp_flows`, and its whole tuple (server, port, client, port) to `udp_replies`; a reply
 *   whose whole tuple is a flow's gets the relay's address back as its source (U3/U4), so a
 *   datagram from any other host is never taken for the relay's. Only forwarded packets pass
 *   this hook, never the relay's own TCP. IPv4: a reply refreshes its flow in the map
 *   `udp_answered` (created by the first answer) rather than in `udp_flows`, so that krelay can
 *   tell unanswered flows (kernel_udp_flows.ts: evicted first under pressure, passive health).
 * - with tcp_conntrack false, the four legs of relayed TCP (T1-T4) are exempt from a conntrack
 *   that other rules of the host may load (notrack): the two incoming ones by `divert`'s own
 *   rules, the two outgoing ones by chain `untrack_out` (output, raw priority). The relay's
 *   sockets are recognised by their transparency, so other traffic keeps its tracking.
 *
 * - ICMP errors about relayed flows reach the other side translated, as kernel NAT's would:
 *   - TCP: an error about the relay's own connection to the server (a router's "fragmentation
 *     needed", say) is addressed to the client's address; `divert` finds the relay's socket
 *     from the error's embedded header (`socket` does that for ICMP) and marks it for the
 *     local route, so the socket learns the path MTU. The client's leg is the relay's own.
 *   - UDP: errors about a request, from the server or a router, are marked
 *     {@link ICMP_ERROR_MARK} by `udp_forward`, errors from the client's side about a reply by
 *     `divert`; the queue (iptables.ts) takes them, and the relay's own errors (a datagram
 *     with DF too big for the server's side, a TTL run out), to krelay, which rewrites the
 *     outer and embedded addresses (rewriter.ts). nftables cannot
 *     rewrite an embedded header with its checksum, nor look the embedded tuple up in the
 *     flow set (its raw fields have no address type), so the rules only select errors whose
 *     embedded datagram is UDP to or from a service port; krelay checks the rest.
 *
 * No conntrack: UDP is NATed statelessly against krelay's own flow set, so the table loads no
 * connection tracking. With conntrack, its hooks (defrag, in, confirm, and NAT's at four
 * places) are passed by every packet, TCP included: the HTTP connection rate was 1.13x without
 * them (alternating runs). Each base chain is one hook more for every packet too, so there
 * is one prerouting chain, and the UDP reply chain sits where only forwarded packets go.
 *
 * Fragments: the kernel reassembles datagrams before these rules (and fragments them again on
 * the way out) only when something asks for it; the never-called chain `defrag` holds a TPROXY
 * expression, which does, whatever the TCP services are.
 *
 * A flow lives `udp_timeout` after its last packet either way; the map and the set hold at
 * most `nat_max_entries` flows, and a first packet that finds them full is dropped, since its
 * answer could not be rewritten (krelay evicts unanswered flows before that: kernel_udp.ts). Established flows keep their server when the configuration
 * changes (TCP its sockets, UDP its map entry); new flows follow the new rules.
 *
 * @module
 */

import { kernelUdpPorts, type SteeringSpec } from "./steering.ts";
import { FLOW_LEARN_MARK, ICMP_ERROR_MARK, TPROXY_MARK, UDP_FIRST_MARK } from "./marks.ts";
import { renderIcmp6Rules } from "./icmp6_rules.ts";
import { parseIpv6 } from "../packet/ipv6_address.ts";
import { flowServers, flowSetBody, flowSetName, renderUdp6Rules } from "./udp6_rules.ts";
import { QUEUE_CHAIN, TO_QUEUE } from "./queue_chain.ts";

/** The table's name (family ip, and ip6 for IPv6 clients). */
export const NFT_TABLE = "krelay";

/**
 * The table's family: `ip` for IPv4, `ip6` for IPv6. The IPv6 table has the same TCP chains
 * and rules over IPv6 addresses; its UDP rules are udp6_rules.ts's (a flow set per server,
 * since nft cannot store a flow's server under an IPv6 key), and its ICMPv6 ones
 * icmp6_rules.ts's.
 */
export type NftFamily = "ip" | "ip6";

/** IPv4 selectors of a rule as the IPv6 table writes them. */
function asIpv6(rule: string): string {
  return rule.replace(/\bip (saddr|daddr)\b/g, "ip6 $1");
}

const hex = (n: number) => `0x${n.toString(16)}`;

function set(ports: readonly number[]): string {
  return `{ ${ports.join(", ")} }`;
}

/** The rules of each chain, as `add rule` bodies. */
export interface NatRules {
  divert: string[];
  udp_forward: string[];
  untrack_out: string[];
  /**
   * The relay's own ICMP errors about requests it forwards, for the queue (ip6:
   * icmp6_rules.ts's).
   */
  icmp_out?: string[];
  /**
   * With tcp_conntrack: readdresses the servers' answers `divert` handed to the relay's
   * sockets, after conntrack has seen them as they came (see T4_DELIVERY).
   */
  answers?: string[];
}

/** The chains, their hooks and priorities, in the order they are declared. */
const CHAINS: readonly [keyof NatRules, string][] = [
  ["divert", "type filter hook prerouting priority raw"],
  ["udp_forward", "type filter hook forward priority filter"],
  ["untrack_out", "type filter hook output priority raw"],
];

/** The output chain of the relay's own ICMP errors (the queue takes them). */
const ICMP_OUT: [keyof NatRules, string] = ["icmp_out", "type filter hook output priority raw"];

/** After conntrack (-200), before routing. */
const ANSWERS: [keyof NatRules, string] = [
  "answers",
  "type filter hook prerouting priority mangle",
];

/** IPv4's chains that come and go with the services (IPv6's: `answers` only). */
const OPTIONAL: readonly [keyof NatRules, string][] = [ICMP_OUT, ANSWERS];

/**
 * The chains a spec's table has: the untrack one only without tcp_conntrack (not live); IPv4's
 * icmp_out only with UDP services and no untrack_out, which takes its rule, and answers only
 * with TCP services and tcp_conntrack (each base chain is a hook for every packet).
 */
function chainsOf(spec: SteeringSpec, family: NftFamily): readonly [keyof NatRules, string][] {
  const chains = spec.tcpConntrack ? CHAINS.slice(0, 2) : CHAINS;
  const tracked = spec.tcpConntrack;
  const answers = spec.tcpPorts.length > 0 && tracked ? [ANSWERS] : [];
  if (family === "ip") {
    return [...chains, ...(spec.udpPorts.length > 0 && tracked ? [ICMP_OUT] : []), ...answers];
  }
  // The relay's own ICMPv6 errors about UDP flows, for the queue (icmp6_rules.ts).
  return [...chains, ICMP_OUT, ...answers];
}

/** The chains that come and go with the services (renderNatUpdate adds or removes them). */
function optionalChains(family: NftFamily): readonly [keyof NatRules, string][] {
  return family === "ip" ? OPTIONAL : [ANSWERS];
}

export { QUEUE_CHAIN } from "./queue_chain.ts";

/**
 * A UDP flow's key in `udp_flows` (client, client port, service port; the server is its
 * value), as a request carries it, and as its server's reply does.
 */
const REQUEST_KEY = "ip saddr . udp sport . udp dport";
const REPLY_KEY = "ip daddr . udp dport . udp sport";
/**
 * A flow's whole tuple in `udp_replies` (server, service port, client, client port), as a reply
 * carries it, and as a request carries it once its destination is the server's.
 */
const REPLY_TUPLE = "ip saddr . udp sport . ip daddr . udp dport";
const REQUEST_TUPLE = "ip daddr . udp dport . ip saddr . udp sport";

/**
 * How a server's answer to a client's address (T4) reaches the relay's transparent socket
 * bound to it, without the policy rule that a mark needs (any rule costs every routed packet
 * of the namespace two rule lookups, its source check included, and the kernel keeps doing so
 * once a rule was added): `tproxy` finds the connection's socket (its established lookup
 * comes first) and assigns it to the packet, whose destination then becomes the relay's own
 * address, so routing delivers it locally and TCP takes the assigned socket. Its listener
 * fallback is a port where nothing listens: a segment of no connection matches nothing and
 * goes on to the client's address, as it did before. With tcp_conntrack the readdressing is
 * chain `answers`'s, after conntrack, for the packets `divert` marked: conntrack must see the
 * answer as the reply of the relay's connection (a host's `ct state invalid drop` would drop
 * it otherwise); that chain is one hook, cheaper than the rule.
 */
const T4_DELIVERY = { ip: "tproxy to 127.0.0.1:1", ip6: "tproxy to [::1]:1" } as const;

/**
 * The end of a rule that found a server's answer (or an ICMP error about the relay's own
 * connection) for the relay's socket: readdressed to the relay at once, or with tcp_conntrack
 * marked for chain `answers`, which readdresses it after conntrack (IPv4 selectors; the IPv6
 * table's rules are rewritten by asIpv6).
 */
function answerDelivery(spec: SteeringSpec): string {
  return spec.tcpConntrack
    ? `meta mark set ${hex(TPROXY_MARK)} accept`
    : `ip daddr set ${spec.relayIp} accept`;
}

/**
 * Set on an IPv4 datagram the rules translated: the flowtable's egress program learns its flow
 * from it (udp_flowtable.ts). Or-ed in, so that a mark of the host's survives.
 */
const LEARN = `meta mark set meta mark or ${hex(FLOW_LEARN_MARK)}`;

/** An ICMP error, as the kernel generates and translates them. */
const ICMP_ERRORS = "icmp type { destination-unreachable, time-exceeded, parameter-problem }";
/**
 * ...about a UDP datagram with a plain 20-byte IP header, whose embedded ports sit at known
 * offsets from the ICMP header: source port at bit 224, destination port at bit 240.
 */
const ABOUT_UDP = `${ICMP_ERRORS} @th,64,8 0x45 @th,136,8 17`;

/**
 * The rules of the table's chains; `skLookup`: the client's connections reach the gateway
 * listener by sk_lookup.ts, so no TPROXY rule.
 */
export function renderNatRules(
  spec: SteeringSpec,
  skLookup = false,
  family: NftFamily = "ip",
): NatRules {
  const rules = renderFamilyRules(spec, skLookup, family);
  if (family === "ip") return rules;
  const icmp = renderIcmp6Rules(
    spec,
    // The IPv6 side's spec (ipv6Spec) has it.
    parseIpv6(spec.relayIp!),
    flowServers(spec).map((s) => parseIpv6(s.address)),
    // Scripted services' flows too: krelay translates their errors as the kernel's.
    spec.udpPorts,
    asIpv6(answerDelivery(spec)),
  );
  const udpPorts = kernelUdpPorts(spec);
  const none = { divert: [], udp_forward: [] };
  const udp = udpPorts.length > 0 ? renderUdp6Rules(spec, udpPorts) : { ...none, fast: none };
  return {
    // A known flow's datagrams first, as IPv4's (udp6_rules.ts).
    divert: [
      ...udp.fast.divert,
      ...rules.divert.map(asIpv6),
      ...udp.divert,
      ...icmp.divert,
    ],
    udp_forward: [...udp.fast.udp_forward, ...udp.udp_forward, ...rules.udp_forward.map(asIpv6)],
    untrack_out: rules.untrack_out.map(asIpv6),
    icmp_out: icmp.icmp_out,
    ...(rules.answers === undefined ? {} : { answers: rules.answers.map(asIpv6) }),
  };
}

function renderFamilyRules(spec: SteeringSpec, skLookup: boolean, family: NftFamily): NatRules {
  const rules: NatRules = { divert: [], udp_forward: [], untrack_out: [] };
  // IPv4's rules for an established flow's datagrams, the most frequent packets, come first
  // (udpFastPath); the other rules follow as for IPv6.
  const udpPorts = kernelUdpPorts(spec);
  const fast = family === "ip" ? udpFastPath(spec, udpPorts) : { divert: [], udp_forward: [] };
  rules.divert.push(...fast.divert);
  rules.udp_forward.push(...fast.udp_forward);
  if (spec.tcpPorts.length > 0) {
    const ports = set(spec.tcpPorts);
    // T1 client -> relay:port and T4 server -> client:y are untracked where they are diverted;
    // notrack comes first, so that it holds even when tproxy finds no socket and ends the rule.
    const notrack = spec.tcpConntrack ? "" : "notrack ";
    const mark = `meta mark set ${hex(TPROXY_MARK)} accept`;
    // The server answers from the service port; the lookup finds the relay's socket, if any:
    // `tproxy` hands the packet to that socket and the destination becomes the relay's, so
    // routing delivers it locally with no policy rule (see T4_DELIVERY), in both families.
    // With conntrack (tcp_conntrack), the readdressing waits for it in chain `answers`: it
    // must see the answer as the server sent it, as the reply of the relay's connection.
    const delivered = answerDelivery(spec);
    rules.divert.push(`tcp sport ${ports} ${notrack}${T4_DELIVERY[family]} ${delivered}`);
    if (spec.tcpConntrack) {
      rules.answers = [`meta mark ${hex(TPROXY_MARK)} ip daddr set ${spec.relayIp}`];
    }
    const clients = `ip daddr ${spec.relayIp} tcp dport ${ports}`;
    // No server up (of the family's pool): the kernel refuses the SYN as a host with nothing
    // listening would; the connections' other segments pass.
    rules.divert.push(...refusedTcp(spec, family));
    if (!skLookup) rules.divert.push(`${clients} ${notrack}tproxy to :${spec.gport} ${mark}`);
    else if (notrack) rules.divert.push(`${clients} notrack accept`);
    // An error about the relay's own connection to the server, addressed to the client's
    // address: the socket it is about learns of it (path MTU discovery). IPv6's are
    // icmp6_rules.ts's.
    // The error's embedded header, not its outer destination, finds the socket.
    if (family === "ip") rules.divert.push(`${ICMP_ERRORS} socket transparent 1 ${delivered}`);
    if (!spec.tcpConntrack) {
      // T2 relay:port -> client; T3 the relay's socket (client:y) -> server.
      rules.untrack_out.push(`ip saddr ${spec.relayIp} tcp sport ${ports} notrack`);
      rules.untrack_out.push(`tcp dport ${ports} socket transparent 1 notrack`);
    }
  }
  // IPv6's UDP rules are udp6_rules.ts's (a flow set per server: nft 1.0.6 cannot add a
  // 16-byte value under a concatenated key). Here udp_flows maps a flow to its server.
  if (udpPorts.length > 0 && family === "ip") {
    const { request, first, timeout, refresh } = udpTerms(spec, udpPorts);
    rules.divert.push(
      // The replies refresh `udp_answered`, not `udp_flows` (see renderNatTable): a flow whose
      // client was quiet longer than udp_timeout while its server talked is found there.
      `${request} ip daddr set ${REQUEST_KEY} map @udp_answered ${LEARN} ${refresh}`,
      // With no server up, a new flow is left to the relay's own stack (refused).
      ...refused(spec, udpPorts),
      `${request} meta mark set ${hex(UDP_FIRST_MARK)} ${TO_QUEUE}`,
    );
    rules.udp_forward.push(
      `${first} add @udp_flows { ${REQUEST_KEY} ${timeout} : ip daddr } ` +
        `add @udp_replies { ${REQUEST_TUPLE} ${timeout} } meta mark set ${hex(FLOW_LEARN_MARK)} ` +
        "accept",
      // The table is full: the answer could not find its way back.
      `${first} drop`,
    );
  }
  if (spec.udpPorts.length > 0 && family === "ip") {
    // Scripted services' flows too: their NAT is krelay's own. (ICMPv6: icmp6_rules.ts.)
    const ports = set(spec.udpPorts);
    const icmpMark = `meta mark set ${hex(ICMP_ERROR_MARK)}`;
    // From the client's side, about a reply from relay:port.
    rules.divert.push(
      `ip daddr ${spec.relayIp} ${ABOUT_UDP} @th,224,16 ${ports} ${icmpMark} ${TO_QUEUE}`,
    );
    // Toward the client, about its request to server:port, from the server or a router; the
    // relay's own errors, in icmp_out (krelay checks which concern a flow).
    rules.udp_forward.push(
      `${ABOUT_UDP} @th,240,16 ${ports} ${icmpMark} ${TO_QUEUE}`,
      // The mark `divert` set leaves with the error it translated.
      `meta mark ${hex(ICMP_ERROR_MARK)} meta mark set 0x0`,
    );
    // The output chain there is: one hook for every packet the relay sends is enough.
    const own = `${ICMP_ERRORS} ${TO_QUEUE}`;
    if (spec.tcpConntrack) rules.icmp_out = [own];
    else rules.untrack_out.push(own);
  }
  return rules;
}

/** The pieces of IPv4's UDP rules. */
function udpTerms(spec: SteeringSpec, udpPorts: readonly number[]) {
  const timeout = `timeout ${Math.max(1, Math.round(spec.udpTimeout * 1000))}ms`;
  return {
    request: `ip daddr ${spec.relayIp} udp dport ${set(udpPorts)}`,
    first: `meta mark ${hex(UDP_FIRST_MARK)}`,
    timeout,
    // Both of a known request's entries live on.
    refresh: `update @udp_flows { ${REQUEST_KEY} ${timeout} : ip daddr } ` +
      `update @udp_replies { ${REQUEST_TUPLE} ${timeout} } accept`,
  };
}

/**
 * IPv4's rules for an established UDP flow's datagrams, at the head of their chains: every
 * rule a datagram meets costs it (about 20 ns a rule that fails at its first test, 70 ns an
 * anonymous set's lookup, measured).
 *
 * - `divert`: a known flow's request goes to its own server (a live real_ip change moves new
 *   flows only; with no entry, the lookup ends the rule); then any other UDP datagram not
 *   addressed to the relay leaves the chain, since nothing below concerns it (a reply passes
 *   two rules instead of all of them).
 * - `udp_forward`: only the flow's own server answers as the relay: the whole tuple must match,
 *   so that a datagram injected by any other host never reaches the client from relay:port;
 *   the answer refreshes its flow in `udp_answered` (created by the first answer), which tells
 *   krelay which flows were answered (kernel_udp_flows.ts), and leaves the chain. Then any UDP
 *   datagram but a first packet leaves it too: a request passes two rules.
 *
 * Neither checks the service port against the services' set: the flow's key holds it, and only
 * a service's first packet makes a flow, so a flow's own datagrams are a service's (its port
 * may have left the configuration since: the flow finishes, both ways, as a TCP connection
 * does). Only a port that has got a packet script is left out by its number: its flows go to
 * the queue at once, as before.
 *
 * Nothing when no UDP service is NATed by the kernel (`udpPorts`: those it NATs).
 */
function udpFastPath(
  spec: SteeringSpec,
  udpPorts: readonly number[],
): { divert: string[]; udp_forward: string[] } {
  if (udpPorts.length === 0) return { divert: [], udp_forward: [] };
  const { timeout, refresh } = udpTerms(spec, udpPorts);
  const scripted = spec.scriptedUdpPorts;
  const udp = (port: "sport" | "dport") =>
    scripted.length > 0 ? `udp ${port} != ${set(scripted)}` : "meta l4proto udp";
  return {
    divert: [
      `ip daddr ${spec.relayIp} ${udp("dport")} ip daddr set ${REQUEST_KEY} map @udp_flows ` +
      `${LEARN} ${refresh}`,
      `meta l4proto udp ip daddr != ${spec.relayIp} accept`,
    ],
    udp_forward: [
      `${udp("sport")} ${REPLY_TUPLE} @udp_replies ` +
      `update @udp_replies { ${REPLY_TUPLE} ${timeout} } ` +
      `update @udp_answered { ${REPLY_KEY} ${timeout} : ip saddr } ` +
      `ip saddr set ${spec.relayIp} ${LEARN} accept`,
      `meta l4proto udp meta mark != ${hex(UDP_FIRST_MARK)} accept`,
    ],
  };
}

/**
 * No server up for these services: a new flow's first packet goes on unmarked to the relay's
 * own stack, which answers ICMP port unreachable (no socket there), a quick refusal.
 */
function refused(spec: SteeringSpec, udpPorts: readonly number[]): string[] {
  const ports = (spec.refusedUdpPorts ?? []).filter((p) => udpPorts.includes(p));
  return ports.length === 0 ? [] : [`ip daddr ${spec.relayIp} udp dport ${set(ports)} accept`];
}

/**
 * No server up for these TCP services (IPv4's, or IPv6's for the ip6 table): a client's SYN
 * (no ACK) is answered with an RST by the kernel (reject in prerouting: Linux 5.? and later)
 * and goes no further.
 */
function refusedTcp(spec: SteeringSpec, family: NftFamily): string[] {
  const refused = family === "ip" ? spec.refusedTcpPorts : spec.refusedTcpPorts6;
  const ports = (refused ?? []).filter((p) => spec.tcpPorts.includes(p));
  if (ports.length === 0) return [];
  return [
    `ip daddr ${spec.relayIp} tcp dport ${set(ports)} tcp flags & (fin | syn | rst | ack) == syn ` +
    `reject with tcp reset`,
  ];
}

/** An `nft -f` script creating the table (apply after deleting any older one). */
export function renderNatTable(
  spec: SteeringSpec,
  skLookup = false,
  family: NftFamily = "ip",
): string {
  const rules = renderNatRules(spec, skLookup, family);
  const addr = family === "ip" ? "ipv4_addr" : "ipv6_addr";
  const lines = [
    `table ${family} ${NFT_TABLE} {`,
    ...(family === "ip"
      ? [
        `  map udp_flows {`,
        `    type ${addr} . inet_service . inet_service : ${addr}; flags dynamic,timeout;`,
        `    size ${spec.natMaxEntries};`,
        `  }`,
      ]
      : flowServers(spec).map((s) => `  set ${flowSetName(s)} { ${flowSetBody(spec)} }`)),
    `  set udp_replies {`,
    `    type ${addr} . inet_service . ${addr} . inet_service; flags dynamic,timeout;`,
    `    size ${spec.natMaxEntries};`,
    `  }`,
    // IPv4: the answered flows, as `udp_flows` (client, ports -> server), refreshed by the
    // replies where `udp_flows` is by the requests: a flow in `udp_flows` but not here has
    // had no answer (evicted first under pressure, and a passive failure of its server).
    ...(family === "ip"
      ? [
        `  map udp_answered {`,
        `    type ${addr} . inet_service . inet_service : ${addr}; flags dynamic,timeout;`,
        `    size ${spec.natMaxEntries};`,
        `  }`,
      ]
      : []),
    // The queue's chain (queue_chain.ts), in both families.
    `  chain ${QUEUE_CHAIN} {`,
    `    accept`,
    `  }`,
    // Never called: its TPROXY expression makes the kernel reassemble fragments (see above).
    `  chain defrag {`,
    `    meta l4proto tcp tproxy to :${spec.gport}`,
    `  }`,
  ];
  for (const [chain, hook] of chainsOf(spec, family)) {
    lines.push(`  chain ${chain} {`, `    ${hook}; policy accept;`);
    lines.push(...(rules[chain] ?? []).map((r) => `    ${r}`), "  }");
  }
  lines.push("}", "");
  return lines.join("\n");
}

/** An `nft -f` script replacing the chains' rules in one transaction. */
export function renderNatUpdate(
  spec: SteeringSpec,
  skLookup = false,
  family: NftFamily = "ip",
): string {
  const rules = renderNatRules(spec, skLookup, family);
  const chains = chainsOf(spec, family);
  const lines = chains.map(([chain]) => `flush chain ${family} ${NFT_TABLE} ${chain}`);
  // The optional chains come and go with the services: added (if missing) to be flushed,
  // or to be deleted (nft 1.0.6 has no delete-if-present).
  for (const [chain, hook] of [...optionalChains(family)].reverse()) {
    lines.unshift(`add chain ${family} ${NFT_TABLE} ${chain} { ${hook}; policy accept; }`);
    if (!chains.some(([c]) => c === chain)) {
      lines.push(
        `flush chain ${family} ${NFT_TABLE} ${chain}`,
        `delete chain ${family} ${NFT_TABLE} ${chain}`,
      );
    }
  }
  // A server new to the IPv6 side gets its flow set (the others' are kept, with their flows).
  if (family === "ip6") {
    for (const s of flowServers(spec)) {
      lines.unshift(`add set ip6 ${NFT_TABLE} ${flowSetName(s)} { ${flowSetBody(spec)} }`);
    }
  }
  for (const [chain] of chains) {
    lines.push(
      ...(rules[chain] ?? []).map((r) => `add rule ${family} ${NFT_TABLE} ${chain} ${r}`),
    );
  }
  lines.push("");
  return lines.join("\n");
}
