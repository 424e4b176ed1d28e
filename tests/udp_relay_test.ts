/**
 * End to end, as root: the UDP relay (flows U1-U4) in a lab of namespaces with a real
 * dnsmasq, real dig, and krelay run through its launcher with real iptables and NFQUEUE.
 */

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { LAB_ADDR, LAB_IF } from "../src/lab/addresses.ts";
import { run } from "../src/lab/process.ts";
import { startServers } from "../src/lab/servers.ts";
import type { Lab } from "../src/lab/topology.ts";
import type { DnsQuery } from "../src/lab/dnsmasq.ts";
import { waitFor } from "../src/lab/wait.ts";
import { controlSocket, KRELAY, krelayRules, LAB_FLAGS, startKrelay } from "./support/krelay.ts";
import { labTest, type Requirement } from "./support/requirements.ts";
import { tcxPrograms } from "./support/tcx.ts";

const NEEDS: Requirement[] = ["iptables", "dnsmasq", "dig", "libnetfilter_queue"];
const R = LAB_ADDR.relay;

function dig(lab: Lab, args: string[]) {
  return lab.exec("client", ["dig", "+time=2", "+tries=1", "+short", `@${R}`, ...args], {
    timeoutMs: 10_000,
  });
}

labTest(
  "dig through the relay gets dnsmasq's answer; dnsmasq sees the client's address",
  NEEDS,
  async (lab) => {
    const { srv1 } = await startServers(lab);
    const krelay = await startKrelay(lab, LAB_FLAGS);
    const r = await dig(lab, ["lab.example", "A"]);
    assertEquals(r.stdout.trim(), LAB_ADDR.dnsAnswer);
    const q = await srv1.dns.waitForQuery((q) => q.name === "lab.example");
    assertEquals(q.client, LAB_ADDR.client);
    assertEquals(await krelay.stop(), 0);
    const c = await krelay.finalCounters();
    // The kernel's rules rewrite the reply: krelay only saw the request.
    assertEquals([c.udpRequests, c.udpReplies, c.toKernel], [1, 0, 1]);
  },
);

