/**
 * End to end, as root: several real servers. Two lab servers, each with dnsmasq and nginx;
 * many client addresses (dig -b, curl --interface); krelay spreads their flows over both,
 * takes a killed server out of rotation within 10 s, and puts it back when it is restarted.
 */

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { LAB_ADDR } from "../src/lab/addresses.ts";
import { run, signalGroup } from "../src/lab/process.ts";
import { startDnsmasq, startNginx, startServers } from "../src/lab/servers.ts";
import { waitFor } from "../src/lab/wait.ts";
import type { ServerView } from "../src/daemon/servers.ts";
import type { SynReport } from "../src/daemon/reports.ts";
import { KRELAY, startKrelay, tcpServiceFlags } from "./support/krelay.ts";
import { startLongClient } from "./support/long_client.ts";
import { LAB_PEERS, labTest, type Requirement } from "./support/requirements.ts";
import { krelayJson, ManyClients, serversOf } from "./support/many_clients.ts";

const NEEDS: Requirement[] = [...LAB_PEERS];
const R = LAB_ADDR.relay;
const BOTH = [
  "--real-ip",
  `${LAB_ADDR.server},${LAB_ADDR.server2}`,
  "--relay-ip",
  R,
];
const MANY = new ManyClients(4);
const CLIENTS = MANY.addresses;

/** What the tests read of `krelay status --json`. */
interface Status {
  servers: ServerView[];
  syn: SynReport;
}

labTest(
  "flows spread over two servers; one killed leaves rotation within 10 s and comes back",
  NEEDS,
  async (lab) => {
    const { srv2, index, k } = await MANY.start(lab, BOTH);
    // Spread by client: both servers get clients, and a client's UDP and TCP flows go to the
    // same server (one hash of its address), again and again.
    const before = await MANY.assertSpread(lab, k, index);
    const on2 = CLIENTS.filter((c) => before[c].dns === "srv2");
    // dnsmasq and nginx saw the clients' own addresses.
    const q = await srv2.dns.waitForQuery((q) => q.client === on2[0]);
    assertEquals(q.name, "whoami.lab.example");
    const nat = await krelayJson<{ protocol: string; client: string; server: string }[]>(k, "nat");
    assert(nat.some((e) => e.server === `${LAB_ADDR.server2}:53`), JSON.stringify(nat));

    // srv2 dies: within 10 s it is down and every client is answered by srv1.
    await MANY.assertFailover(lab, k, srv2, index);
    // Clients of srv1 did not move.
    const status = await serversOf(k);
    assertEquals(status.map((s) => [s.address, s.state]), [
      [LAB_ADDR.server, "up"],
      [LAB_ADDR.server2, "down"],
    ]);
    assert(status[1].checks.every((c) => c.state === "down" && c.last !== "ok"));
    const changes = async () =>
      (await k.records()).filter((r) => r.logger === "krelay.health").map((r) =>
        `${r.properties?.address} ${r.properties?.service} ${
          String(r.message).includes("is down") ? "down" : "up"
        }`
      );
    // A log line at each change.
    assertEquals((await changes()).sort(), [
      `${LAB_ADDR.server2} tcp/80 down`,
      `${LAB_ADDR.server2} udp/53 down`,
    ]);

    // srv2 is back: it takes its clients again.
    await Promise.all([startDnsmasq(lab, "srv2"), startNginx(lab, "srv2")]);
    await waitFor(async () => (await serversOf(k)).every((s) => s.state === "up"), {
      timeoutMs: 15_000,
      what: "srv2 up again",
    });
    assertEquals(await MANY.whoServes(lab, index), before);
    assertEquals((await changes()).slice(2).sort(), [
      `${LAB_ADDR.server2} tcp/80 up`,
      `${LAB_ADDR.server2} udp/53 up`,
    ]);
    assertEquals(await k.stop(), 0);
  },
  { secondServer: true, timeoutMs: 120_000 },
);

