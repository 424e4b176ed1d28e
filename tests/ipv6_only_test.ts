/**
 * End to end, as root: krelay with IPv6 servers only (`--real-ip 2001:db8:2::10 --relay-ip
 * 2001:db8:1::1`), no IPv4 server. IPv6 clients are relayed (real curl, dig and nginx,
 * dnsmasq); IPv4 is not steered at all (no `ip krelay` table, no iptables chain, the relay's
 * own stack answers IPv4 clients); status and `config set` work, and IPv4 may be given and
 * taken live.
 */

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { LAB_ADDR, LAB_ADDR6 } from "../src/lab/addresses.ts";
import { startServers } from "../src/lab/servers.ts";
import type { Lab } from "../src/lab/topology.ts";
import { curl } from "./support/curl.ts";
import { dig } from "./support/dig.ts";
import { krelayCommand, krelayConfigSet, startKrelay } from "./support/krelay.ts";
import { LAB_PEERS, labTest, type Requirement } from "./support/requirements.ts";

const NEEDS: Requirement[] = [...LAB_PEERS, "cmd:nft"];
const R6 = LAB_ADDR6.relay;
const ONLY6 = ["--real-ip", LAB_ADDR6.server, "--relay-ip", LAB_ADDR6.relay];

/**
 * IPv4 is not steered: no ip table, no iptables chain of krelay's; the relay's own stack
 * refuses an IPv4 client (nothing listens on its port 80).
 */
async function assertIpv4NotSteered(lab: Lab): Promise<void> {
  const tables = (await lab.exec("relay", ["nft", "list", "tables"], { check: true })).stdout;
  assert(!/table ip krelay/.test(tables), tables);
  for (const table of ["raw", "mangle"]) {
    const rules = await lab.exec("relay", ["iptables", "-w", "-t", table, "-S"]);
    assert(!/KRELAY/.test(rules.stdout), rules.stdout);
  }
  const r4 = await curl(lab, [`http://${LAB_ADDR.relay}/`], 5_000);
  assert(!r4.success && /refused|Failed to connect/i.test(r4.stderr), r4.stderr);
}

labTest(
  "krelay with IPv6 servers only relays curl and dig over IPv6 and steers no IPv4",
  NEEDS,
  async (lab) => {
    const { srv1 } = await startServers(lab);
    const krelay = await startKrelay(lab, ONLY6);
    const r = await curl(lab, [`http://[${R6}]/whoami`], 20_000);
    assert(r.stdout.startsWith(`srv1 ${LAB_ADDR6.client}:`), r.stdout + r.stderr);
    assertEquals((await dig(lab, R6, ["lab.example", "AAAA"])).stdout.trim(), LAB_ADDR6.dnsAnswer);
    const q = await srv1.dns.waitForQuery((q) => q.name === "lab.example" && q.type === "AAAA");
    assertEquals(q.client, LAB_ADDR6.client);
    const tables = (await lab.exec("relay", ["nft", "list", "tables"], { check: true })).stdout;
    assert(tables.includes("table ip6 krelay"), tables);
    await assertIpv4NotSteered(lab);
    // Status and config work without an IPv4 relay address.
    const status = await krelayCommand(lab, ["status"]);
    assert(status.success, status.stderr);
    assert(status.stdout.includes(`relay ip6  ${R6}`), status.stdout);
    assert(!/^relay ip\s/m.test(status.stdout), status.stdout);
    const got = await krelayCommand(lab, ["config", "get", "relay_ip"]);
    assert(got.stdout.includes(R6), got.stdout);
    // A second IPv6 server, live: new IPv6 connections may go to either; an IPv4 one is refused.
    await krelayConfigSet(lab, "real_ip", LAB_ADDR6.server2);
    const r2 = await curl(lab, [`http://[${R6}]/whoami`], 20_000);
    assert(r2.stdout.startsWith(`srv2 ${LAB_ADDR6.client}:`), r2.stdout + r2.stderr);
    // IPv4 given live (its relay address detected): IPv4 clients are relayed from then on,
    // IPv6 ones as before.
    await krelayConfigSet(lab, "real_ip", `${LAB_ADDR6.server2},${LAB_ADDR.server}`);
    const r4live = await curl(lab, [`http://${LAB_ADDR.relay}/whoami`], 20_000);
    assert(r4live.stdout.startsWith(`srv1 ${LAB_ADDR.client}:`), r4live.stdout + r4live.stderr);
    assertEquals(
      (await dig(lab, LAB_ADDR.relay, ["lab.example", "A"])).stdout.trim(),
      LAB_ADDR.dnsAnswer,
    );
    const both = (await lab.exec("relay", ["nft", "list", "tables"], { check: true })).stdout;
    assert(/table ip krelay/.test(both), both);
    const r6live = await curl(lab, [`http://[${R6}]/whoami`], 20_000);
    assert(r6live.stdout.startsWith(`srv2 ${LAB_ADDR6.client}:`), r6live.stdout + r6live.stderr);
    // Taken out again: IPv4 is not steered, its table gone.
    await krelayConfigSet(lab, "real_ip", LAB_ADDR6.server2);
    await assertIpv4NotSteered(lab);
    assertEquals(await krelay.stop(), 0);
    const after = (await lab.exec("relay", ["nft", "list", "tables"], { check: true })).stdout;
    assert(!after.includes("krelay"), after);
  },
  { secondServer: true, timeoutMs: 90_000 },
);
