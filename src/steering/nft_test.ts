import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { renderNatRules, renderNatTable, renderNatUpdate } from "./nft.ts";
import { labSpec } from "./_steering_spec.ts";

const spec = labSpec({ tcpPorts: [80, 8080] });

Deno.test("renderNatRules() diverts TCP services by TPROXY, hands the answers to the relay's sockets, and NATs UDP ones by krelay's flow set", () => {
  const key = "ip saddr . udp sport . udp dport";
  const reply = "ip daddr . udp dport . udp sport";
  const tuple = "ip saddr . udp sport . ip daddr . udp dport";
  const requestTuple = "ip daddr . udp dport . ip saddr . udp sport";
  const errors = "icmp type { destination-unreachable, time-exceeded, parameter-problem }";
  // A plain IPv4 header, then UDP: the ports at bits 224 and 240 of the ICMP message.
  const aboutUdp = `${errors} @th,64,8 0x45 @th,136,8 17`;
  // What the rules translated, for the flowtable to learn (udp_flowtable.ts).
  const learn = "meta mark set meta mark or 0x100000";
  assertEquals(renderNatRules(spec), {
    divert: [
      // First, the most frequent: a known flow's request goes to its own server and keeps its
      // flow alive (its key holds the service port: no set lookup); any other datagram not for
      // the relay has nothing to do here (replies).
      `ip daddr 198.51.100.1 meta l4proto udp ip daddr set ${key} map @udp_flows ${learn} ` +
      `update @udp_flows { ${key} timeout 30000ms : ip daddr } ` +
      `update @udp_replies { ${requestTuple} timeout 30000ms } accept`,
      "meta l4proto udp ip daddr != 198.51.100.1 accept",
      // A server's answer: given to the relay's socket and marked, to be addressed to the relay
      // after conntrack (chain answers): no policy rule needed for local delivery.
      "tcp sport { 80, 8080 } tproxy to 127.0.0.1:1 meta mark set 0x4b52 accept",
      "ip daddr 198.51.100.1 tcp dport { 80, 8080 } tproxy to :16000 meta mark set 0x4b52 accept",
      // An error about the relay's own connection to a server finds its socket.
      `${errors} socket transparent 1 meta mark set 0x4b52 accept`,
      // A flow whose client was quiet longer than its server (replies refresh udp_answered).
      `ip daddr 198.51.100.1 udp dport { 53 } ip daddr set ${key} map @udp_answered ${learn} ` +
      `update @udp_flows { ${key} timeout 30000ms : ip daddr } ` +
      `update @udp_replies { ${requestTuple} timeout 30000ms } accept`,
      // A new flow's first packet is marked and queued by the table's own chain.
      "ip daddr 198.51.100.1 udp dport { 53 } meta mark set 0x4b53 jump to_queue",
      // An error from the client's side about a reply from relay:53, for krelay's queue.
      `ip daddr 198.51.100.1 ${aboutUdp} @th,224,16 { 53 } meta mark set 0x4b54 jump to_queue`,
    ],
    udp_forward: [
      // Only the flow's own server, from its service port to the client's port, is answered;
      // the answer records the flow in udp_answered. Then the requests leave the chain.
      `meta l4proto udp ${tuple} @udp_replies update @udp_replies { ${tuple} timeout 30000ms } ` +
      `update @udp_answered { ${reply} timeout 30000ms : ip saddr } ip saddr set 198.51.100.1 ` +
      `${learn} accept`,
      "meta l4proto udp meta mark != 0x4b53 accept",
      // krelay rewrote it: the flow is known from now on; a full set drops it.
      `meta mark 0x4b53 add @udp_flows { ${key} timeout 30000ms : ip daddr } ` +
      `add @udp_replies { ${requestTuple} timeout 30000ms } meta mark set 0x100000 accept`,
      "meta mark 0x4b53 drop",
      // An error toward the client about its request to server:53, for krelay's queue.
      `${aboutUdp} @th,240,16 { 53 } meta mark set 0x4b54 jump to_queue`,
      "meta mark 0x4b54 meta mark set 0x0",
    ],
    untrack_out: [],
    // The relay's own errors, which krelay checks.
    icmp_out: [`${errors} jump to_queue`],
    answers: ["meta mark 0x4b52 ip daddr set 198.51.100.1"],
  });
});

