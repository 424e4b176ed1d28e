/**
 * End to end over IPv6, as root: a dual-stack lab (client 2001:db8:1::10, relay
 * 2001:db8:1::1 / 2001:db8:2::1, server 2001:db8:2::10) with real nginx and dnsmasq, real curl
 * and dig, and krelay run through its launcher with both families configured. IPv6 clients
 * are relayed to the IPv6 server (TCP through the gateway port with the client's address kept,
 * UDP by the kernel's NAT), IPv4 ones to the IPv4 server, at the same time.
 */

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { LAB_ADDR, LAB_ADDR6 } from "../src/lab/addresses.ts";
import { startServers } from "../src/lab/servers.ts";
import type { Lab } from "../src/lab/topology.ts";
import { assertDigRefused, dig } from "./support/dig.ts";
import { assertDownload } from "./support/download.ts";
import { curl } from "./support/curl.ts";
import { krelayCommand, krelayConfigSet, krelayRules, startKrelay } from "./support/krelay.ts";
import { LAB_PEERS, labTest, type Requirement } from "./support/requirements.ts";
import { LAB_RELAY_FLAGS_DUAL } from "../src/lab/krelay_process.ts";

const NEEDS: Requirement[] = [...LAB_PEERS];
const R6 = LAB_ADDR6.relay;

/** Both families: the IPv4 server and relay as every lab test gives them, and IPv6's. */
const DUAL_FLAGS = [...LAB_RELAY_FLAGS_DUAL];

labTest(
  "curl http://[2001:db8:1::1]/ returns the server's page; nginx logs the client's IPv6 address",
  NEEDS,
  async (lab) => {
    const { srv1 } = await startServers(lab);
    const krelay = await startKrelay(lab, DUAL_FLAGS);
    const r = await curl(lab, [`http://[${R6}]/`]);
    assert(r.success, r.stderr);
    assertEquals(r.stdout, srv1.web.indexText);
    const hit = await srv1.web.waitForRequest((e) => e.request.startsWith("GET / "));
    assertEquals(hit.remoteAddr, LAB_ADDR6.client);
    // The server saw it arrive at its own IPv6 address.
    assert(hit.server.includes(LAB_ADDR6.server), hit.server);
    // IPv4 goes on beside it, to the IPv4 server.
    const r4 = await curl(lab, [`http://${LAB_ADDR.relay}/whoami`]);
    assert(r4.stdout.startsWith(`srv1 ${LAB_ADDR.client}:`), r4.stdout);
    const r6 = await curl(lab, [`http://[${R6}]/whoami`]);
    assert(r6.stdout.startsWith(`srv1 ${LAB_ADDR6.client}:`), r6.stdout);
    assertEquals(await krelay.stop(), 0);
  },
);

labTest(
  "a 20 MB download over IPv6 through the relay has the server's sha256",
  NEEDS,
  async (lab) => {
    const { srv1 } = await startServers(lab);
    const file = await srv1.web.ensureFile("big20.bin", 20 * 1024 * 1024);
    const krelay = await startKrelay(lab, DUAL_FLAGS);
    await assertDownload(lab, `http://[${R6}]${file.urlPath}`, file.sha256, 60);
    await krelay.stop();
  },
  { timeoutMs: 120_000 },
);

labTest(
  "dig @2001:db8:1::1 gets dnsmasq's answer; dnsmasq sees the client's IPv6 address",
  NEEDS,
  async (lab) => {
    const { srv1 } = await startServers(lab);
    const krelay = await startKrelay(lab, DUAL_FLAGS);
    const r = await dig(lab, R6, ["lab.example", "AAAA"]);
    assertEquals(r.stdout.trim(), LAB_ADDR6.dnsAnswer);
    const q = await srv1.dns.waitForQuery((q) => q.name === "lab.example" && q.type === "AAAA");
    assertEquals(q.client, LAB_ADDR6.client);
    // A second query of the same flow, and an IPv4 one beside it.
    const again = await dig(lab, R6, ["whoami.lab.example", "TXT"], {
      from: `${LAB_ADDR6.client}#40053`,
    });
    assertEquals(again.stdout.trim(), '"srv1"');
    assertEquals(
      (await dig(lab, LAB_ADDR.relay, ["lab.example", "A"])).stdout.trim(),
      LAB_ADDR.dnsAnswer,
    );
    assertEquals(await krelay.stop(), 0);
  },
);

