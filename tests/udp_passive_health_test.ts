/**
 * End to end, as root: passive health of a UDP service the kernel carries. Two lab servers,
 * dnsmasq stopped on the second; new flows alternate between them (round robin). The active
 * checks are slow (the second server's first UDP probe would come 30 s after the start), so
 * only the passive signal can take it out: its flows that the kernel saw no answer to, judged
 * half of udp_timeout after their first packet (kernel_udp.ts). Then every query is answered
 * by the first server.
 */

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { LAB_ADDR } from "../src/lab/addresses.ts";
import { run } from "../src/lab/process.ts";
import { startServers } from "../src/lab/servers.ts";
import type { Lab } from "../src/lab/topology.ts";
import { waitFor } from "../src/lab/wait.ts";
import type { ServerView } from "../src/daemon/servers.ts";
import { KRELAY, type KrelayRun, startKrelay } from "./support/krelay.ts";
import { labTest, type Requirement } from "./support/requirements.ts";

const NEEDS: Requirement[] = ["iptables", "dnsmasq", "nginx", "dig", "libnetfilter_queue"];
const R = LAB_ADDR.relay;

async function servers(k: KrelayRun): Promise<ServerView[]> {
  const r = await run([KRELAY, "status", "--socket", k.socket, "--json"], { timeoutMs: 30_000 });
  if (!r.success) throw new Error(`krelay status: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { servers: ServerView[] }).servers;
}

/** Which server answers a new flow's DNS query ("srv1", "srv2", or "" for none). */
async function dnsFrom(lab: Lab): Promise<string> {
  const r = await lab.exec("client", [
    "dig",
    "+time=1",
    "+tries=1",
    "+short",
    `@${R}`,
    "whoami.lab.example",
    "TXT",
  ], { timeoutMs: 10_000 });
  // No answer: a timeout, or the server's port unreachable (translated by krelay).
  const who = r.stdout.trim().replaceAll('"', "");
  return ["srv1", "srv2"].includes(who) ? who : "";
}

labTest(
  "UDP flows the kernel carries with no answer take their server out of rotation (passive check)",
  NEEDS,
  async (lab) => {
    const { srv2 } = await startServers(lab);
    await srv2!.dns.stop();
    const started = performance.now();
    const k = await startKrelay(lab, [
      "--real-ip",
      `${LAB_ADDR.server},${LAB_ADDR.server2}`,
      "--relay-ip",
      R,
      "--balance",
      "round-robin",
      "--udp-timeout",
      "4",
      "--health-interval",
      "60",
    ]);
    // New flows alternate: the second server's go unanswered.
    const answers: string[] = [];
    for (let i = 0; i < 8; i++) answers.push(await dnsFrom(lab));
    assert(answers.includes("srv1") && answers.includes(""), JSON.stringify(answers));
    const udp = (s: ServerView) => s.checks.find((c) => c.service === "udp/53")!;
    await waitFor(async () => udp((await servers(k))[1]).state === "down", {
      timeoutMs: 10_000,
      intervalMs: 200,
      what: "srv2's udp/53 down by its unanswered flows",
    });
    const [one, two] = await servers(k);
    // The passive signal alone: no active probe of srv2's UDP service has run yet.
    assert(performance.now() - started < 30_000, "within the first probe's interval");
    assertEquals([
      udp(two).checks,
      udp(one).state,
      two.checks.find((c) => c.service === "tcp/80")?.state,
    ], [0, "up", "up"]);
    assert(udp(two).passiveFailures >= 3, JSON.stringify(udp(two)));
    assertEquals(udp(one).passiveFailures, 0);
    // Out of rotation: every new flow goes to srv1.
    for (let i = 0; i < 4; i++) assertEquals(await dnsFrom(lab), "srv1");
    const down = (await k.records()).filter((r) =>
      r.logger === "krelay.health" && String(r.message).includes("is down")
    );
    assertEquals(down.map((r) => [r.properties?.address, r.properties?.service]), [[
      LAB_ADDR.server2,
      "udp/53",
    ]]);
    assertEquals(await k.stop(), 0);
  },
  { secondServer: true, timeoutMs: 90_000 },
);