Deno.test("renderNatRules() with sk_lookup: no rule for the clients' segments but notrack's", () => {
  const tproxy = (r: string) => r.includes("tproxy to :");
  const plain = renderNatRules(spec, true).divert;
  assert(!plain.some(tproxy), plain.join("\n"));
  assert(!plain.some((r) => r.includes("tcp dport")), plain.join("\n"));
  // The server's answers still need the relay's transparent socket found and routed to it.
  assertEquals(
    plain[2],
    "tcp sport { 80, 8080 } tproxy to 127.0.0.1:1 meta mark set 0x4b52 accept",
  );
  const untracked = renderNatRules({ ...spec, tcpConntrack: false }, true).divert;
  assert(!untracked.some(tproxy), untracked.join("\n"));
  assert(untracked.includes("ip daddr 198.51.100.1 tcp dport { 80, 8080 } notrack accept"));
  assert(!renderNatUpdate(spec, true).includes("tproxy to :"));
  // The defrag chain keeps its (never called) TPROXY expression: fragments are still reassembled.
  assert(renderNatTable(spec, true).includes("chain defrag {\n    meta l4proto tcp tproxy"));
});

Deno.test("without tcp_conntrack, the four legs of relayed TCP are exempt from the host's conntrack, in raw chains", () => {
  const untracked = { ...spec, tcpConntrack: false };
  const rules = renderNatRules(untracked);
  assertEquals([rules.divert.slice(2, 4), rules.untrack_out.slice(0, 2)], [
    [
      // Untracked: readdressed at once, no chain answers.
      "tcp sport { 80, 8080 } notrack tproxy to 127.0.0.1:1 ip daddr set 198.51.100.1 accept",
      "ip daddr 198.51.100.1 tcp dport { 80, 8080 } notrack tproxy to :16000 meta mark set 0x4b52 accept",
    ],
    [
      "ip saddr 198.51.100.1 tcp sport { 80, 8080 } notrack",
      "tcp dport { 80, 8080 } socket transparent 1 notrack",
    ],
  ]);
  const table = renderNatTable(untracked);
  assert(table.includes("chain untrack_out {\n    type filter hook output priority raw;"));
  // The relay's own ICMP errors are queued from there: one output hook, not two.
  assertEquals(rules.untrack_out.length, 3);
  assertEquals(rules.icmp_out, undefined);
  assertEquals(table.match(/hook output/g)?.length, 1);
  assertEquals(table.match(/hook prerouting/g)?.length, 1);
  assertEquals(rules.answers, undefined);
  assert(renderNatUpdate(untracked).includes("flush chain ip krelay untrack_out\n"));
  // With tracking, the table has no such chains: no hook for every packet to pass through.
  assert(!renderNatTable(spec).includes("untrack"));
  assert(!renderNatTable(spec).includes("notrack"));
  assert(!renderNatUpdate(spec).includes("untrack"));
});

Deno.test("renderNatRules() leaves out what no service needs", () => {
  assertEquals(renderNatRules({ ...spec, udpPorts: [] }).udp_forward, []);
  assertEquals(renderNatRules({ ...spec, udpPorts: [] }).divert.length, 3);
  assertEquals(renderNatRules({ ...spec, tcpPorts: [] }).divert.length, 5);
  assertEquals(renderNatRules({ ...spec, udpPorts: [], tcpPorts: [] }).divert, []);
});

Deno.test("renderNatRules() gives UDP flows the configured timeout, in milliseconds", () => {
  const rules = renderNatRules({ ...spec, udpTimeout: 2.5 });
  assert(rules.divert[0].includes("timeout 2500ms"));
  assert(rules.udp_forward.every((r) => !r.includes("timeout") || r.includes("timeout 2500ms")));
});

Deno.test("renderNatTable() loads no conntrack: no nat chain, no ct expression", () => {
  for (const s of [spec, { ...spec, tcpConntrack: false }]) {
    const table = renderNatTable(s);
    assert(!/\b(nat|dnat|snat|masquerade|ct)\b/.test(table), table);
  }
});

