// The packet path without the kernel: parse + NAT lookup + rewrite + checksums, per packet.
// Compare within one run: `parse only` is the baseline each group is measured against.
import { parseIpv4 } from "../packet/address.ts";
import { buildUdpPacket } from "../packet/build.ts";
import { parseIpv4Packet } from "../packet/ipv4_packet.ts";
import { Hook } from "./hook.ts";
import { NatTable } from "./nat_table.ts";
import { PortPool } from "./port_pool.ts";
import { Rewriter } from "./rewriter.ts";

const C = parseIpv4("198.51.100.10");
const R = parseIpv4("198.51.100.1");
const S = parseIpv4("203.0.113.10");
const FLOWS = 1024;

const table = new NatTable({ capacity: 1 << 20, now: () => 0 });
const settings = {
  relayIp: R,
  realIp: S,
  udpPorts: new Set([53]),
  udpTimeoutMs: 30_000,
  udpStreamTimeoutMs: 120_000,
  tcpPorts: new Set([80]),
  gport: 16000,
  tcpSynTimeoutMs: 10_000,
  tcpEstablishedTimeoutMs: 300_000,
  tcpLingerMs: 2_000,
};
const pool = new PortPool(20000, 29999);
const engine = new Rewriter({ table, pool, settings: () => settings, now: () => 0 });
const payload = new Uint8Array(36);
const requests = Array.from(
  { length: FLOWS },
  (_, i) => buildUdpPacket({ src: C, dst: R, srcPort: 10000 + i, dstPort: 53, payload }),
);
const replies = Array.from(
  { length: FLOWS },
  (_, i) => buildUdpPacket({ src: S, dst: C, srcPort: 53, dstPort: 10000 + i, payload }),
);
// Packets are rewritten in place; each iteration works on a fresh copy, as the kernel's would be.
const scratch = new Uint8Array(requests[0].length);
let i = 0;

Deno.bench({ name: "parse only (64-byte UDP)", group: "udp", baseline: true }, () => {
  scratch.set(requests[i++ & (FLOWS - 1)]);
  parseIpv4Packet(scratch);
});

Deno.bench({ name: "U1/U2 request: parse + NAT + rewrite", group: "udp" }, () => {
  scratch.set(requests[i++ & (FLOWS - 1)]);
  engine.process(Hook.PreRouting, scratch, false);
});

Deno.bench({ name: "U3/U4 reply: parse + NAT + rewrite", group: "udp" }, () => {
  scratch.set(replies[i++ & (FLOWS - 1)]);
  engine.process(Hook.PostRouting, scratch, false);
});

Deno.bench({ name: "U1/U2 request, partial checksum (full UDP checksum)", group: "udp" }, () => {
  scratch.set(requests[i++ & (FLOWS - 1)]);
  engine.process(Hook.PreRouting, scratch, true);
});
