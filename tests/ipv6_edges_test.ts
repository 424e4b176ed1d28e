/**
 * End to end over IPv6, as root: ICMPv6 errors about relayed UDP flows are translated as
 * kernel NAT translates them, whoever carries the flow (the kernel, or krelay for a service
 * with a packet script) and whichever of several IPv6 servers it goes to (issue 31). The
 * clients and servers are Python sockets with IPV6_RECVERR (tests/fixtures/icmp_probe.py),
 * so what each learns from the errors is the kernel's own account.
 */

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { LAB_ADDR, LAB_ADDR6, LAB_IF } from "../src/lab/addresses.ts";
import type { LabProcess } from "../src/lab/process.ts";
import type { Lab } from "../src/lab/topology.ts";
import { assertDigRefused } from "./support/dig.ts";
import { KRELAY, startKrelay } from "./support/krelay.ts";
import { labTest, type Requirement } from "./support/requirements.ts";
import { run } from "../src/lab/process.ts";
import type { NatEntryView } from "../src/daemon/reports.ts";

const NEEDS: Requirement[] = [
  "iptables",
  "nft",
  "libnetfilter_queue",
  "cmd:ip6tables",
  "cmd:python3",
  "dig",
];
const R6 = LAB_ADDR6.relay;
const PROBE = new URL("./fixtures/icmp_probe.py", import.meta.url).pathname;
const ACCEPT_ALL = new URL("../src/script/_fixtures/accept_all.ts", import.meta.url).pathname;

/** Both families, the IPv6 servers given (the IPv4 one as every lab test has it). */
function dualFlags(servers6: string[]): string[] {
  return [
    "--real-ip",
    [LAB_ADDR.server, ...servers6].join(","),
    "--relay-ip",
    `${LAB_ADDR.relay},${R6}`,
  ];
}

/** One UDP probe from the client to the relay's IPv6 address (see icmp_probe.py). */
async function probe(lab: Lab, ...args: (string | number)[]) {
  const r = await lab.exec("client", ["python3", PROBE, "send", R6, ...args.map(String)], {
    timeoutMs: 15_000,
  });
  assert(r.success, r.stderr);
  return JSON.parse(r.stdout);
}