Deno.test("renderNatTable() declares the flow map and set, the defrag chain and one hook per path; renderNatUpdate() replaces the rules", () => {
  const table = renderNatTable({ ...spec, natMaxEntries: 1000 });
  assert(table.includes("  map udp_flows {\n"));
  assert(
    table.includes(
      "type ipv4_addr . inet_service . inet_service : ipv4_addr; flags dynamic,timeout;",
    ),
  );
  assert(table.includes("  set udp_replies {\n"));
  assert(table.includes("type ipv4_addr . inet_service . ipv4_addr . inet_service; flags"));
  assert(table.includes("  map udp_answered {\n"));
  assertEquals(table.match(/size 1000;/g)?.length, 3);
  // A base chain of its own costs every packet a hook: one prerouting chain (and with TCP and
  // tcp_conntrack, answers after conntrack), one forward chain.
  assertEquals(table.match(/type filter hook prerouting/g)?.length, 2);
  assert(table.includes("chain answers {\n    type filter hook prerouting priority mangle;"));
  assertEquals(renderNatTable({ ...spec, tcpPorts: [] }).match(/hook prerouting/g)?.length, 1);
  assertEquals(table.match(/type filter hook forward/g)?.length, 1);
  assert(table.includes("chain divert {\n    type filter hook prerouting priority raw;"));
  // The relay's own ICMP errors (UDP services only), and the chain holding the queue rule.
  assertEquals(table.match(/type filter hook output/g)?.length, 1);
  assert(table.includes("chain icmp_out {\n    type filter hook output priority raw;"));
  assert(table.includes("  chain to_queue {\n    accept\n  }"));
  assert(!renderNatTable({ ...spec, udpPorts: [] }).includes("hook output"));
  // The TPROXY expression of a chain that is never called, for the kernel's reassembly.
  assert(table.includes("  chain defrag {\n    meta l4proto tcp tproxy to :16000\n  }"));
  const update = renderNatUpdate({ ...spec, realIp: "203.0.113.20", gport: 16001 });
  // The flows and the defrag chain are kept: live flows stay known, with their servers (a new
  // real_ip is krelay's to give new flows: no rule names a server).
  assert(
    update.startsWith(
      "add chain ip krelay icmp_out { type filter hook output priority raw; policy accept; }\n" +
        "add chain ip krelay answers { type filter hook prerouting priority mangle; policy accept; }\n" +
        "flush chain ip krelay divert\nflush chain ip krelay udp_forward\n",
    ),
    update,
  );
  // The queue chain keeps its rule.
  assert(!update.includes("chain ip krelay to_queue"));
  // Its UDP services gone, icmp_out goes too (added first, so that deleting it cannot fail).
  assert(
    renderNatUpdate({ ...spec, udpPorts: [] }).includes(
      "flush chain ip krelay icmp_out\ndelete chain ip krelay icmp_out\n",
    ),
  );
  assert(!update.includes("udp_flows {\n") && !update.includes("defrag"));
  assert(!update.includes("203.0.113.20") && !table.includes("203.0.113.10"));
  assert(update.includes("tproxy to :16001"));
});

Deno.test("renderNatRules() leaves a scripted UDP service to the queue: no NAT, no mark for it", () => {
  const rules = renderNatRules(labSpec({ udpPorts: [53, 5353], scriptedUdpPorts: [5353] }));
  const udp = [...rules.divert, ...rules.udp_forward].filter((r) => r.includes("udp"));
  assert(udp.length > 0);
  // A known flow's datagrams, found by their flow's key, only exclude it: a flow of the port
  // from before its script goes to the queue too.
  const [request, reply] = [rules.divert[0], rules.udp_forward[0]];
  assert(request.startsWith("ip daddr 198.51.100.1 udp dport != { 5353 } ip daddr set"), request);
  assert(reply.startsWith("udp sport != { 5353 } ip saddr . udp sport . ip daddr"), reply);
  for (const r of udp.filter((r) => r !== request && r !== reply)) assert(!r.includes("5353"), r);
  assert(udp.some((r) => r.includes("udp dport { 53 }")), udp.join("\n"));
  const none = renderNatRules(labSpec({ udpPorts: [53], scriptedUdpPorts: [53] }));
  assertEquals([...none.divert, ...none.udp_forward].filter((r) => r.includes("udp")), []);
});