labTest(
  "the first packet is queued from krelay's own table: no iptables hook on an established flow's way",
  NEEDS,
  async (lab) => {
    await startServers(lab);
    const krelay = await startKrelay(lab, LAB_FLAGS);
    // Answered: the first packet reached krelay through the table's queue rule.
    assertEquals((await dig(lab, ["lab.example", "A"])).stdout.trim(), LAB_ADDR.dnsAnswer);
    const ruleset = (await lab.exec("relay", ["nft", "list", "ruleset"], { check: true })).stdout;
    // IPv4's tables: krelay's alone (iptables-nft made none), with its prerouting chain and
    // one after conntrack for the TCP servers' answers (tcp_conntrack), one forward and one
    // output hook, and no postrouting one.
    const tables = [...ruleset.matchAll(/^table ip (\S+) \{$/gm)].map((m) => m[1]);
    assertEquals(tables, ["krelay"]);
    const ip = ruleset.slice(ruleset.indexOf("table ip krelay {"));
    const four = ip.slice(0, ip.indexOf("\n}") + 2);
    assertEquals(four.match(/hook (\w+)/g), [
      "hook prerouting",
      "hook forward",
      "hook output",
      "hook prerouting",
    ]);
    assert(/chain to_queue \{\n\s+queue num \d+ bypass\n\s+accept\n/.test(four), four);
    // No IPv4 policy rule: every routed packet would pay for rule lookups.
    const rules = await lab.exec("relay", ["ip", "rule", "show"], { check: true });
    assertEquals(rules.stdout.trim().split("\n").length, 3, rules.stdout);
    assertEquals(await krelay.stop(), 0);
    assertEquals((await krelay.finalCounters()).udpRequests, 1);
  },
);

labTest(
  "two clients using the same source port at once each get their own answer",
  NEEDS,
  async (lab) => {
    const { srv1 } = await startServers(lab);
    const krelay = await startKrelay(lab, LAB_FLAGS);
    const [a, b] = await Promise.all([
      dig(lab, ["-b", `${LAB_ADDR.client}#5300`, "lab.example", "A"]),
      dig(lab, ["-b", `${LAB_ADDR.client2}#5300`, "whoami.lab.example", "TXT"]),
    ]);
    assertEquals(a.stdout.trim(), LAB_ADDR.dnsAnswer);
    assertEquals(b.stdout.trim(), '"srv1"');
    const queries = await srv1.dns.queries();
    assertEquals(
      queries.map((q) => `${q.client} ${q.name}`).sort(),
      [`${LAB_ADDR.client} lab.example`, `${LAB_ADDR.client2} whoami.lab.example`],
    );
    await krelay.stop();
  },
);

labTest(
  "1000 queries through the relay: every one answered, none lost",
  NEEDS,
  async (lab) => {
    await startServers(lab);
    const krelay = await startKrelay(lab, LAB_FLAGS);
    const batch = `${lab.runDir}/queries.txt`;
    await Deno.writeTextFile(batch, "lab.example A\n".repeat(1000));
    // One try, no retries: a lost packet shows as a missing answer.
    const r = await lab.exec(
      "client",
      ["dig", "+time=2", "+tries=1", "+short", `@${R}`, "-f", batch],
      {
        timeoutMs: 60_000,
      },
    );
    const answers = r.stdout.split("\n").filter((l) => l.trim() === LAB_ADDR.dnsAnswer);
    assertEquals(answers.length, 1000);
    await krelay.stop();
    const c = await krelay.finalCounters();
    assertEquals(c.dropped, 0);
  },
  { timeoutMs: 120_000 },
);

labTest(
  "ping to the relay and through it still works with krelay running",
  [...NEEDS, "cmd:ping"],
  async (lab) => {
    const krelay = await startKrelay(lab, LAB_FLAGS);
    for (const target of [R, LAB_ADDR.server]) {
      const r = await lab.exec("client", ["ping", "-c", "3", "-i", "0.2", "-W", "2", "-q", target]);
      assert(r.success, `ping ${target} failed:\n${r.stdout}${r.stderr}`);
      assert(r.stdout.includes(" 0% packet loss"), r.stdout);
    }
    await krelay.stop();
  },
);

labTest(
  "after krelay stops, no krelay rule, no table or hook iptables made for it, and no krelay process remain",
  [...NEEDS, "cmd:nft"],
  async (lab) => {
    const ruleset = async () =>
      (await lab.exec("relay", ["nft", "list", "ruleset"], { check: true })).stdout.trim();
    const before = await ruleset();
    const krelay = await startKrelay(lab, LAB_FLAGS);
    assertEquals((await krelayRules(lab)).length > 0, true);
    // The flowtable's two programs on each interface (tcx links of the krelay process).
    const attached = await tcxPrograms(lab, "relay");
    assert(Object.keys(attached).length >= 2, JSON.stringify(attached));
    assert(Object.values(attached).every((n) => n === "1/1"), JSON.stringify(attached));
    assertEquals(await krelay.stop(), 0);
    assertEquals(await krelayRules(lab), []);
    const left = await tcxPrograms(lab, "relay");
    assert(Object.values(left).every((n) => n === "0/0"), JSON.stringify(left));
    // Not even the empty built-in chains iptables-nft creates for a jump: each is a hook.
    assertEquals(await ruleset(), before);
    // Asked from outside the namespace, so the asking `ip` is not in the answer.
    const pids = await run(["ip", "netns", "pids", lab.ns.relay]);
    assertEquals(pids.stdout.trim(), "");
  },
);

labTest(
  "krelay run with a bad config exits non-zero, names the key and installs nothing",
  NEEDS,
  async (lab) => {
    const file = `${lab.runDir}/bad.toml`;
    await Deno.writeTextFile(file, 'real_ip = "203.0.113.10"\nudp_ports = [53, 70000]\n');
    for (
      const [args, key] of [
        [["--gport", "70000"], "gport: must be 1-65535"],
        [["--real-ip", "203.0.113.999"], "real_ip: must be an IPv4 or IPv6 address"],
        [["--config", file], "udp_ports.1: must be 1-65535"],
        [["--queue", "many"], "queue: must be a number"],
      ] as const
    ) {
      const r = await lab.exec("relay", [KRELAY, "run", ...LAB_FLAGS, ...args], {
        timeoutMs: 30_000,
      });
      assertEquals(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert(r.stderr.includes(key), `expected "${key}" in: ${r.stderr}`);
      assertEquals(await krelayRules(lab), []);
    }
  },
);

labTest(
  "krelay run after a crash removes the rules the crashed run left",
  NEEDS,
  async (lab) => {
    await startServers(lab);
    const crashed = await startKrelay(lab, LAB_FLAGS, "krelay-crashed");
    Deno.kill(crashed.process.pid, "SIGKILL");
    await crashed.process.status;
    const left = await krelayRules(lab);
    assert(left.length > 0, "a SIGKILLed run leaves its rules");
    // But not the flowtable: its links went with the process.
    const programs = await tcxPrograms(lab, "relay");
    assert(Object.values(programs).every((n) => n === "0/0"), JSON.stringify(programs));
    const krelay = await startKrelay(lab, LAB_FLAGS);
    assertEquals(await krelayRules(lab), left, "the same rules, once");
    assertEquals((await dig(lab, ["lab.example"])).stdout.trim(), LAB_ADDR.dnsAnswer);
    await krelay.stop();
    assertEquals(await krelayRules(lab), []);
  },
);

labTest(
  "a second krelay on the same queue is refused and changes nothing",
  NEEDS,
  async (lab) => {
    await startServers(lab);
    const first = await startKrelay(lab, LAB_FLAGS);
    const rules = await krelayRules(lab);
    const r = await lab.exec("relay", [
      KRELAY,
      "run",
      ...LAB_FLAGS,
      "--control-socket",
      controlSocket(lab, "second"),
    ], { timeoutMs: 30_000 });
    assertEquals(r.code, 1);
    assert(/cannot bind queue 0: EPERM/.test(r.stderr), r.stderr);
    assertEquals(await krelayRules(lab), rules);
    assertEquals((await dig(lab, ["lab.example"])).stdout.trim(), LAB_ADDR.dnsAnswer);
    await first.stop();
  },
);

labTest(
  "a UDP flow open when its port leaves udp_ports finishes both ways; a new flow there is not relayed",
  NEEDS,
  async (lab) => {
    await startServers(lab);
    const krelay = await startKrelay(lab, [...LAB_FLAGS, "--udp-timeout", "2"]);
    const from = ["-b", `${LAB_ADDR.client}#5302`, "lab.example", "A"];
    assertEquals((await dig(lab, from)).stdout.trim(), LAB_ADDR.dnsAnswer);
    const set = await run(
      [KRELAY, "config", "set", "udp_ports", "5353", "--socket", krelay.socket],
      {
        timeoutMs: 30_000,
      },
    );
    assert(set.success, set.stderr);
    // The open flow talks on, well past udp_timeout after its first packet (all krelay itself
    // saw of it), each question answered by the flow's own server as the relay.
    for (let i = 0; i < 4; i++) {
      await new Promise((r) => setTimeout(r, 1000));
      assertEquals((await dig(lab, from)).stdout.trim(), LAB_ADDR.dnsAnswer, `question ${i}`);
    }
    // A new flow to the port is the relay's own business now: nothing listens there.
    const other = await dig(lab, ["-b", `${LAB_ADDR.client}#5303`, "lab.example", "A"]);
    assert(!other.stdout.includes(LAB_ADDR.dnsAnswer), other.stdout);
    assertEquals(await krelay.stop(), 0);
    assertEquals((await krelay.finalCounters()).udpRequests, 1);
  },
);

labTest(
  "krelay's flow set remembers who asked until udp_timeout, with no conntrack at all",
  [...NEEDS, "cmd:nft"],
  async (lab) => {
    await startServers(lab);
    const krelay = await startKrelay(lab, [...LAB_FLAGS, "--udp-timeout", "2"]);
    const from = ["-b", `${LAB_ADDR.client}#5301`, "lab.example", "A"];
    const flows = async () =>
      (await lab.exec("relay", ["nft", "list", "map", "ip", "krelay", "udp_flows"], {
        check: true,
      })).stdout;
    for (let i = 0; i < 3; i++) {
      assertEquals((await dig(lab, from)).stdout.trim(), LAB_ADDR.dnsAnswer);
    }
    assert((await flows()).includes(`${LAB_ADDR.client} . 5301 . 53 `), await flows());
    // Quiet for longer than udp_timeout: the flow is forgotten, and its next packet is a first.
    await new Promise((r) => setTimeout(r, 3000));
    assert(!(await flows()).includes(" . 5301 . "), await flows());
    assertEquals((await dig(lab, from)).stdout.trim(), LAB_ADDR.dnsAnswer);
    // Nothing in the relay's namespace loaded connection tracking: no hook, no entry.
    const tracked = await lab.exec("relay", ["cat", "/proc/net/nf_conntrack"], { check: true });
    assertEquals(tracked.stdout, "");
    assertEquals(await krelay.stop(), 0);
    const c = await krelay.finalCounters();
    assertEquals([c.udpRequests, c.toKernel, c.dropped], [2, 2, 0]);
  },
);

labTest(
  "a datagram larger than the MTU crosses both ways, reassembled and rewritten, with UDP services only",
  [...NEEDS, "cmd:python3"],
  async (lab) => {
    const port = 5300;
    // No TCP service: no TPROXY rule that would have the kernel reassemble anyway.
    const krelay = await startKrelay(
      lab,
      [...LAB_FLAGS, "--udp-ports", `53,${port}`, "--tcp-ports", ""],
    );
    // Answers 4000 bytes that start with who asked and how much it sent.
    lab.spawn("server", "big-udp", [
      "python3",
      "-c",
      [
        "import socket",
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)",
        `s.bind(('${LAB_ADDR.server}', ${port}))`,
        "while True:",
        "    d, a = s.recvfrom(65535)",
        "    s.sendto(f'{a[0]} {len(d)}'.encode().ljust(4000, b'.'), a)",
      ].join("\n"),
    ]);
    await lab.waitForListen("server", "udp", port);
    const r = await lab.exec("client", [
      "python3",
      "-c",
      [
        "import socket",
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)",
        "s.settimeout(5)",
        `s.sendto(b'x' * 3000, ('${R}', ${port}))`,
        "d, a = s.recvfrom(65535)",
        "print(len(d), f'{a[0]}:{a[1]}', d[:32].rstrip(b'.').decode())",
      ].join("\n"),
    ], { timeoutMs: 15_000 });
    assert(r.success, r.stderr);
    assertEquals(r.stdout.trim(), `4000 ${R}:${port} ${LAB_ADDR.client} 3000`);
    assertEquals(await krelay.stop(), 0);
  },
);

/**
 * Python, in the client: a DNS query for lab.example from port argv[2] to argv[1]:53; prints
 * "answered FROM" for the answer, then "got FROM" for every datagram in the next argv[3] s.
 */
const LISTEN_AFTER_QUERY = `
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("", int(sys.argv[2])))
q = b"\\x12\\x34\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x03lab\\x07example\\x00\\x00\\x01\\x00\\x01"
s.sendto(q, (sys.argv[1], 53))
s.settimeout(5)
data, peer = s.recvfrom(4096)
print("answered %s:%d" % peer, flush=True)
end = time.time() + float(sys.argv[3])
while time.time() < end:
    s.settimeout(max(0.05, end - time.time()))
    try:
        data, peer = s.recvfrom(4096)
        print("got %s:%d %s" % (peer[0], peer[1], data[:4].decode(errors="replace")), flush=True)
    except socket.timeout:
        pass
`;

labTest(
  "a datagram injected by another server-side host never reaches the client as the relay's",
  NEEDS,
  async (lab) => {
    await startServers(lab);
    const krelay = await startKrelay(lab, LAB_FLAGS);
    // Another host on the server side: a second address in the server's namespace.
    const evil = "203.0.113.99";
    await lab.exec("server", ["ip", "addr", "add", `${evil}/24`, "dev", LAB_IF.host], {
      check: true,
    });
    const client = new Deno.Command("ip", {
      args: ["netns", "exec", lab.ns.client, "python3", "-c", LISTEN_AFTER_QUERY, R, "5454", "3"],
      stdout: "piped",
    }).spawn();
    const out = client.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    while (!text.includes("\n")) {
      const { value, done } = await out.read();
      if (done) break;
      text += value;
    }
    assertEquals(text.trim(), `answered ${R}:53`);
    // The flow is live: spoof answers to it, from the real server's port and elsewhere.
    const spoof = (from: string) =>
      lab.exec("server", [
        "python3",
        "-c",
        "import socket,sys;s=socket.socket(2,2);s.bind((sys.argv[1],53));" +
        "s.sendto(b'EVIL',(sys.argv[2],5454))",
        from,
        LAB_ADDR.client,
      ], { check: true });
    await spoof(evil);
    for (;;) {
      const { value, done } = await out.read();
      if (done) break;
      text += value;
    }
    await client.status;
    const got = text.trim().split("\n").slice(1);
    // Untranslated, the client sees who really sent it (and a connected resolver drops it).
    assertEquals(got, [`got ${evil}:53 EVIL`]);
    assertEquals(await krelay.stop(), 0);
  },
);

labTest(
  "an established flow's datagrams are forwarded at ingress; one a second still refreshes nftables",
  [...NEEDS, "cmd:nft"],
  async (lab) => {
    const { srv1 } = await startServers(lab);
    const krelay = await startKrelay(lab, LAB_FLAGS);
    const from = ["-b", `${LAB_ADDR.client}#5304`, "lab.example", "A"];
    const asked = 12;
    for (let i = 0; i < asked; i++) {
      assertEquals((await dig(lab, from)).stdout.trim(), LAB_ADDR.dnsAnswer, `question ${i}`);
    }
    // dnsmasq saw the client itself for every question, forwarded by the flowtable or not.
    let queries: DnsQuery[] = [];
    await waitFor(async () => {
      queries = (await srv1.dns.queries()).filter((q) => q.name === "lab.example");
      return queries.length >= asked;
    }, { timeoutMs: 5_000, what: `${asked} questions in dnsmasq's log` });
    assert(queries.every((q) => q.client === LAB_ADDR.client), JSON.stringify(queries));
    const status = await run([KRELAY, "status", "--json", "--socket", krelay.socket], {
      timeoutMs: 30_000,
    });
    assert(status.success, status.stderr);
    const table = JSON.parse(status.stdout).flowtable;
    // The first question went through the queue and nftables, which taught the flowtable the
    // flow and its answer; most later ones and their answers went past both.
    assert(table.learnedRequests >= 1 && table.learnedReplies >= 1, JSON.stringify(table));
    assert(table.forwarded >= asked, JSON.stringify(table));
    // nftables still holds the flow, and saw its first answer (the passive health checks and
    // eviction read which flows were answered there).
    for (const map of ["udp_flows", "udp_answered"]) {
      const list = await lab.exec("relay", ["nft", "list", "map", "ip", "krelay", map], {
        check: true,
      });
      assert(list.stdout.includes(`${LAB_ADDR.client} . 5304 . 53 `), list.stdout);
    }
    assertEquals(await krelay.stop(), 0);
    // krelay itself decided the first packet only.
    assertEquals((await krelay.finalCounters()).udpRequests, 1);
  },
);
