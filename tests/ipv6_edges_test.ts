/**
 * End to end over IPv6, as root: ICMPv6 errors about relayed UDP flows are translated as
 * kernel NAT translates them, whoever carries the flow (the kernel, or krelay for a service
 * with a packet script) and whichever of several IPv6 servers it goes to (issue 31). The
 * clients and servers are Python sockets with IPV6_RECVERR (tests/fixtures/icmp_probe.py),
 * so what each learns from the errors is the kernel's own account.
 */

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { LAB_ADDR, LAB_ADDR6 } from "../src/lab/addresses.ts";
import type { Lab } from "../src/lab/topology.ts";
import { KRELAY, startKrelay } from "./support/krelay.ts";
import { labTest, type Requirement } from "./support/requirements.ts";
import { IPV6 } from "./support/family.ts";
import { assertClientGone, PROBE, udpEdges } from "./support/udp_edges.ts";
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

labTest(
  "IPv6 UDP: ICMPv6 errors both ways and packet too big, as with kernel NAT",
  NEEDS,
  (lab) => udpEdges(lab, IPV6),
);

labTest(
  "IPv6 UDP with a packet script: ICMPv6 errors both ways and packet too big, as without",
  NEEDS,
  (lab) => udpEdges(lab, IPV6, ["--script", ACCEPT_ALL, "--on", "udp:7000,udp:7001,udp:7002"]),
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
  for (const p of late) await assertClientGone(p, IPV6);
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
