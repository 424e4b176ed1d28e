import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { parseIpv6 } from "../packet/ipv6_address.ts";
import { type Ipv6Packet, parseIpv6Packet } from "../packet/ipv6_packet.ts";
import { foldIpv6, parseServerList } from "../servers/list.ts";
import type { ServerPool } from "../servers/balancer.ts";
import { engineFixture } from "./_engine_fixture.ts";
import { Action } from "./rewriter.ts";
import { Hook } from "./hook.ts";

const R6 = "2001:db8:1::1", S1 = "2001:db8:2::10", S2 = "2001:db8:2::20";

/** A UDP datagram src:sport -> dst:dport over IPv6, its checksum right. */
function udp6(src: string, sport: number, dst: string, dport: number): Uint8Array {
  const b = new Uint8Array(40 + 8 + 5);
  b[0] = 0x60;
  b[5] = 13;
  b[6] = 17;
  b[7] = 64;
  b.set(parseIpv6(src), 8);
  b.set(parseIpv6(dst), 24);
  const v = new DataView(b.buffer);
  v.setUint16(40, sport);
  v.setUint16(42, dport);
  v.setUint16(44, 13);
  b.set(new TextEncoder().encode("query"), 48);
  (parseIpv6Packet(b) as Ipv6Packet).recomputeL4Checksum();
  return b;
}

function checksumRight(bytes: Uint8Array): boolean {
  const copy = bytes.slice();
  const p = parseIpv6Packet(copy) as Ipv6Packet;
  p.recomputeL4Checksum();
  return copy.every((x, i) => x === bytes[i]);
}

function pool6(up?: boolean[]): ServerPool {
  const servers = parseServerList(`${S1},${S2}`);
  if (typeof servers === "string") throw new Error(servers);
  return { servers, balance: "client-hash", up: up ? { "udp/53": up } : {} };
}

Deno.test("an IPv6 flow's first packet goes to the IPv6 server the balancer picks, checksum kept", () => {
  const f = engineFixture();
  f.settings.relayIp6 = R6;
  f.settings.pool6 = pool6();
  const seen = new Set<string>();
  for (let i = 0; i < 32; i++) {
    const client = `2001:db8:1::${(0x100 + i).toString(16)}`;
    const bytes = udp6(client, 40000 + i, R6, 53);
    assertEquals(f.engine.process(Hook.PreRouting, bytes, false), Action.AcceptRewritten);
    const p = parseIpv6Packet(bytes) as Ipv6Packet;
    seen.add(p.dstText);
    assert(checksumRight(bytes));
    // The same client is sent to the same server again (client hash).
    const again = udp6(client, 50000, R6, 53);
    f.engine.process(Hook.PreRouting, again, false);
    assertEquals((parseIpv6Packet(again) as Ipv6Packet).dstText, p.dstText);
  }
  assertEquals([...seen].sort(), [S1, S2]);
  // The kernel keeps the flows: nothing in krelay's table.
  assertEquals(f.table.stats().entries, 0);
  assertEquals(f.engine.counters.toKernel, 64);
  assert(foldIpv6(parseIpv6(S1)) !== foldIpv6(parseIpv6(S2)));
});

Deno.test("an IPv6 first packet goes only to servers up, and is dropped with none up", () => {
  const f = engineFixture();
  f.settings.relayIp6 = R6;
  f.settings.pool6 = pool6([false, true]);
  for (let i = 0; i < 8; i++) {
    const bytes = udp6(`2001:db8:1::${i + 1}`, 40000, R6, 53);
    f.engine.process(Hook.PreRouting, bytes, false);
    assertEquals((parseIpv6Packet(bytes) as Ipv6Packet).dstText, S2);
  }
  f.settings.pool6 = pool6([false, false]);
  assertEquals(
    f.engine.process(Hook.PreRouting, udp6(`2001:db8:1::1`, 1, R6, 53), false),
    Action.Drop,
  );
  assertEquals(f.engine.counters.droppedNoServer, 1);
  // Other ports and addresses pass untouched.
  f.settings.pool6 = pool6();
  const other = udp6("2001:db8:1::1", 1, R6, 54);
  assertEquals(f.engine.process(Hook.PreRouting, other, false), Action.Accept);
  const elsewhere = udp6("2001:db8:1::1", 1, "2001:db8:1::2", 53);
  assertEquals(f.engine.process(Hook.PreRouting, elsewhere, false), Action.Accept);
});

/** An ICMPv6 port unreachable from `from` to `to`, quoting `quoted`, its checksum right. */
function unreachable6(from: string, to: string, quoted: Uint8Array): Uint8Array {
  const b = new Uint8Array(40 + 8 + quoted.length);
  b[0] = 0x60;
  new DataView(b.buffer).setUint16(4, 8 + quoted.length);
  b[6] = 58;
  b[7] = 64;
  b.set(parseIpv6(from), 8);
  b.set(parseIpv6(to), 24);
  b[40] = 1;
  b[41] = 4;
  b.set(quoted, 48);
  (parseIpv6Packet(b) as Ipv6Packet).recomputeL4Checksum();
  return b;
}

Deno.test("an ICMPv6 error about a reply goes to the server its flow's first packet went to", () => {
  const f = engineFixture();
  f.settings.relayIp6 = R6;
  f.settings.pool6 = pool6();
  // Clients of both servers (client hash), each with a flow the kernel carries.
  const served = new Map<string, string>();
  for (let i = 0; served.size < 2 && i < 64; i++) {
    const client = `2001:db8:1::${(0x100 + i).toString(16)}`;
    const bytes = udp6(client, 40000, R6, 53);
    f.engine.process(Hook.PreRouting, bytes, false);
    const server = (parseIpv6Packet(bytes) as Ipv6Packet).dstText;
    if (![...served.values()].includes(server)) served.set(client, server);
  }
  assertEquals([...served.values()].sort(), [S1, S2]);
  for (const [client, server] of served) {
    // The client's port unreachable about the relay's reply to it.
    const error = unreachable6(client, R6, udp6(R6, 53, client, 40000));
    assertEquals(f.engine.process(Hook.PreRouting, error, false), Action.AcceptRewritten);
    const p = parseIpv6Packet(error) as Ipv6Packet;
    assertEquals(p.dstText, server);
    assertEquals((parseIpv6Packet(error.slice(48)) as Ipv6Packet).srcText, server);
    assert(checksumRight(error));
  }
  // A flow it never saw: left alone, as there is no knowing its server.
  const unknown = unreachable6("2001:db8:1::99", R6, udp6(R6, 53, "2001:db8:1::99", 40000));
  assertEquals(f.engine.process(Hook.PreRouting, unknown, false), Action.Accept);
  assertEquals(f.engine.counters.icmpErrors, 2);
});
