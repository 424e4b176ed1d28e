/**
 * End to end, as root: two IPv6 real servers (each with dnsmasq and nginx) behind an IPv6-only
 * krelay, many IPv6 client addresses (dig -b, curl --interface). krelay spreads their flows
 * over both (a client's UDP and TCP to the same server), takes a killed server out of rotation
 * within 10 s, and a UDP flow keeps its server when real_ip changes live.
 */

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { LAB_ADDR6 } from "../src/lab/addresses.ts";
import { run } from "../src/lab/process.ts";
import { startServers } from "../src/lab/servers.ts";
import { KRELAY, startKrelay } from "./support/krelay.ts";
import { LAB_PEERS, labTest, type Requirement } from "./support/requirements.ts";
import { ManyClients, serversOf } from "./support/many_clients.ts";

const NEEDS: Requirement[] = [...LAB_PEERS, "cmd:ip6tables"];
const R6 = LAB_ADDR6.relay;
const BOTH6 = [
  "--real-ip",
  `${LAB_ADDR6.server},${LAB_ADDR6.server2}`,
  "--relay-ip",
  R6,
];
const MANY = new ManyClients(6);
const CLIENTS = MANY.addresses;

labTest(
  "IPv6 flows spread over two IPv6 servers; one killed leaves rotation within 10 s",
  NEEDS,
  async (lab) => {
    const { srv2, index, k } = await MANY.start(lab, BOTH6);
    const before = await MANY.assertSpread(lab, k, index);
    const on2 = CLIENTS.filter((c) => before[c].dns === "srv2");
    const q = await srv2.dns.waitForQuery((q) => q.client === on2[0]);
    assertEquals(q.name, "whoami.lab.example");
    // The status lists both IPv6 servers with their connections.
    const listed = await serversOf(k);
    assertEquals(listed.map((s) => s.address), [LAB_ADDR6.server, LAB_ADDR6.server2]);
    assert(listed.every((s) => s.tcpTotal > 0), JSON.stringify(listed));

    // srv2 dies: within 10 s it is down and every client is answered by srv1.
    await MANY.assertFailover(lab, k, srv2, index);
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
    assertEquals(await MANY.dnsFrom(lab, flow), "srv2");
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
    assertEquals(await MANY.dnsFrom(lab, flow), "srv2");
    assertEquals(await MANY.dnsFrom(lab, `${LAB_ADDR6.client}#40054`), "srv1");
    assertEquals(await k.stop(), 0);
  },
  { secondServer: true, timeoutMs: 90_000 },
);