labTest(
  "without an IPv6 real server, IPv6 clients are not steered until one is set live",
  NEEDS,
  async (lab) => {
    await startServers(lab);
    const krelay = await startKrelay(lab, [
      "--real-ip",
      LAB_ADDR.server,
      "--relay-ip",
      `${LAB_ADDR.relay},${LAB_ADDR6.relay}`,
    ]);
    // Nothing listens on the relay's own port 80: the kernel refuses the connection itself.
    const r = await curl(lab, [`http://[${R6}]/`], 5_000);
    assert(!r.success);
    assert(/refused|Failed to connect/i.test(r.stderr), r.stderr);
    const nft = await lab.exec("relay", ["nft", "list", "tables"], { check: true });
    assert(!nft.stdout.includes("ip6 krelay"), nft.stdout);
    // No IPv6 gateway listener either.
    const listening = async () =>
      (await lab.exec("relay", ["ss", "-Hltn", "sport", "16000"], { check: true })).stdout;
    assert(!(await listening()).includes("[::]:16000"), await listening());
    assertEquals((await curl(lab, [`http://${LAB_ADDR.relay}/whoami`])).success, true);
    // An IPv6 server given live: IPv6 clients are relayed from then on.
    await krelayConfigSet(lab, "real_ip", `${LAB_ADDR.server},${LAB_ADDR6.server}`);
    assert((await listening()).includes("[::]:16000"), await listening());
    const r6 = await curl(lab, [`http://[${R6}]/whoami`]);
    assert(r6.stdout.startsWith(`srv1 ${LAB_ADDR6.client}:`), r6.stdout + r6.stderr);
    await krelay.stop();
  },
);

labTest(
  "after a dual-stack krelay stops, no ip6 table, policy rule, route or ip6tables rule is left",
  [...NEEDS, "cmd:nft", "cmd:ip6tables"],
  async (lab) => {
    const ruleset = async () =>
      (await lab.exec("relay", ["nft", "list", "ruleset"], { check: true })).stdout.trim();
    const before = await ruleset();
    const krelay = await startKrelay(lab, DUAL_FLAGS);
    const rules = await krelayRules(lab);
    assert(rules.some((l) => l.includes("ip6 krelay")), rules.join("\n"));
    // The servers' answers are handed over by the table itself: no IPv6 policy rule at all.
    const six = await lab.exec("relay", ["ip", "-6", "rule", "show"], { check: true });
    assert(!six.stdout.includes("0x4b52"), six.stdout);
    const table = await lab.exec("relay", ["nft", "list", "table", "ip6", "krelay"]);
    assert(table.stdout.includes("tproxy to [::1]:1"), table.stdout);
    // The ICMPv6 errors and first packets are queued from the table's own chain: no ip6tables
    // rule (each built-in chain ip6tables-nft makes is a hook for every IPv6 packet).
    assert(table.stdout.includes("chain to_queue {"), table.stdout);
    assert(/chain to_queue \{[^}]*queue num \d+ bypass/.test(table.stdout), table.stdout);
    const queued = await lab.exec("relay", ["ip6tables", "-w", "-t", "mangle", "-S"]);
    assert(!/NFQUEUE|krelay/.test(queued.stdout), queued.stdout);
    assertEquals(await krelay.stop(), 0);
    assertEquals(await krelayRules(lab), []);
    const ip6tables = await lab.exec("relay", ["ip6tables", "-w", "-t", "mangle", "-S"]);
    assert(!/krelay|KRELAY/.test(ip6tables.stdout), ip6tables.stdout);
    // Nothing of krelay's, not even the built-in chains ip6tables-nft made for its rules.
    assertEquals(await ruleset(), before);
  },
);

labTest(
  "krelay status and nat show the IPv6 relay address and IPv6 connections",
  NEEDS,
  async (lab) => {
    await startServers(lab);
    const krelay = await startKrelay(lab, DUAL_FLAGS);
    const status = await krelayCommand(lab, ["status"], true);
    assert(status.stdout.includes(R6), status.stdout);
    // A connection held open by a client that sends nothing, listed while it lasts.
    const held = lab.exec("client", [
      "bash",
      "-c",
      `exec 3<>/dev/tcp/${R6}/80; sleep 4`,
    ], { timeoutMs: 30_000 });
    let listed = "";
    for (let i = 0; i < 50 && !listed.includes(`[${LAB_ADDR6.client}]`); i++) {
      await new Promise((r) => setTimeout(r, 100));
      listed = (await krelayCommand(lab, ["nat"])).stdout;
    }
    assert(listed.includes(`[${LAB_ADDR6.client}]`), listed);
    assert(listed.includes(`[${LAB_ADDR6.server}]:80`), listed);
    await held;
    // A UDP flow over IPv6, which only the kernel carries, is listed from its set.
    assertEquals((await dig(lab, R6, ["lab.example", "AAAA"])).stdout.trim(), LAB_ADDR6.dnsAnswer);
    const nat = await krelayCommand(lab, ["nat"], true);
    assert(nat.stdout.includes(`[${LAB_ADDR6.server}]:53`), nat.stdout);
    const after = await krelayCommand(lab, ["status"], true);
    assert(/of them IPv6\s+│\s+0 active, 1 total/.test(after.stdout), after.stdout);
    await krelay.stop();
  },
  { timeoutMs: 60_000 },
);

