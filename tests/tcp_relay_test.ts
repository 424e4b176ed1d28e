/**
 * End to end, as root: the transparent TCP relay in a lab of namespaces with a
 * real nginx, real curl, and krelay run through its launcher with real iptables and NFQUEUE.
 */

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { LAB_ADDR } from "../src/lab/addresses.ts";
import { run } from "../src/lab/process.ts";
import { startServers } from "../src/lab/servers.ts";
import type { Lab } from "../src/lab/topology.ts";
import { assertDownload } from "./support/download.ts";
import { krelayRules, LAB_FLAGS, startKrelay } from "./support/krelay.ts";
import { labTest, type Requirement } from "./support/requirements.ts";

const NEEDS: Requirement[] = ["iptables", "nginx", "curl", "libnetfilter_queue"];
const R = LAB_ADDR.relay;
const DENO = new URL("../node_modules/deno/deno", import.meta.url).pathname;
const FIXTURES = new URL("./fixtures/", import.meta.url).pathname;

function curl(lab: Lab, args: string[], timeoutMs = 30_000) {
  return lab.exec("client", ["curl", "-sS", "--max-time", String(timeoutMs / 1000), ...args], {
    timeoutMs: timeoutMs + 5_000,
  });
}

/** Runs a Deno fixture in a namespace and parses the JSON line it prints. */
async function fixture(lab: Lab, where: "client", script: string, args: string[]) {
  const r = await lab.exec(where, [DENO, "run", "-A", `${FIXTURES}${script}`, ...args], {
    timeoutMs: 120_000,
  });
  if (!r.success) throw new Error(`${script} failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").at(-1)!);
}

/** `count` concurrent GETs of `path` from the client to relay:80; their outcome. */
function concurrentGets(lab: Lab, count: number, path: string) {
  return fixture(lab, "client", "tcp_clients.ts", ["concurrent", R, "80", String(count), path]);
}

labTest(
  "curl http://relay/ returns the server's page; the server logs the client's address",
  NEEDS,
  async (lab) => {
    const { srv1 } = await startServers(lab);
    const krelay = await startKrelay(lab, LAB_FLAGS);
    const r = await curl(lab, [`http://${R}/`]);
    assertEquals(r.stdout, srv1.web.indexText);
    const hit = await srv1.web.waitForRequest((e) => e.request.startsWith("GET / "));
    assertEquals(hit.remoteAddr, LAB_ADDR.client);
    assertEquals(await krelay.stop(), 0);
    const c = await krelay.finalCounters();
    // No packet went through krelay: the kernel diverted the client's connection unchanged and
    // the relay connected from the client's address itself; nothing was rewritten.
    assertEquals([c.seen, c.tcpSegments, c.toKernel, c.rewritten], [0, 0, 0, 0]);
  },
);

labTest(
  "a 100 MB download through the relay has the server's sha256",
  NEEDS,
  async (lab) => {
    const { srv1 } = await startServers(lab);
    const file = await srv1.web.ensureFile("big.bin", 100 * 1024 * 1024);
    const krelay = await startKrelay(lab, LAB_FLAGS);
    await assertDownload(lab, `http://${R}${file.urlPath}`, file.sha256, 120);
    await krelay.stop();
  },
  { timeoutMs: 180_000 },
);

labTest(
  "1000 concurrent connections through the relay all complete with the right bytes",
  NEEDS,
  async (lab) => {
    const { srv1 } = await startServers(lab);
    const file = await srv1.web.ensureFile("small.bin", 4096);
    const krelay = await startKrelay(lab, LAB_FLAGS);
    const out = await concurrentGets(lab, 1000, file.urlPath);
    assertEquals(out.connectErrors, []);
    assertEquals([out.opened, out.completed], [1000, 1000]);
    assertEquals(out.digests, { [file.sha256]: 1000 });
    await krelay.stop();
  },
  { timeoutMs: 180_000 },
);

