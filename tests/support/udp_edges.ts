/**
 * The UDP edges of a relayed flow, in either family, checked with
 * tests/fixtures/icmp_probe.py (Python sockets with IP_RECVERR or IPV6_RECVERR, so what each
 * side learns from an ICMP error is the kernel's own account): ICMP errors both ways, path MTU
 * discovery, and, over IPv4, datagrams larger than the MTU. Used by edges_test.ts and
 * ipv6_edges_test.ts.
 *
 * @module
 */

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { LAB_IF } from "../../src/lab/addresses.ts";
import type { LabProcess } from "../../src/lab/process.ts";
import type { Lab } from "../../src/lab/topology.ts";
import { assertDigRefused } from "./dig.ts";
import type { LabFamily } from "./family.ts";
import { startKrelay } from "./krelay.ts";

/** The probe fixture: `send`, `echo`, `late` and `quit` (see its header). */
export const PROBE = new URL("../fixtures/icmp_probe.py", import.meta.url).pathname;

/** The relay's server-side link and the server's interface get a 1,280-byte MTU. */
export async function narrowServerSide(lab: Lab): Promise<void> {
  for (const dev of [LAB_IF.relayServerPort1, LAB_IF.relayServer]) {
    await lab.exec("relay", ["ip", "link", "set", "dev", dev, "mtu", "1280"], { check: true });
  }
  await lab.exec("server", ["ip", "link", "set", "dev", LAB_IF.host, "mtu", "1280"], {
    check: true,
  });
}

/** One UDP probe from the client to the relay's address of `f` (see icmp_probe.py). */
export async function probe(lab: Lab, f: LabFamily, ...args: (string | number)[]) {
  const r = await lab.exec("client", ["python3", PROBE, "send", f.relay, ...args.map(String)], {
    timeoutMs: 15_000,
  });
  assert(r.success, r.stderr);
  return JSON.parse(r.stdout);
}

/** The first JSON line `p` prints, waited for up to 10 s. */
export async function firstLine(p: LabProcess): Promise<Record<string, unknown>> {
  for (let i = 0; i < 100; i++) {
    const line = (await p.readLog()).split("\n").find((l) => l.startsWith("{"));
    if (line !== undefined) return JSON.parse(line);
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${p.name} printed nothing:\n${await p.readLog()}`);
}

/**
 * Asserts what a `late` server heard after answering a client that had gone: the client's
 * port unreachable, from the client's own address, about the server's own datagram.
 */
export async function assertClientGone(late: LabProcess, f: LabFamily): Promise<void> {
  assertEquals(await firstLine(late), {
    peer: f.client,
    result: "ConnectionRefusedError",
    icmp: [...f.icmp.portUnreachable],
    info: 0,
    from: f.client,
  });
}

/**
 * The UDP edges in family `f`, with the services on ports 7000 (echo), 7001 (answers again
 * after the client has gone) and 7002 (nothing listens), the server's side narrowed to a
 * 1,280-byte MTU: ICMP errors both ways, path MTU discovery, and over IPv4 datagrams larger
 * than the MTU. `extraFlags`: krelay's, after the lab's and the services'.
 */
export async function udpEdges(lab: Lab, f: LabFamily, extraFlags: string[] = []): Promise<void> {
  const scripted = extraFlags.includes("--script");
  const R = f.relay;
  const echo = lab.spawn("server", "udp-echo", ["python3", PROBE, "echo", f.server, "7000"]);
  const late = lab.spawn("server", "udp-late", ["python3", PROBE, "late", f.server, "7001"]);
  await lab.waitForListen("server", "udp", 7000);
  await lab.waitForListen("server", "udp", 7001);
  await narrowServerSide(lab);
  const krelay = await startKrelay(lab, [
    ...f.flags,
    "--udp-ports",
    "7000,7001,7002",
    "--tcp-ports",
    "",
    ...extraFlags,
  ]);

  // Nothing listens: the server's port unreachable comes back from the relay, at once.
  const refused = await probe(lab, f, 7002, 100);
  assertEquals([refused.error, refused.icmp, refused.from], [
    "ConnectionRefusedError",
    [...f.icmp.portUnreachable],
    R,
  ]);
  assert(refused.ms < 1000, `refused after ${refused.ms} ms`);
  // dig says so at once too, instead of waiting out its timeout.
  await assertDigRefused(lab, R, f.digName, 2_500, 7002);

  // Too big for the server's side (IPv4: with DF): the relay's "fragmentation needed" or
  // "packet too big" reaches the client as its own, about the client's datagram; the client
  // learns the path MTU.
  const big = await probe(lab, f, 7000, 1400, "do");
  assertEquals([big.error, big.icmp, big.info, big.from], ["OSError", [...f.icmp.tooBig], 1280, R]);
  assertEquals(big.mtu, 1280);
  // What fits now gets through.
  assertEquals((await probe(lab, f, 7000, 1200, "do")).answer, 1200);

  if (f.name === "IPv4") {
    // Larger than the MTU without DF: fragmented, relayed and answered whole both ways. (IPv6
    // has no DF to clear: routers never fragment.)
    assertEquals((await probe(lab, f, 7000, 3000, "dont")).answer, 3000);
    assertEquals((await probe(lab, f, 7000, 20000, "dont")).answer, 20000);
  }

  // A TTL (hop limit) that runs out at the relay: its "time exceeded" is about the client's
  // datagram.
  const ttl = await probe(lab, f, 7000, 100, "do", 1);
  assertEquals([ttl.icmp, ttl.from], [[...f.icmp.timeExceeded], R]);

  // From the client's side: the client has gone when the answer comes; its port unreachable
  // reaches the server, about the server's own datagram.
  await lab.exec("client", ["python3", PROBE, "quit", R, "7001"], { check: true });
  await assertClientGone(late, f);

  assertEquals(await krelay.stop(), 0);
  const c = await krelay.finalCounters();
  // Port unreachable (python, dig), fragmentation needed or packet too big, time exceeded,
  // and the client's port unreachable.
  assertEquals(c.icmpErrors, 5);
  // The scripted service's datagrams all crossed krelay (the fragmented ones reassembled);
  // the other's only their flows' first, the kernel's NAT the rest. Answers: 1,200 bytes,
  // (IPv4) 3,000 and 20,000 bytes, and the late one.
  assertEquals(c.udpReplies, scripted ? (f.name === "IPv4" ? 4 : 2) : 0);
  await echo.stop();
  await late.stop();
}