Deno.test("renderNatRules() leaves a new flow of a service with no server up to the relay's stack", () => {
  const rules = renderNatRules(labSpec({ udpPorts: [53, 5353], refusedUdpPorts: [5353, 7] }));
  const refuse = "ip daddr 198.51.100.1 udp dport { 5353 } accept";
  const mark = rules.divert.findIndex((r) => r.includes("meta mark set 0x4b53"));
  // After the known flows' rule, before the first packets' mark: not queued, not NATed.
  assertEquals(rules.divert.indexOf(refuse), mark - 1);
  assert(rules.divert[mark - 2].includes("map @udp_answered"));
  assert(rules.divert[0].includes("map @udp_flows"));
  assertEquals(renderNatRules(labSpec({ udpPorts: [53] })).divert.some((r) => r === refuse), false);
});

Deno.test("renderNatRules() has the kernel refuse a SYN to a TCP service with no server up, before TPROXY", () => {
  const rules = renderNatRules(labSpec({ tcpPorts: [80, 443], refusedTcpPorts: [443, 7] }));
  const refuse = "ip daddr 198.51.100.1 tcp dport { 443 } " +
    "tcp flags & (fin | syn | rst | ack) == syn reject with tcp reset";
  const tproxy = rules.divert.findIndex((r) => r.includes("tproxy to :"));
  assertEquals(rules.divert.indexOf(refuse), tproxy - 1);
  // The relay's answers and connections of the service still pass as before.
  assert(rules.divert[2].startsWith("tcp sport { 80, 443 } tproxy to 127.0.0.1:1"));
  assertEquals(renderNatRules(labSpec({ tcpPorts: [80] })).divert.some((r) => r === refuse), false);
  // Each family's table refuses the services with none of its own servers up.
  const six = labSpec({
    relayIp: "2001:db8:1::1",
    realIp: "2001:db8:2::10",
    tcpPorts: [80, 443],
    refusedTcpPorts: [443],
  });
  assertEquals(renderNatRules(six, true, "ip6").divert.some((r) => r.includes("reject")), false);
  const refused6 = renderNatRules({ ...six, refusedTcpPorts6: [80] }, true, "ip6").divert;
  const refuse6 = "ip6 daddr 2001:db8:1::1 tcp dport { 80 } " +
    "tcp flags & (fin | syn | rst | ack) == syn reject with tcp reset";
  // Right after the servers' answers' rule: before sk_lookup's notrack rule and anything else
  // for the clients' segments.
  const answers6 = refused6.findIndex((r) => r.startsWith("tcp sport { 80, 443 } tproxy"));
  assertEquals(refused6.indexOf(refuse6), answers6 + 1);
  const four = renderNatRules(labSpec({ tcpPorts: [80], refusedTcpPorts6: [80] })).divert;
  assertEquals(four.some((r) => r.includes("reject")), false);
});