labTest(
  "30,000 short connections, 50 at a time (ab against nginx), lose none",
  [...NEEDS, "cmd:ab"],
  async (lab) => {
    await startServers(lab);
    const krelay = await startKrelay(lab, LAB_FLAGS);
    // Bounded: a fixed count, each request timed out after 10 s, the whole after 120 s.
    const r = await lab.exec(
      "client",
      ["ab", "-q", "-n", "30000", "-c", "50", "-s", "10", "-r", `http://${R}/`],
      { timeoutMs: 120_000 },
    );
    const field = (name: string) =>
      Number(new RegExp(`^${name}:\\s+(\\d+)`, "m").exec(r.stdout)?.[1]);
    assertEquals(
      [field("Complete requests"), field("Failed requests"), field("Non-2xx responses") || 0],
      [30000, 0, 0],
      r.stdout + r.stderr,
    );
    assertEquals(await krelay.stop(), 0);
  },
  { timeoutMs: 180_000 },
);

labTest(
  "a client that half-closes still receives the whole response",
  NEEDS,
  async (lab) => {
    const { srv1 } = await startServers(lab);
    const server = lab.spawn("server", "eof-server", [
      DENO,
      "run",
      "-A",
      `${FIXTURES}eof_server.ts`,
      LAB_ADDR.server,
      "8080",
    ]);
    await lab.waitForListen("server", "tcp", 8080, { timeoutMs: 20_000 });
    // Two services on one gateway port: each connection finds its own original destination.
    const krelay = await startKrelay(lab, [...LAB_FLAGS, "--tcp-ports", "80,8080"]);
    const out = await fixture(lab, "client", "tcp_clients.ts", ["halfclose", R, "8080", "1000000"]);
    assertEquals((await curl(lab, [`http://${R}/`])).stdout, srv1.web.indexText);
    // The server answers only after it has seen the client's FIN, and then the whole answer
    // must still reach the client, whose write side is already shut.
    const reply = JSON.parse(out.reply);
    assertEquals(reply, { length: 1_000_000, sha256: out.sentSha256, peer: LAB_ADDR.client });
    await krelay.stop();
    await server.stop();
  },
);

