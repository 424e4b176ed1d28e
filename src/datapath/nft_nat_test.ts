import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { parseIpv4 } from "../packet/address.ts";
import { clientElementArgs, renderNatRules, renderNatTable, renderNatUpdate } from "./nft_nat.ts";
import { labSpec } from "./_steering_spec.ts";

const spec = labSpec({ tcpPorts: [80, 8080], kernelNat: true });

Deno.test("renderNatRules() DNATs UDP services, redirects TCP ones, SNATs by mark", () => {
  assertEquals(renderNatRules(spec), {
    pre: [
      "ip daddr 198.51.100.1 udp dport { 53 } dnat to 203.0.113.10",
      "ip daddr 198.51.100.1 tcp dport { 80, 8080 } redirect to :16000",
    ],
    post: ["tcp sport 20000-29999 meta mark != 0 snat to meta mark map @clients"],
  });
});

Deno.test("renderNatRules() leaves out what no service needs", () => {
  assertEquals(renderNatRules({ ...spec, tcpPorts: [] }).post, []);
  assertEquals(renderNatRules({ ...spec, udpPorts: [], tcpPorts: [] }).pre, []);
});

Deno.test("renderNatTable() declares the map and two nat chains; renderNatUpdate() keeps the map", () => {
  const table = renderNatTable(spec);
  assert(table.includes("map clients { type mark : ipv4_addr; }"));
  assert(table.includes("type nat hook prerouting priority dstnat"));
  assert(table.includes("type nat hook postrouting priority srcnat"));
  const update = renderNatUpdate({ ...spec, realIp: "203.0.113.20" });
  assert(!update.includes("map clients"));
  assert(update.startsWith("flush chain ip krelay pre\nflush chain ip krelay post\n"));
  assert(update.includes("dnat to 203.0.113.20"));
});

Deno.test("clientElementArgs() maps the client's address, as a mark, to itself", () => {
  assertEquals(clientElementArgs(parseIpv4("198.51.100.10")), [
    "add",
    "element",
    "ip",
    "krelay",
    "clients",
    "{ 0xc633640a : 198.51.100.10 }",
  ]);
});