Deno.test("renderNatRules() for ip6: IPv6 selectors, a flow set per server, first packets marked for the queue", () => {
  const six = labSpec({
    relayIp: "2001:db8:1::1",
    realIp: "2001:db8:2::10",
    scriptedUdpPorts: [],
    servers6: [{ address: "2001:db8:2::10", id: 0 }, { address: "2001:db8:2::20", id: 3 }],
  });
  const key = "ip6 saddr . udp sport . udp dport";
  const replies =
    "update @udp_replies { ip6 daddr . udp dport . ip6 saddr . udp sport timeout 30000ms }";
  const rules = renderNatRules(six, false, "ip6");
  // Then the ICMPv6 errors' rules (icmp6_rules_test.ts).
  assertEquals(rules.divert.slice(0, 6), [
    // First, as IPv4's: a known flow goes to the server whose set holds it (no set of service
    // ports: the flow's key holds its port)...
    `ip6 daddr 2001:db8:1::1 meta l4proto udp ${key} @udp_flows_0 ip6 daddr set 2001:db8:2::10 ` +
    `update @udp_flows_0 { ${key} timeout 30000ms } ${replies} accept`,
    `ip6 daddr 2001:db8:1::1 meta l4proto udp ${key} @udp_flows_3 ip6 daddr set 2001:db8:2::20 ` +
    `update @udp_flows_3 { ${key} timeout 30000ms } ${replies} accept`,
    // ...and a reply leaves the chain before any rule below.
    "meta l4proto udp ip6 daddr != 2001:db8:1::1 accept",
    // The server's answer goes to the relay's socket, marked for `answers` (no policy rule).
    "tcp sport { 80 } tproxy to [::1]:1 meta mark set 0x4b52 accept",
    "ip6 daddr 2001:db8:1::1 tcp dport { 80 } tproxy to :16000 meta mark set 0x4b52 accept",
    // A new flow's first packet is queued (the table's to_queue): krelay picks its server.
    "ip6 daddr 2001:db8:1::1 udp dport { 53 } meta mark set 0x4b53 jump to_queue",
  ]);
  // A reply from the flow's own server first, whole tuple checked; then the others leave.
  assert(
    rules.udp_forward[1].startsWith(
      "ip6 saddr 2001:db8:2::20 meta l4proto udp ip6 saddr . udp sport . ip6 daddr",
    ),
  );
  assert(
    rules.udp_forward[1].endsWith(
      "update @udp_flows_3 { ip6 daddr . udp dport . udp sport timeout 30000ms } " +
        "ip6 saddr set 2001:db8:1::1 accept",
    ),
  );
  assertEquals(rules.udp_forward[2], "meta l4proto udp meta mark != 0x4b53 accept");
  // Rewritten to a server, the first packet joins that server's set; else it is dropped.
  assert(
    rules.udp_forward[4].startsWith("meta mark 0x4b53 ip6 daddr 2001:db8:2::20 add @udp_flows_3 {"),
  );
  assertEquals(rules.udp_forward[5], "meta mark 0x4b53 drop");
  assert(!JSON.stringify(rules).match(/\bip (saddr|daddr)\b/));
  // ICMPv6 errors: TCP and UDP about each server, and one about replies.
  assertEquals(rules.divert.length, 6 + 2 + 2 + 1);
  assertEquals(rules.icmp_out?.length, 2);
  // No IPv6 server up: new IPv6 flows are refused before they are marked.
  const refused = renderNatRules({ ...six, refusedUdpPorts6: [53] }, false, "ip6").divert;
  assertEquals(refused[5], "ip6 daddr 2001:db8:1::1 udp dport { 53 } accept");
  // A scripted port's datagrams are left out by number (its flows go to the queue at once).
  const withScript = renderNatRules(
    { ...six, udpPorts: [53, 5353], scriptedUdpPorts: [5353] },
    false,
    "ip6",
  );
  assert(withScript.divert[0].startsWith("ip6 daddr 2001:db8:1::1 udp dport != { 5353 } "));
  assert(withScript.udp_forward[0].startsWith("ip6 saddr 2001:db8:2::10 udp sport != { 5353 } "));
  assert(
    renderNatTable(six, true, "ip6").includes(
      "chain icmp_out {\n    type filter hook output priority raw;",
    ),
  );
  // IPv4's icmp_out queues the relay's own errors, and no IPv6 rule.
  assertEquals(renderNatRules(spec).icmp_out?.length, 1);
  const table = renderNatTable(six, true, "ip6");
  assert(
    table.startsWith(
      "table ip6 krelay {\n  set udp_flows_0 { type ipv6_addr . inet_service . inet_service; " +
        "flags dynamic,timeout; size 65536; }\n  set udp_flows_3 {",
    ),
    table,
  );
  assert(!table.includes("udp_answered") && !JSON.stringify(rules).includes("udp_answered"));
  assert(table.includes("type ipv6_addr . inet_service . ipv6_addr . inet_service;"), table);
  assert(renderNatUpdate(six, true, "ip6").includes("\nflush chain ip6 krelay divert\n"));
  // The table's own queue chain (nft_queue.ts puts the rule in it), kept by updates.
  assert(table.includes("  chain to_queue {\n    accept\n  }"), table);
  assert(!renderNatUpdate(six, true, "ip6").includes("to_queue {"));
  assert(!renderNatUpdate(six, true, "ip6").includes("chain ip6 krelay to_queue"));
  // What the queue takes, it takes from the table's chains (no ip6tables rule selects by mark).
  assert(
    rules.divert.filter((r) => r.includes("0x4b55")).every((r) => r.endsWith("jump to_queue")),
  );
  assert(
    (rules.icmp_out ?? []).every((r) => r.endsWith("0x4b55 jump to_queue")),
    rules.icmp_out?.join(),
  );
});