labTest(
  "a client connecting to the gateway port itself is reset, and nothing reaches the server",
  NEEDS,
  async (lab) => {
    const { srv1 } = await startServers(lab);
    // Something on the server at the gateway port's number, which a relayed flow would reach.
    const decoy = lab.spawn("server", "decoy", ["python3", "-m", "http.server", "16000"]);
    await lab.waitForListen("server", "tcp", 16000, { timeoutMs: 20_000 });
    const krelay = await startKrelay(lab, LAB_FLAGS);
    const direct = await curl(lab, [`http://${R}:16000/`], 5_000);
    assert(!direct.success, `curl to the gateway port should fail: ${direct.stdout}`);
    // A reset that reaches curl before it has seen its connect complete reads "Couldn't connect".
    assert(/reset|Empty reply|Couldn't connect/i.test(direct.stderr), direct.stderr);
    // The relay still relays, and its counters show it accepted and refused the connection.
    assertEquals((await curl(lab, [`http://${R}/`])).stdout, srv1.web.indexText);
    assertEquals(await krelay.stop(), 0);
    const tcp = (await krelay.finalRecord()).properties!.tcp as { total: number; failed: number };
    assertEquals([tcp.total, tcp.failed], [2, 1]);
    await decoy.stop();
    assert(!(await decoy.readLog()).includes("GET /"), await decoy.readLog());
  },
);

labTest(
  "a server that speaks first (a banner) is answered at once: its banner and the dialogue get through",
  [...NEEDS, "cmd:python3"],
  async (lab) => {
    const port = 2525;
    // SMTP-like: greets, then answers each line with where it came from.
    const server = lab.spawn("server", "banner", [
      "python3",
      "-c",
      [
        "import socket",
        "s = socket.socket()",
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)",
        `s.bind(('${LAB_ADDR.server}', ${port}))`,
        "s.listen(8)",
        "while True:",
        "    c, a = s.accept()",
        "    c.sendall(b'220 ready\\r\\n')",
        "    line = c.recv(100)",
        "    c.sendall(b'250 ' + a[0].encode() + b' ' + line)",
        "    c.close()",
      ].join("\n"),
    ]);
    await lab.waitForListen("server", "tcp", port);
    const krelay = await startKrelay(lab, [...LAB_FLAGS, "--tcp-ports", String(port)]);
    // The client waits for the greeting before it says anything; five connections, one after
    // another.
    const r = await lab.exec("client", [
      "python3",
      "-c",
      [
        "import json, socket, time",
        "out = []",
        "for _ in range(5):",
        `    c = socket.create_connection(('${R}', ${port}), timeout=5)`,
        "    t = time.monotonic()",
        "    greeting = c.recv(100).decode()",
        "    ms = (time.monotonic() - t) * 1000",
        "    c.sendall(b'HELO\\r\\n')",
        "    reply = b''",
        "    while (d := c.recv(100)): reply += d",
        "    c.close()",
        "    out.append({'greeting': greeting, 'reply': reply.decode(), 'ms': ms})",
        "print(json.dumps(out))",
      ].join("\n"),
    ], { timeoutMs: 30_000 });
    assert(r.success, r.stderr);
    const out = JSON.parse(r.stdout) as { greeting: string; reply: string; ms: number }[];
    for (const o of out) {
      assertEquals([o.greeting, o.reply], ["220 ready\r\n", `250 ${LAB_ADDR.client} HELO\r\n`]);
    }
    // The relay's handshake ACK, held back for the client's first bytes, goes at once when
    // there are none: the kernel's own timer would send it only after 200 ms, every time. The
    // fastest of five is judged, so a stall of the machine on some of them does not count.
    const ms = out.map((o) => o.ms);
    assert(
      Math.min(...ms) < 150,
      `the greetings took ${ms.map((m) => m.toFixed(0)).join(", ")} ms`,
    );
    assertEquals(await krelay.stop(), 0);
    await server.stop();
  },
);

labTest(
  "with the server down, refusing or silent, the client is refused or unanswered, never reset",
  NEEDS,
  async (lab) => {
    // Port 8081: nothing listens (the server's kernel refuses). Port 8082: the server drops SYNs.
    await lab.exec("server", [
      "iptables",
      "-A",
      "INPUT",
      "-p",
      "tcp",
      "--dport",
      "8082",
      "-j",
      "DROP",
    ], {
      check: true,
    });
    const krelay = await startKrelay(lab, [
      ...LAB_FLAGS,
      "--tcp-ports",
      "8081,8082",
      "--tcp-connect-timeout",
      "1",
      "--tcp-hold-syn",
    ]);
    // With the SYN gate: refused at once, as by the server itself (curl: "Couldn't connect", exit 7); the silent
    // one never answers the client's SYN (curl's connect timeout, exit 28), as directly.
    for (const [port, code] of [[8081, 7], [8082, 28]]) {
      const started = performance.now();
      const r = await curl(lab, ["--connect-timeout", "2", `http://${R}:${port}/`], 10_000);
      const took = performance.now() - started;
      assertEquals(r.code, code, `port ${port}: ${r.stderr}`);
      assert(!/reset|Empty reply/i.test(r.stderr), `port ${port}: ${r.stderr}`);
      assert(took < 3_000, `port ${port}: took ${took} ms`);
    }
    await krelay.stop();
  },
);

