/**
 * End to end, as root: two IPv6 real servers (each with dnsmasq and nginx) behind an IPv6-only
 * krelay, many IPv6 client addresses (dig -b, curl --interface). krelay spreads their flows
 * over both (a client's UDP and TCP to the same server), takes a killed server out of rotation
 * within 10 s, and a UDP flow keeps its server when real_ip changes live.
 */

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { LAB_ADDR6, LAB_IF } from "../src/lab/addresses.ts";
import { run } from "../src/lab/process.ts";
import { startServers } from "../src/lab/servers.ts";
import type { Lab } from "../src/lab/topology.ts";
import { waitFor } from "../src/lab/wait.ts";
import type { ServerView } from "../src/daemon/servers.ts";
import { KRELAY, type KrelayRun, startKrelay } from "./support/krelay.ts";
import { labTest, type Requirement } from "./support/requirements.ts";

const NEEDS: Requirement[] = [
  "iptables",
  "dnsmasq",
  "nginx",
  "dig",
  "curl",
  "libnetfilter_queue",
  "cmd:ip6tables",
];
const R6 = LAB_ADDR6.relay;
const BOTH6 = [
  "--real-ip",
  `${LAB_ADDR6.server},${LAB_ADDR6.server2}`,
  "--relay-ip",
  R6,
];
/** Client addresses 2001:db8:1::100-10f, added in the client's namespace. */
const CLIENTS = Array.from({ length: 16 }, (_, i) => `2001:db8:1::${(0x100 + i).toString(16)}`);

async function addClients(lab: Lab): Promise<void> {
  for (const a of CLIENTS) {
    await lab.exec("client", ["ip", "-6", "addr", "add", `${a}/64`, "dev", LAB_IF.host, "nodad"], {
      check: true,
    });
  }
}

async function json<T>(k: KrelayRun, ...args: string[]): Promise<T> {
  const r = await run([KRELAY, ...args, "--socket", k.socket, "--json"], { timeoutMs: 30_000 });
  if (!r.success) throw new Error(`krelay ${args.join(" ")}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

async function servers(k: KrelayRun): Promise<ServerView[]> {
  return (await json<{ servers: ServerView[] }>(k, "status")).servers;
}

/** Which server answers a DNS query from `source` (address or address#port); "" for none. */
async function dnsFrom(lab: Lab, source: string): Promise<string> {
  const r = await lab.exec("client", [
    "dig",
    "+time=1",
    "+tries=1",
    "+short",
    "-b",
    source,
    `@${R6}`,
    "whoami.lab.example",
    "TXT",
  ], { timeoutMs: 10_000 });
  return r.stdout.trim().replaceAll('"', "");
}

/** Which server's page `client` gets over HTTP ("srv1", "srv2"), or curl's error. */
async function webFrom(lab: Lab, client: string, index: Record<string, string>) {
  const r = await lab.exec("client", [
    "curl",
    "-sS",
    "--max-time",
    "3",
    "--interface",
    client,
    `http://[${R6}]/`,
  ], { timeoutMs: 10_000 });
  return Object.keys(index).find((id) => index[id] === r.stdout) ?? `error: ${r.stderr.trim()}`;
}

/** Every client's DNS and web server, by client. */
async function whoServes(lab: Lab, index: Record<string, string>) {
  return Object.fromEntries(
    await Promise.all(CLIENTS.map(async (c) => {
      const [dns, web] = await Promise.all([dnsFrom(lab, c), webFrom(lab, c, index)]);
      return [c, { dns, web }] as const;
    })),
  );
}

labTest(
  "IPv6 flows spread over two IPv6 servers; one killed leaves rotation within 10 s",
  NEEDS,
  async (lab) => {
    await addClients(lab);
    const { srv1, srv2 } = await startServers(lab);
    const index = { srv1: srv1.web.indexText, srv2: srv2!.web.indexText };
    const k = await startKrelay(lab, BOTH6);
    await waitFor(async () => (await servers(k)).every((s) => s.state === "up"), {
      timeoutMs: 10_000,
      what: "both servers up",
    });
    const before = await whoServes(lab, index);
    for (const c of CLIENTS) {
      assert(["srv1", "srv2"].includes(before[c].dns), `${c}: ${JSON.stringify(before[c])}`);
      assertEquals(before[c].web, before[c].dns, c);
    }
    const on2 = CLIENTS.filter((c) => before[c].dns === "srv2");
    assert(on2.length > 0 && on2.length < CLIENTS.length, `srv2 has ${on2.length} clients`);
    assertEquals(await whoServes(lab, index), before);
    const q = await srv2!.dns.waitForQuery((q) => q.client === on2[0]);
    assertEquals(q.name, "whoami.lab.example");
    // The status lists both IPv6 servers with their connections.
    const listed = await servers(k);
    assertEquals(listed.map((s) => s.address), [LAB_ADDR6.server, LAB_ADDR6.server2]);
    assert(listed.every((s) => s.tcpTotal > 0), JSON.stringify(listed));

    // srv2 dies: within 10 s it is down and every client is answered by srv1.
    const killed = performance.now();
    await Promise.all([srv2!.dns.stop(), srv2!.web.stop()]);
    await waitFor(async () => {
      const s = await servers(k);
      return s[1].state === "down" && s[0].state === "up";
    }, { timeoutMs: 12_000, intervalMs: 200, what: "srv2 down in status" });
    const downAfter = performance.now() - killed;
    assert(downAfter < 10_000, `srv2 out of rotation after ${downAfter} ms`);
    const during = await whoServes(lab, index);
    for (const c of CLIENTS) assertEquals(during[c], { dns: "srv1", web: "srv1" }, c);
    assertEquals(await k.stop(), 0);
  },
  { secondServer: true, timeoutMs: 120_000 },
);

labTest(
  "an IPv6 UDP flow keeps its server when real_ip changes live; new flows follow",
  NEEDS,
  async (lab) => {
    await startServers(lab);
    const k = await startKrelay(lab, [
      "--real-ip",
      LAB_ADDR6.server2,
      "--relay-ip",
      R6,
      "--udp-timeout",
      "30",
    ]);
    const flow = `${LAB_ADDR6.client}#40053`;
    assertEquals(await dnsFrom(lab, flow), "srv2");
    const set = await run([
      KRELAY,
      "config",
      "set",
      "real_ip",
      LAB_ADDR6.server,
      "--socket",
      k.socket,
    ], {
      timeoutMs: 30_000,
    });
    assert(set.success, set.stderr + set.stdout);
    // The same flow (client, port) goes on to srv2; a new one goes to srv1.
    assertEquals(await dnsFrom(lab, flow), "srv2");
    assertEquals(await dnsFrom(lab, `${LAB_ADDR6.client}#40054`), "srv1");
    assertEquals(await k.stop(), 0);
  },
  { secondServer: true, timeoutMs: 90_000 },
);