labTest(
  "config set real_ip moves new IPv6 connections to the new IPv6 server, IPv4 ones stay",
  NEEDS,
  async (lab) => {
    await startServers(lab);
    const krelay = await startKrelay(lab, DUAL_FLAGS);
    const whoami = async (url: string) => (await curl(lab, [url])).stdout.split(" ")[0];
    assertEquals(await whoami(`http://[${R6}]/whoami`), "srv1");
    await krelayConfigSet(lab, "real_ip", `${LAB_ADDR.server},${LAB_ADDR6.server2}`);
    assertEquals(await whoami(`http://[${R6}]/whoami`), "srv2");
    assertEquals(await whoami(`http://${LAB_ADDR.relay}/whoami`), "srv1");
    // UDP too: a new IPv6 flow is answered by the second server.
    const txt = await dig(lab, R6, ["whoami.lab.example", "TXT"]);
    assertEquals(txt.stdout.trim(), '"srv2"');
    assertEquals(await krelay.stop(), 0);
  },
  { secondServer: true },
);

/**
 * Sends, from the server's namespace, an ICMPv6 "packet too big" (MTU 1280) to `client`
 * quoting a TCP segment client:clientPort -> server:80 with sequence number `seq`, as a router
 * on the way would (the kernel fills in the ICMPv6 checksum of a raw socket). TCP heeds it only
 * for a sequence number it has sent and not had acknowledged.
 */
function packetTooBig(lab: Lab, client: string, clientPort: number, seq: number) {
  const script = `
import socket, struct, sys
client, server, port, seq = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
inner = struct.pack("!IHBB", 6 << 28, 1440, 6, 64) + socket.inet_pton(socket.AF_INET6, client) \\
  + socket.inet_pton(socket.AF_INET6, server) + struct.pack("!HHIIBBHHH", port, 80, seq, 0, 5 << 4, 0x10, 512, 0, 0)
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.sendto(struct.pack("!BBHI", 2, 0, 0, 1280) + inner, (client, 0))
`;
  return lab.exec(
    "server",
    ["python3", "-c", script, client, LAB_ADDR6.server, String(clientPort), String(seq)],
    {
      check: true,
    },
  );
}

labTest(
  "an ICMPv6 packet too big about the relay's connection to the server reaches its socket",
  [...NEEDS, "cmd:python3"],
  async (lab) => {
    await startServers(lab);
    const krelay = await startKrelay(lab, DUAL_FLAGS);
    // The relay's SYN to the server, seen on the server's link: its port and sequence number.
    const sniff = `
import socket, struct
s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x86dd))
s.settimeout(10)
while True:
  p = s.recv(2048)
  if p[6] == 6 and p[40 + 13] & 0x12 == 0x02 and struct.unpack("!H", p[42:44])[0] == 80:
    print(struct.unpack("!H", p[40:42])[0], struct.unpack("!I", p[44:48])[0])
    break
`;
    const syn = lab.exec("server", ["python3", "-c", sniff], { timeoutMs: 15_000 });
    // Python takes its time to start on a busy machine.
    await new Promise((r) => setTimeout(r, 1500));
    const held = lab.exec("client", ["bash", "-c", `exec 3<>/dev/tcp/${R6}/80; sleep 4`], {
      timeoutMs: 30_000,
    });
    const sniffed = await syn;
    assert(sniffed.success, sniffed.stderr);
    const [port, isn] = sniffed.stdout.trim().split(" ").map(Number);
    // Nothing sent yet: the next byte is the SYN's sequence number plus one.
    const seq = (isn + 1) % 2 ** 32;
    const pmtu = async () =>
      (await lab.exec("relay", ["ss", "-Htin", "dst", `[${LAB_ADDR6.server}]`])).stdout;
    assert(!(await pmtu()).includes("pmtu:1280"), await pmtu());
    await packetTooBig(lab, LAB_ADDR6.client, port, seq);
    let info = "";
    for (let i = 0; i < 20 && !info.includes("pmtu:1280"); i++) {
      await new Promise((r) => setTimeout(r, 100));
      info = await pmtu();
    }
    assert(info.includes("pmtu:1280"), info);
    await held;
    await krelay.stop();
  },
);

labTest(
  "dig @2001:db8:1::1 with no DNS server hears the server's port unreachable at once",
  [...NEEDS, "cmd:ip6tables"],
  async (lab) => {
    // No dnsmasq: the server's kernel answers the query with an ICMPv6 port unreachable,
    // which krelay turns into one about the client's query to the relay.
    const krelay = await startKrelay(lab, DUAL_FLAGS);
    // Well before dig's 5 s timeout.
    await assertDigRefused(lab, R6, ["lab.example", "AAAA"], 4_000);
    assertEquals(await krelay.stop(), 0);
    const c = await krelay.finalCounters();
    // The query, sent to the server by krelay as a new flow's first packet, and the error.
    assertEquals(c.udpRequests, 1);
    assertEquals(c.rewritten, 2);
  },
);