labTest("after krelay stops, no rule, socket or NAT entry remains", NEEDS, async (lab) => {
  const { srv1 } = await startServers(lab);
  const krelay = await startKrelay(lab, LAB_FLAGS);
  assertEquals((await curl(lab, [`http://${R}/`])).stdout, srv1.web.indexText);
  assertEquals(await krelay.stop(), 0);
  assertEquals(await krelayRules(lab), []);
  // TIME_WAIT is the kernel's, not krelay's: what must be gone is every listening or open one.
  const sockets = await run([
    "ip",
    "netns",
    "exec",
    lab.ns.relay,
    "ss",
    "-Htan",
    "state",
    "listening",
    "state",
    "established",
    "state",
    "close-wait",
    "state",
    "fin-wait-1",
  ]);
  assertEquals(sockets.stdout.trim(), "");
  const closed = await krelay.finalRecord();
  const nat = closed.properties!.nat as { entries: number };
  const tcp = closed.properties!.tcp as { active: number };
  assertEquals([nat.entries, tcp.active], [0, 0]);
});

labTest(
  "krelay restarts at once on the same gateway port after relaying",
  NEEDS,
  async (lab) => {
    const { srv1 } = await startServers(lab);
    for (let round = 1; round <= 2; round++) {
      const krelay = await startKrelay(lab, LAB_FLAGS, `krelay-${round}`);
      for (let i = 0; i < 5; i++) {
        assertEquals(
          (await curl(lab, [`http://${R}/`])).stdout,
          srv1.web.indexText,
          `round ${round}`,
        );
      }
      assertEquals(await krelay.stop(), 0);
    }
  },
);

labTest(
  "the server sees the client's own port; one client port used for two services works for both",
  NEEDS,
  async (lab) => {
    const { srv1 } = await startServers(lab);
    const krelay = await startKrelay(lab, [...LAB_FLAGS, "--tcp-ports", "80,8080"]);
    const r = await curl(lab, ["--local-port", "43210", `http://${R}/`]);
    assertEquals(r.stdout, srv1.web.indexText);
    const hit = await srv1.web.waitForRequest((e) => e.request.startsWith("GET / "));
    assertEquals([hit.remoteAddr, hit.remotePort], [LAB_ADDR.client, 43210]);

    // Two services from one client port at once (Linux does this by itself under load): both
    // are relayed, each from that port, since their four numbers differ at the server.
    const whoami = lab.spawn("server", "whoami", [
      "python3",
      "-c",
      WHOAMI,
      LAB_ADDR.server,
      "8080",
    ]);
    try {
      await lab.waitForListen("server", "tcp", 8080, { timeoutMs: 20_000 });
      const two = await lab.exec("client", ["python3", "-c", SAME_PORT, R, "43211", "80", "8080"], {
        timeoutMs: 30_000,
      });
      const seen = `${LAB_ADDR.client}:43211`;
      assertEquals(two.stdout.trim().split("\n"), [`srv1 ${seen}`, seen], two.stderr);
    } finally {
      await whoami.stop();
    }
    assertEquals(await krelay.stop(), 0);
  },
);

labTest(
  "a client port taken toward the server: the kernel picks another, from its range",
  NEEDS,
  async (lab) => {
    const { srv1 } = await startServers(lab);
    const file = await srv1.web.ensureFile("small.bin", 4096);
    // One port in the relay's namespace (the lab's own) for the kernel to pick.
    await lab.exec("relay", ["sysctl", "-qw", "net.ipv4.ip_local_port_range=40000 40001"], {
      check: true,
    });
    const krelay = await startKrelay(lab, LAB_FLAGS);
    // The relay itself holds client:43212 -> server:80 (as a connection in TIME_WAIT would).
    const holder = new Deno.Command("ip", {
      args: [
        "netns",
        "exec",
        lab.ns.relay,
        "python3",
        "-c",
        HOLD_PORT,
        LAB_ADDR.client,
        "43212",
        LAB_ADDR.server,
      ],
      stdout: "piped",
    }).spawn();
    try {
      const reader = holder.stdout.getReader();
      const ready = await reader.read();
      reader.releaseLock();
      assertEquals(new TextDecoder().decode(ready.value).trim(), "held");
      const r = await curl(lab, [
        "--local-port",
        "43212",
        `http://${R}${file.urlPath}`,
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
      ]);
      assertEquals(r.stdout, "200");
      const hits = (await srv1.web.accessLog()).filter((e) => e.request.includes(file.urlPath));
      assertEquals(hits.length, 1);
      assertEquals(hits[0].remoteAddr, LAB_ADDR.client);
      assert([40000, 40001].includes(hits[0].remotePort), `server saw ${hits[0].remotePort}`);
    } finally {
      holder.kill();
      await holder.stdout.cancel();
      await holder.status;
    }
    assertEquals(await krelay.stop(), 0);
  },
);

