import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { renderNatRules, renderNatTable, renderNatUpdate } from "./nft_nat.ts";
import { labSpec } from "./_steering_spec.ts";

const spec = labSpec({ tcpPorts: [80, 8080], kernelNat: true });

Deno.test("renderNatRules() DNATs UDP services and diverts TCP ones by TPROXY, marking the answers", () => {
  assertEquals(renderNatRules(spec), {
    pre: ["ip daddr 198.51.100.1 udp dport { 53 } dnat to 203.0.113.10"],
    divert: [
      "tcp sport { 80, 8080 } socket transparent 1 meta mark set 0x4b52 accept",
      "ip daddr 198.51.100.1 tcp dport { 80, 8080 } tproxy to :16000 meta mark set 0x4b52 accept",
    ],
    untrack_out: [],
  });
});

Deno.test("without tcp_conntrack, the four legs of relayed TCP are exempt from conntrack, in raw chains", () => {
  const untracked = { ...spec, tcpConntrack: false };
  const rules = renderNatRules(untracked);
  assertEquals([rules.divert, rules.untrack_out], [
    [
      "tcp sport { 80, 8080 } socket transparent 1 notrack meta mark set 0x4b52 accept",
      "ip daddr 198.51.100.1 tcp dport { 80, 8080 } notrack tproxy to :16000 meta mark set 0x4b52 accept",
    ],
    [
      "ip saddr 198.51.100.1 tcp sport { 80, 8080 } notrack",
      "tcp dport { 80, 8080 } socket transparent 1 notrack",
    ],
  ]);
  const table = renderNatTable(untracked);
  assert(table.includes("chain untrack_out {\n    type filter hook output priority raw;"));
  assert(renderNatUpdate(untracked).includes("flush chain ip krelay untrack_out\n"));
  // With tracking, the table has no such chains: no hook for every packet to pass through.
  assert(!renderNatTable(spec).includes("untrack"));
  assert(!renderNatTable(spec).includes("notrack"));
  assert(!renderNatUpdate(spec).includes("untrack"));
});

Deno.test("renderNatRules() leaves out what no service needs", () => {
  assertEquals(renderNatRules({ ...spec, tcpPorts: [] }).divert, []);
  assertEquals(renderNatRules({ ...spec, udpPorts: [], tcpPorts: [] }).pre, []);
});

Deno.test("renderNatTable() declares a nat chain and one raw-priority prerouting chain; renderNatUpdate() replaces their rules", () => {
  const table = renderNatTable(spec);
  assert(table.includes("type nat hook prerouting priority dstnat"));
  // One prerouting filter chain: one hook per packet, one socket lookup per server answer.
  assertEquals(table.match(/type filter hook prerouting/g)?.length, 1);
  assert(table.includes("chain divert {\n    type filter hook prerouting priority raw;"));
  assert(!table.includes("snat"));
  const update = renderNatUpdate({ ...spec, realIp: "203.0.113.20", gport: 16001 });
  assert(update.startsWith("flush chain ip krelay pre\nflush chain ip krelay divert\n"));
  assert(
    update.includes(
      "add rule ip krelay pre ip daddr 198.51.100.1 udp dport { 53 } dnat to 203.0.113.20",
    ),
  );
  assert(update.includes("tproxy to :16001"));
});
