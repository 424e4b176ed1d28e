import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { hex128, renderIcmp6Rules } from "./icmp6_rules.ts";
import { labSpec } from "./_steering_spec.ts";
import { parseIpv6 } from "../packet/ipv6_address.ts";

const six = labSpec({ relayIp: "2001:db8:1::1", realIp: "2001:db8:2::10" });
const R = parseIpv6("2001:db8:1::1"), S = parseIpv6("2001:db8:2::10");
const ERRORS =
  "icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem }";

Deno.test("hex128() writes 16 bytes as one constant", () => {
  assertEquals(hex128(S), "0x20010db8000200000000000000000010");
});

const DELIVERED = "ip6 daddr set 2001:db8:1::1 accept";

Deno.test("renderIcmp6Rules(): TCP errors go to the relay's socket, UDP ones to the queue", () => {
  const s = hex128(S), r = hex128(R);
  assertEquals(renderIcmp6Rules(six, R, [S], [53], DELIVERED), {
    divert: [
      // Quoted TCP to the server's service port: delivered to the relay's socket as nft.ts
      // says (here readdressed to the relay at once).
      `${ERRORS} @th,112,8 6 @th,256,128 ${s} @th,400,16 { 80 } ${DELIVERED}`,
      // Quoted UDP request to the server, and a reply from the relay: queued to krelay, by the
      // table's own queue chain.
      `${ERRORS} @th,112,8 17 @th,256,128 ${s} @th,400,16 { 53 } meta mark set 0x4b55 jump to_queue`,
      `ip6 daddr 2001:db8:1::1 ${ERRORS} @th,112,8 17 @th,128,128 ${r} @th,384,16 { 53 } ` +
      `meta mark set 0x4b55 jump to_queue`,
    ],
    icmp_out: [
      `${ERRORS} @th,112,8 17 @th,256,128 ${s} @th,400,16 { 53 } meta mark set 0x4b55 jump to_queue`,
    ],
  });
  assertEquals(renderIcmp6Rules(labSpec({ ...six, tcpPorts: [] }), R, [S], [], DELIVERED), {
    divert: [],
    icmp_out: [],
  });
});