labTest(
  "real_ip set live to a list; round robin spreads a client's flows; none up is refused at once",
  NEEDS,
  async (lab) => {
    const { srv1, srv2 } = await startServers(lab);
    const index = { srv1: srv1.web.indexText, srv2: srv2!.web.indexText };
    // One server at first; the list is set live, as a user would.
    const k = await startKrelay(lab, [
      "--real-ip",
      LAB_ADDR.server,
      "--relay-ip",
      R,
      "--balance",
      "round-robin",
      "--relay-threads",
      "2",
    ]);
    assertEquals(await MANY.webFrom(lab, LAB_ADDR.client, index), "srv1");
    const both = `${LAB_ADDR.server},${LAB_ADDR.server2}`;
    const set = await run([KRELAY, "config", "set", "real_ip", both, "--socket", k.socket]);
    assert(set.success, set.stderr);
    assertEquals((await serversOf(k)).map((s) => s.address), [LAB_ADDR.server, LAB_ADDR.server2]);
    // One client's connections go to both servers in turn. Each of the two relay threads
    // takes turns of its own: the counts differ by at most 2.
    const got: string[] = [];
    for (let i = 0; i < 10; i++) got.push(await MANY.webFrom(lab, LAB_ADDR.client, index));
    const on1 = got.filter((s) => s === "srv1").length;
    assertEquals(got.filter((s) => s === "srv2").length, 10 - on1, got.join(" "));
    assert(on1 >= 4 && on1 <= 6, got.join(" "));

    await Promise.all([srv1.dns.stop(), srv1.web.stop(), srv2!.dns.stop(), srv2!.web.stop()]);
    await waitFor(async () => (await serversOf(k)).every((s) => s.state === "down"), {
      timeoutMs: 12_000,
      what: "both servers down",
    });
    // The kernel refuses the SYN (an RST, as from a host with nothing listening): curl cannot
    // connect (7), where it was accepted and reset (56) before.
    await waitFor(
      async () => (await krelayJson<Status>(k, "status")).syn.refusedPorts.includes(80),
      {
        timeoutMs: 5_000,
        what: "tcp/80 refused by the kernel",
      },
    );
    const started = performance.now();
    const curl = await lab.exec("client", ["curl", "-sS", "--max-time", "3", `http://${R}/`]);
    const took = performance.now() - started;
    assertEquals(curl.code, 7, curl.stderr);
    assert(took < 2_000, `refused after ${took} ms`);
    // UDP: the relay's stack answers ICMP port unreachable; dig gives up at once.
    const asked = performance.now();
    const dns = await MANY.dnsFrom(lab, LAB_ADDR.client);
    assert(/refused|unreachable/i.test(dns), dns);
    assert(performance.now() - asked < 900, `dig refused after ${performance.now() - asked} ms`);
    assertEquals(await k.stop(), 0);
  },
  { secondServer: true, timeoutMs: 120_000 },
);

labTest(
  "a TCP service with no server up is refused by the kernel; its established connections go on",
  ["iptables", "curl", "libnetfilter_queue", "cmd:python3"],
  async (lab) => {
    const port = 81;
    const fixtures = new URL("./fixtures/", import.meta.url).pathname;
    const both = ["server", "server2"].map((where) =>
      lab.spawn(where, `refusing-${where}`, [
        "python3",
        `${fixtures}refusing_server.py`,
        where === "server" ? LAB_ADDR.server : LAB_ADDR.server2,
        String(port),
      ])
    );
    for (const where of ["server", "server2"]) await lab.waitForListen(where, "tcp", port);
    const k = await startKrelay(lab, [
      ...BOTH,
      ...tcpServiceFlags(port),
    ]);
    // A connection that will outlive both servers' refusal.
    const long = await startLongClient(lab, R, port);

    for (const server of both) signalGroup(server.pid, "SIGUSR1");
    await waitFor(
      async () => (await krelayJson<Status>(k, "status")).syn.refusedPorts.includes(port),
      {
        timeoutMs: 15_000,
        what: `tcp/${port} refused by the kernel`,
      },
    );
    const nft = await lab.exec("relay", ["nft", "list", "chain", "ip", "krelay", "divert"]);
    assert(/tcp dport 81 .*reject with tcp reset/.test(nft.stdout), nft.stdout);
    const url = `http://${R}:${port}/`;
    const curl = await lab.exec("client", ["curl", "-sS", "--max-time", "3", url]);
    assertEquals(curl.code, 7, curl.stderr);
    await long.assertSecond();

    // Back up: the rule goes, connections are relayed again.
    for (const server of both) signalGroup(server.pid, "SIGUSR2");
    await waitFor(
      async () => (await krelayJson<Status>(k, "status")).syn.refusedPorts.length === 0,
      {
        timeoutMs: 15_000,
        what: `tcp/${port} relayed again`,
      },
    );
    await waitFor(
      async () => (await lab.exec("client", ["curl", "-sS", "--max-time", "3", url])).code === 0,
      { timeoutMs: 5_000, what: "curl through the relay" },
    );
    assertEquals(await k.stop(), 0);
  },
  { secondServer: true, timeoutMs: 120_000 },
);