Deno.test("renderNatRules() for ip6 readdresses the servers' TCP answers to the relay, after conntrack or at once", () => {
  const six = labSpec({ relayIp: "2001:db8:1::1", realIp: "2001:db8:2::10", udpPorts: [] });
  // tcp_conntrack (the default): marked in divert, readdressed in `answers` (mangle priority).
  const tracked = renderNatRules(six, true, "ip6");
  assertEquals(tracked.answers, ["meta mark 0x4b52 ip6 daddr set 2001:db8:1::1"]);
  assert(
    renderNatTable(six, true, "ip6").includes(
      "chain answers {\n    type filter hook prerouting priority mangle; policy accept;\n" +
        "    meta mark 0x4b52 ip6 daddr set 2001:db8:1::1\n  }",
    ),
  );
  // A live update makes sure the chain is there before it flushes it.
  const update = renderNatUpdate(six, true, "ip6");
  const added = update.indexOf("add chain ip6 krelay answers {");
  assert(added >= 0 && added < update.indexOf("flush chain ip6 krelay answers"), update);
  assert(!update.includes("delete chain ip6 krelay answers"), update);
  // An error about the relay's own connection goes the same way.
  assert(tracked.divert.some((r) => r.includes("@th,112,8 6 ") && r.endsWith("0x4b52 accept")));
  // Untracked: readdressed in divert at once, and no `answers` chain (one hook less).
  const untracked = renderNatRules({ ...six, tcpConntrack: false }, true, "ip6");
  assertEquals(
    untracked.divert[0],
    "tcp sport { 80 } notrack tproxy to [::1]:1 ip6 daddr set 2001:db8:1::1 accept",
  );
  assert(
    untracked.divert.some((r) =>
      r.endsWith("@th,400,16 { 80 } ip6 daddr set 2001:db8:1::1 accept")
    ),
  );
  assertEquals(untracked.answers, undefined);
  assert(!renderNatTable({ ...six, tcpConntrack: false }, true, "ip6").includes("chain answers"));
  assert(
    renderNatUpdate({ ...six, tcpConntrack: false }, true, "ip6").includes(
      "flush chain ip6 krelay answers\ndelete chain ip6 krelay answers",
    ),
  );
  // No TCP service: no `answers` either.
  assertEquals(
    renderNatRules({ ...six, tcpPorts: [], udpPorts: [53] }, true, "ip6").answers,
    undefined,
  );
});

Deno.test("renderNatRules() for ip6 marks the ICMPv6 errors of a scripted UDP service's flows for the queue too", () => {
  const six = labSpec({
    relayIp: "2001:db8:1::1",
    realIp: "2001:db8:2::10",
    udpPorts: [53, 5353],
    scriptedUdpPorts: [5353],
  });
  const rules = renderNatRules(six, false, "ip6");
  const icmp = rules.divert.filter((r) => r.includes("meta mark set 0x4b55"));
  // An error about a request (to the server), and one about a reply (from the relay).
  assertEquals(icmp.length, 2, icmp.join("\n"));
  assert(icmp.every((r) => r.includes("{ 53, 5353 }")), icmp.join("\n"));
  const out = rules.icmp_out ?? [];
  assert(out.length === 1 && out[0].includes("{ 53, 5353 }"), out.join("\n"));
  // The kernel NATs 53 only.
  assert(!rules.divert.some((r) => r.includes("udp dport { 53, 5353 }")), rules.divert.join("\n"));
});