/**
 * Python: GET /whoami from one local port (argv[2]) to argv[1] on each port after, all open
 * at once; prints each answer's body.
 */
const SAME_PORT = `
import socket, sys
socks = []
for port in sys.argv[3:]:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.settimeout(10)
    s.bind(("", int(sys.argv[2])))
    s.connect((sys.argv[1], int(port)))
    socks.append(s)
for s in socks:
    s.sendall(b"GET /whoami HTTP/1.0\\r\\n\\r\\n")
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    print(data.split(b"\\r\\n\\r\\n", 1)[-1].decode().strip())
`;

/** Python: an HTTP server on argv[1]:argv[2] answering with the peer's address and port. */
const WHOAMI = `
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("%s:%d" % self.client_address).encode()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), H).serve_forever()
`;

/** Python: a transparent socket bound to argv[1]:argv[2], connected to argv[3]:80, held. */
const HOLD_PORT = `
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_IP, 19, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.connect((sys.argv[3], 80))
print("held", flush=True)
time.sleep(60)
`;

labTest(
  "with tcp_conntrack false: relayed TCP is transparent and leaves no entry in the host's conntrack",
  NEEDS,
  async (lab) => {
    const { srv1 } = await startServers(lab);
    const count = async () =>
      Number(
        (await lab.exec("relay", ["cat", "/proc/sys/net/netfilter/nf_conntrack_count"], {
          check: true,
        })).stdout,
      );
    // krelay loads no conntrack itself: a stateful firewall of the host's does.
    await lab.exec("relay", ["nft", "add", "table", "ip", "hostfw"], { check: true });
    await lab.exec("relay", [
      "nft",
      "add chain ip hostfw input { type filter hook input priority 0; }",
    ], { check: true });
    await lab.exec("relay", ["nft", "add rule ip hostfw input ct state invalid drop"], {
      check: true,
    });
    // Untracked first: entries of a tracked run could expire during the next and hide one.
    for (const tracked of [false, true]) {
      const krelay = await startKrelay(
        lab,
        [...LAB_FLAGS, tracked ? "--tcp-conntrack" : "--no-tcp-conntrack"],
        `krelay-${tracked}`,
      );
      const before = await count();
      for (let i = 0; i < 3; i++) {
        assertEquals((await curl(lab, [`http://${R}/`])).stdout, srv1.web.indexText);
      }
      const hit = await srv1.web.waitForRequest((e) => e.request.startsWith("GET / "));
      assertEquals(hit.remoteAddr, LAB_ADDR.client);
      // Tracked, each connection is two entries (client leg, server leg), kept in TIME_WAIT.
      const added = (await count()) - before;
      if (tracked) assert(added >= 6, `tracked: ${added} new conntrack entries`);
      else {
        // Untracked, no entry has a leg of a relayed connection (port 80 on either side); the
        // listing, not the count, so that a stray packet of something else cannot fail it.
        const entries = (await lab.exec("relay", ["cat", "/proc/net/nf_conntrack"], {
          check: true,
        })).stdout.split("\n").filter((l) => / tcp /.test(l) && /[sd]port=80 /.test(l));
        assertEquals(entries, [], `untracked: ${added} new entries`);
      }
      assertEquals(await krelay.stop(), 0);
    }
  },
);