/** The first JSON line `p` prints, waited for up to 10 s. */
async function firstLine(p: LabProcess): Promise<Record<string, unknown>> {
  for (let i = 0; i < 100; i++) {
    const line = (await p.readLog()).split("\n").find((l) => l.startsWith("{"));
    if (line !== undefined) return JSON.parse(line);
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${p.name} printed nothing:\n${await p.readLog()}`);
}

/**
 * The UDP edges over IPv6, with the services on ports 7000 (echo), 7001 (answers again after
 * the client has gone) and 7002 (nothing listens), the server's side narrowed to a 1,280-byte
 * MTU.
 */
async function udpEdges6(lab: Lab, extraFlags: string[] = []): Promise<void> {
  const scripted = extraFlags.includes("--script");
  const S6 = LAB_ADDR6.server;
  const echo = lab.spawn("server", "udp-echo", ["python3", PROBE, "echo", S6, "7000"]);
  const late = lab.spawn("server", "udp-late", ["python3", PROBE, "late", S6, "7001"]);
  await lab.waitForListen("server", "udp", 7000);
  await lab.waitForListen("server", "udp", 7001);
  for (const dev of [LAB_IF.relayServerPort1, LAB_IF.relayServer]) {
    await lab.exec("relay", ["ip", "link", "set", "dev", dev, "mtu", "1280"], { check: true });
  }
  await lab.exec("server", ["ip", "link", "set", "dev", LAB_IF.host, "mtu", "1280"], {
    check: true,
  });
  const krelay = await startKrelay(lab, [
    ...dualFlags([S6]),
    "--udp-ports",
    "7000,7001,7002",
    "--tcp-ports",
    "",
    ...extraFlags,
  ]);

  // Nothing listens: the server's port unreachable comes back from the relay, at once.
  const refused = await probe(lab, 7002, 100);
  assertEquals([refused.error, refused.icmp, refused.from], ["ConnectionRefusedError", [1, 4], R6]);
  assert(refused.ms < 1000, `refused after ${refused.ms} ms`);
  await assertDigRefused(lab, R6, ["lab.example", "AAAA"], 2_500, 7002);

  // Too big for the server's side: the relay's "packet too big" reaches the client as its
  // own, about the client's datagram; the client learns the path MTU.
  const big = await probe(lab, 7000, 1400, "do");
  assertEquals([big.error, big.icmp, big.info, big.from], ["OSError", [2, 0], 1280, R6]);
  assertEquals(big.mtu, 1280);
  // What fits now gets through.
  assertEquals((await probe(lab, 7000, 1200, "do")).answer, 1200);

  // A hop limit that runs out at the relay: its "time exceeded" is about the client's datagram.
  const hops = await probe(lab, 7000, 100, "do", 1);
  assertEquals([hops.icmp, hops.from], [[3, 0], R6]);

  // From the client's side: the client has gone when the answer comes; its port unreachable
  // reaches the server, about the server's own datagram.
  await lab.exec("client", ["python3", PROBE, "quit", R6, "7001"], { check: true });
  assertEquals(await firstLine(late), {
    peer: LAB_ADDR6.client,
    result: "ConnectionRefusedError",
    icmp: [1, 4],
    info: 0,
    from: LAB_ADDR6.client,
  });

  assertEquals(await krelay.stop(), 0);
  const c = await krelay.finalCounters();
  // Port unreachable (python, dig), packet too big, time exceeded, the client's unreachable.
  assertEquals(c.icmpErrors, 5);
  // The scripted service's answers all crossed krelay: 1,200 bytes and the late one; the
  // others' flows are the kernel's.
  assertEquals(c.udpReplies, scripted ? 2 : 0);
  await echo.stop();
  await late.stop();
}

labTest(
  "IPv6 UDP: ICMPv6 errors both ways and packet too big, as with kernel NAT",
  NEEDS,
  (lab) => udpEdges6(lab),
);

labTest(
  "IPv6 UDP with a packet script: ICMPv6 errors both ways and packet too big, as without",
  NEEDS,
  (lab) => udpEdges6(lab, ["--script", ACCEPT_ALL, "--on", "udp:7000,udp:7001,udp:7002"]),
);

/**
 * Two IPv6 servers, flows shared round robin: each client that has gone before its answer
 * came sends its port unreachable to the relay, and each server hears of its own answer only.
 */
async function twoServers(lab: Lab, extraFlags: string[] = []): Promise<void> {
  const servers = [
    { role: "server" as const, address: LAB_ADDR6.server },
    { role: "server2" as const, address: LAB_ADDR6.server2 },
  ];
  const late = servers.map((s) =>
    lab.spawn(s.role, "udp-late", ["python3", PROBE, "late", s.address, "7001"])
  );
  for (const s of servers) await lab.waitForListen(s.role, "udp", 7001);
  const krelay = await startKrelay(lab, [
    ...dualFlags(servers.map((s) => s.address)),
    "--udp-ports",
    "7001",
    "--tcp-ports",
    "",
    "--balance",
    "round-robin",
    // The late servers answer one datagram at a time: the relay's probes would come first.
    "--no-health-checks",
    ...extraFlags,
  ]);
  // Two flows (two client ports): one to each server.
  for (let i = 0; i < 2; i++) {
    await lab.exec("client", ["python3", PROBE, "quit", R6, "7001"], { check: true });
  }
  for (const p of late) {
    assertEquals(await firstLine(p), {
      peer: LAB_ADDR6.client,
      result: "ConnectionRefusedError",
      icmp: [1, 4],
      info: 0,
      from: LAB_ADDR6.client,
    });
  }
  // Both flows are in krelay nat, one to each server (a scripted service's are krelay's
  // own, the others the kernel's).
  const nat = (...args: string[]) =>
    run([KRELAY, "nat", ...args, "--socket", krelay.socket], { timeoutMs: 30_000 });
  const entries = JSON.parse((await nat("--json")).stdout) as NatEntryView[];
  const six = entries.filter((e) => e.family === 6);
  assertEquals(six.map((e) => e.server).sort(), servers.map((s) => `[${s.address}]:7001`));
  assert(six.every((e) => e.protocol === "udp" && e.relay === `[${R6}]:7001`));
  const text = (await nat()).stdout;
  assertEquals(text.split("\n").filter((l) => l.includes("udp6")).length, 2, text);
  assertEquals(await krelay.stop(), 0);
  assertEquals((await krelay.finalCounters()).icmpErrors, 2);
  for (const p of late) await p.stop();
}

labTest(
  "with two IPv6 servers, a client's ICMPv6 error about a reply reaches the flow's own server",
  NEEDS,
  (lab) => twoServers(lab),
  { secondServer: true },
);

labTest(
  "with two IPv6 servers and a packet script, a client's ICMPv6 error reaches its flow's server",
  NEEDS,
  (lab) => twoServers(lab, ["--script", ACCEPT_ALL, "--on", "udp:7001"]),
  { secondServer: true },
);
