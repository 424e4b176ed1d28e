// The packet path without the kernel: parse + NAT lookup + rewrite + checksums, per packet.
// Compare within one run: `parse only` is the baseline each group is measured against.
import { buildUdpPacket } from "../packet/build.ts";
import { parseIpv4Packet } from "../packet/ipv4_packet.ts";
import { Hook } from "./hook.ts";
import { ADDR, engineFixture } from "./_engine_fixture.ts";

const { C, R, S } = ADDR;
const FLOWS = 1024;
const { engine } = engineFixture({ capacity: 1 << 20 });
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
