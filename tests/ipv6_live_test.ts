/**
 * End to end, as root: the IPv6 family given to and taken from a running relay that started
 * with IPv4 addresses only (`krelay config set real_ip` and `relay_ip`), with real dig, curl,
 * dnsmasq and nginx. IPv6 clients are relayed from the change on and refused after it is
 * undone, with none of krelay's IPv6 rules left; IPv4's download and UDP flow go on
 * throughout (issue 31).
 */

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { LAB_ADDR, LAB_ADDR6 } from "../src/lab/addresses.ts";
import { startServers } from "../src/lab/servers.ts";
import type { Lab } from "../src/lab/topology.ts";
import { assertDigRefused, dig } from "./support/dig.ts";
import { curl } from "./support/curl.ts";
import { krelayCommand, krelayConfigSet, LAB_FLAGS, startKrelay } from "./support/krelay.ts";
import { LAB_PEERS, labTest, type Requirement } from "./support/requirements.ts";

const NEEDS: Requirement[] = [...LAB_PEERS, "cmd:nft", "cmd:ip6tables"];
const R6 = LAB_ADDR6.relay;
/** The IPv4 client's one UDP flow, kept across the changes. */
const FLOW4 = `${LAB_ADDR.client}#40053`;

/** krelay's IPv6 steering in the relay's namespace: its ip6 table, rules and route. */
async function ipv6Steering(lab: Lab): Promise<string[]> {
  const out = async (cmd: string[]) => (await lab.exec("relay", cmd, { check: true })).stdout;
  const found: string[] = [];
  if ((await out(["nft", "list", "tables"])).includes("ip6 krelay")) {
    found.push("ip6 table");
    const table = await out(["nft", "list", "table", "ip6", "krelay"]);
    if (/chain to_queue \{[^}]*queue num/.test(table)) found.push("ip6 queue rule");
    if (table.includes("tproxy to [::1]:1")) found.push("answers handed to the relay");
  }
  const queued = await out(["ip6tables", "-w", "-t", "mangle", "-S"]);
  found.push(...queued.split("\n").filter((l) => /krelay|KRELAY|NFQUEUE/.test(l)));
  // An IPv6 policy rule of an earlier version's TPROXY route (fwmark 0x4b52): never left.
  const rules = await out(["ip", "-6", "rule", "show"]);
  found.push(...rules.split("\n").filter((l) => l.includes("0x4b52")));
  return found;
}

/** The IPv4 client's flow still answers, from the same client port. */
async function assertIpv4Flow(lab: Lab): Promise<void> {
  const r = await dig(lab, LAB_ADDR.relay, ["lab.example", "A"], { from: FLOW4 });
  assertEquals(r.stdout.trim(), LAB_ADDR.dnsAnswer);
}

labTest(
  "IPv6 added to and taken from a running IPv4-only relay by config set; IPv4 flows go on",
  NEEDS,
  async (lab) => {
    const { srv1 } = await startServers(lab);
    // 8 MB at 1 MB/s: an IPv4 download that lasts through both changes.
    const file = await srv1.web.ensureFile("live8.bin", 8 * 1024 * 1024);
    const krelay = await startKrelay(lab, LAB_FLAGS);
    await assertIpv4Flow(lab);
    assertEquals(await ipv6Steering(lab), []);
    // Not relayed: nothing listens on the relay's own port 80.
    const before = await curl(lab, ["-6", `http://[${R6}]/`], 5_000);
    assert(!before.success && /refused|Failed to connect/i.test(before.stderr), before.stderr);
    const download = lab.exec("client", [
      "bash",
      "-c",
      `set -o pipefail; curl -sS --limit-rate 1M --max-time 60 "$0" | sha256sum`,
      `http://${LAB_ADDR.relay}${file.urlPath}`,
    ], { timeoutMs: 70_000 });

    // IPv6 given live: the server, then the relay's address.
    await krelayConfigSet(lab, "real_ip", `${LAB_ADDR.server},${LAB_ADDR6.server}`);
    const set = await krelayConfigSet(lab, "relay_ip", `${LAB_ADDR.relay},${R6}`);
    assert(set.includes(R6), set);
    assertEquals((await dig(lab, R6, ["lab.example", "AAAA"])).stdout.trim(), LAB_ADDR6.dnsAnswer);
    const q = await srv1.dns.waitForQuery((q) => q.name === "lab.example" && q.type === "AAAA");
    assertEquals(q.client, LAB_ADDR6.client);
    const r6 = await curl(lab, ["-6", `http://[${R6}]/whoami`], 15_000);
    assert(r6.stdout.startsWith(`srv1 ${LAB_ADDR6.client}:`), r6.stdout + r6.stderr);
    const steered = await ipv6Steering(lab);
    assert(steered.includes("ip6 table"), steered.join("\n"));
    // The table queues and delivers by itself: no ip6tables rule, no policy rule.
    assertEquals(steered, ["ip6 table", "ip6 queue rule", "answers handed to the relay"]);
    const status = await krelayCommand(lab, ["status"]);
    assert(status.stdout.includes(R6), status.stdout);
    await assertIpv4Flow(lab);

    // IPv6 taken out of both: refused again, and none of its rules is left.
    await krelayConfigSet(lab, "real_ip", LAB_ADDR.server);
    await krelayConfigSet(lab, "relay_ip", LAB_ADDR.relay);
    assertEquals(await ipv6Steering(lab), []);
    const after = await curl(lab, ["-6", `http://[${R6}]/`], 5_000);
    assert(!after.success && /refused|Failed to connect/i.test(after.stderr), after.stderr);
    await assertDigRefused(lab, R6, ["lab.example", "AAAA"], 4_000);
    const got = await krelayCommand(lab, ["config", "get", "relay_ip"]);
    assert(!got.stdout.includes(R6), got.stdout);
    await assertIpv4Flow(lab);

    // The IPv4 download went on whole through both changes.
    const d = await download;
    assert(d.success, d.stderr);
    assertEquals(d.stdout.split(" ")[0], file.sha256);
    assertEquals(await krelay.stop(), 0);
  },
  { timeoutMs: 120_000 },
);

labTest(
  "config set relay_ip refuses a new IPv4 relay address, changing nothing",
  NEEDS,
  async (lab) => {
    await startServers(lab);
    const krelay = await startKrelay(lab, LAB_FLAGS);
    const r = await krelayCommand(lab, ["config", "set", "relay_ip", "198.51.100.2"]);
    assert(!r.success);
    assert(/IPv4 relay address .* cannot change while krelay runs/.test(r.stderr), r.stderr);
    await assertIpv4Flow(lab);
    assertEquals(await ipv6Steering(lab), []);
    assertEquals(await krelay.stop(), 0);
  },
);
