/**
 * End to end, as root: at the edges, the relay behaves as kernel NAT would (issue 29): TCP
 * keepalives keep a connection alive, ICMP errors about relayed flows are translated both
 * ways, path MTU discovery works through the relay, large datagrams get through whole.
 */

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { LAB_ADDR, LAB_ADDR6 } from "../src/lab/addresses.ts";
import { type LabProcess, run, signalGroup } from "../src/lab/process.ts";
import { startServers } from "../src/lab/servers.ts";
import type { Lab } from "../src/lab/topology.ts";
import { waitFor, waitForLine, waitForListen } from "../src/lab/wait.ts";
import type { SynReport } from "../src/daemon/reports.ts";
import { assertDigRefused } from "./support/dig.ts";
import { curl } from "./support/curl.ts";
import { assertDownload } from "./support/download.ts";
import { IPV4, IPV6, type LabFamily } from "./support/family.ts";
import {
  KRELAY,
  type KrelayRun,
  LAB_FLAGS,
  startKrelay,
  tcpServiceFlags,
} from "./support/krelay.ts";
import { startLongClient } from "./support/long_client.ts";
import { labTest, type Requirement } from "./support/requirements.ts";
import { narrowServerSide, udpEdges } from "./support/udp_edges.ts";

const NEEDS: Requirement[] = ["iptables", "nft", "libnetfilter_queue", "cmd:python3"];
const R = LAB_ADDR.relay;
const FIXTURES = new URL("./fixtures/", import.meta.url).pathname;

labTest(
  "TCP keepalives from either side keep a connection past the idle timeout; silence does not",
  NEEDS,
  async (lab) => {
    const port = 9000;
    const peer = `${FIXTURES}keepalive_peer.py`;
    const server = lab.spawn("server", "keepalive", [
      "python3",
      peer,
      "server",
      LAB_ADDR.server,
      String(port),
    ]);
    await lab.waitForListen("server", "tcp", port);
    const krelay = await startKrelay(lab, [
      ...LAB_FLAGS,
      "--tcp-ports",
      String(port),
      "--tcp-idle-timeout",
      "3",
    ]);
    // Probes every second; seven seconds of silence are more than two timeouts.
    const r = await lab.exec("client", ["python3", peer, "client", R, String(port), "7"], {
      timeoutMs: 30_000,
    });
    assert(r.success, r.stderr);
    const out = JSON.parse(r.stdout);
    assertEquals([out.C, out.K], ["ok", "ok"]);
    assert(out.N !== "ok", `the silent connection outlived the idle timeout: ${out.N}`);
    assertEquals(await krelay.stop(), 0);
    await server.stop();
  },
);

labTest(
  "UDP: ICMP errors both ways, path MTU discovery and large datagrams, as with kernel NAT",
  [...NEEDS, "dig"],
  (lab) => udpEdges(lab, IPV4),
);

labTest(
  "UDP with a packet script: ICMP errors both ways, path MTU discovery and large datagrams",
  [...NEEDS, "dig"],
  (lab) =>
    udpEdges(lab, IPV4, [
      "--script",
      new URL("../src/script/_fixtures/accept_all.ts", import.meta.url).pathname,
      "--on",
      "udp:7000,udp:7001,udp:7002",
    ]),
);

labTest(
  "TCP: path MTU discovery works on the relay's leg to the server through a narrower router",
  NEEDS,
  async (lab) => {
    // A server behind a router: the lab's server namespace forwards to `far` (203.0.113.130)
    // over a link whose router side has a 1,280-byte MTU while `far` itself has 1,500, so
    // its SYN-ACK offers a full-size MSS and only the router's "fragmentation needed",
    // addressed to the client's address (the relay's socket is bound to it), can tell the
    // relay's socket to send smaller segments.
    const far = `${lab.prefix}-far`;
    const FAR = "203.0.113.130";
    const port = 9100;
    await run(["ip", "netns", "add", far], { check: true });
    let sink: LabProcess | undefined;
    try {
      const inServer = (...cmd: string[]) => lab.exec("server", cmd, { check: true });
      const inFar = (...cmd: string[]) =>
        run(["ip", "netns", "exec", far, ...cmd], { check: true });
      await inServer(
        "ip",
        "link",
        "add",
        "far0",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        far,
      );
      await inServer("ip", "addr", "add", "203.0.113.129/25", "dev", "far0");
      await inServer("ip", "link", "set", "far0", "mtu", "1280", "up");
      await inServer("sysctl", "-qw", "net.ipv4.ip_forward=1");
      await inFar("ip", "link", "set", "lo", "up");
      await inFar("ip", "addr", "add", `${FAR}/25`, "dev", "eth0");
      await inFar("ip", "link", "set", "eth0", "up");
      await inFar("ip", "route", "add", "default", "via", "203.0.113.129");
      await lab.exec("relay", ["ip", "route", "add", "203.0.113.128/25", "via", LAB_ADDR.server], {
        check: true,
      });
      const SINK = `${FIXTURES}tcp_sink.py`;
      sink = lab.spawn("server", "far-sink", [
        "ip",
        "netns",
        "exec",
        far,
        "python3",
        SINK,
        "server",
        FAR,
        String(port),
      ]);
      await waitForListen(far, "tcp", port);
      const krelay = await startKrelay(lab, [
        "--real-ip",
        FAR,
        "--relay-ip",
        R,
        "--tcp-ports",
        String(port),
      ]);
      const r = await lab.exec("client", ["python3", SINK, "client", R, String(port), "2000000"], {
        timeoutMs: 30_000,
      });
      assert(r.success, r.stderr);
      const out = JSON.parse(r.stdout);
      assertEquals(out.answer, out.sent);
      // The relay's route to the server learned the narrower path.
      const cached = await lab.exec("relay", ["ip", "route", "get", FAR], {
        check: true,
      });
      assert(/mtu 1280/.test(cached.stdout), cached.stdout);
      assertEquals(await krelay.stop(), 0);
    } finally {
      await sink?.stop();
      await run(["ip", "netns", "del", far]);
    }
  },
);

labTest(
  "TCP: a large download through a 1,280-byte MTU on the server's side (its MSS)",
  [...NEEDS, "nginx", "curl"],
  async (lab) => {
    const { srv1 } = await startServers(lab);
    const file = await srv1.web.ensureFile("big.bin", 8 * 1024 * 1024);
    await narrowServerSide(lab);
    const krelay = await startKrelay(lab, LAB_FLAGS);
    await assertDownload(lab, `http://${R}${file.urlPath}`, file.sha256, 60);
    assertEquals(await krelay.stop(), 0);
  },
);

/** Where clients' SYNs go now, from `krelay status`. */
async function synStatus(k: KrelayRun): Promise<SynReport> {
  const r = await run([KRELAY, "status", "--json", "--socket", k.socket], { timeoutMs: 30_000 });
  assert(r.success, r.stderr);
  return (JSON.parse(r.stdout) as { syn: SynReport }).syn;
}

/** Waits until the SYN gate holds exactly `ports` (tcp_hold_syn auto). */
async function heldBecomes(k: KrelayRun, ports: number[], timeoutMs = 10_000): Promise<void> {
  await waitFor(
    async () => JSON.stringify((await synStatus(k)).heldPorts) === JSON.stringify(ports),
    { timeoutMs, intervalMs: 100, what: `SYNs held for [${ports}]` },
  );
}

/** The relay's rules that queue clients' SYNs, as `iptables -S` shows them. */
async function synRules(lab: Lab): Promise<string[]> {
  const r = await lab.exec("relay", ["iptables", "-w", "-t", "mangle", "-S"], { check: true });
  return r.stdout.split("\n").filter((l) => l.startsWith("-A KRELAY_SYN"));
}

/** Waits until the steering has `count` rules queueing SYNs (it follows the status). */
async function synRulesBecome(lab: Lab, count: number): Promise<void> {
  await waitFor(async () => (await synRules(lab)).length === count, {
    timeoutMs: 5_000,
    intervalMs: 100,
    what: `${count} KRELAY_SYN rules`,
  });
}

/**
 * A TCP service in family `f` whose server refuses (81), drops SYNs (82), says host (IPv6:
 * address) unreachable (83) or answers (80): the client sees what it would see talking to the
 * server itself (over IPv6: issue 31). `auto`: with tcp_hold_syn auto (the default), after one
 * connection to the service has failed.
 */
async function tcpServerDown(
  lab: Lab,
  f: LabFamily,
  opts: { auto?: boolean; extraFlags?: string[] } = {},
): Promise<void> {
  const { auto = false, extraFlags = [] } = opts;
  const v6 = f.name === "IPv6";
  await startServers(lab);
  // 81: nothing listens. 82: the server drops SYNs. 83: the server says host unreachable.
  const drop = ["-A", "INPUT", "-p", "tcp", "--dport"];
  await lab.exec("server", [f.iptables, ...drop, "82", "-j", "DROP"], { check: true });
  await lab.exec("server", [
    f.iptables,
    ...drop,
    "83",
    "-j",
    "REJECT",
    "--reject-with",
    v6 ? "icmp6-addr-unreachable" : "icmp-host-unreachable",
  ], { check: true });
  // An IPv6 host (Linux 6.5 on) takes a non-fatal ICMPv6 error in SYN_SENT only after its
  // first retransmission (a second on): the relay's connection and the client wait longer.
  const krelay = await startKrelay(lab, [
    ...f.flags,
    "--tcp-ports",
    "80,81,82,83",
    "--tcp-connect-timeout",
    v6 ? "2" : "1",
    ...(auto ? [] : ["--tcp-hold-syn"]),
    ...extraFlags,
  ]);
  const connect = async (port: number) => {
    const r = await lab.exec("client", [
      "python3",
      "-c",
      [
        "import json, socket, time",
        "t = time.monotonic()",
        "try:",
        `    socket.create_connection(('${f.relay}', ${port}), timeout=${v6 ? 5 : 3}).close()`,
        "    out = 'connected'",
        "except socket.timeout:",
        "    out = 'timeout'",
        "except OSError as e:",
        "    out = type(e).__name__ if type(e) is not OSError else f'errno {e.errno}'",
        "print(json.dumps({'out': out, 'ms': (time.monotonic() - t) * 1000}))",
      ].join("\n"),
    ], { timeoutMs: 15_000 });
    assert(r.success, r.stderr);
    return JSON.parse(r.stdout) as { out: string; ms: number };
  };
  // auto: the relay accepts the first connection, its server fails it (the client is reset),
  // and from then on the service's SYNs are held.
  const held: number[] = [];
  const firstFailure = async (port: number) => {
    if (!auto) return;
    await connect(port);
    held.push(port);
    await heldBecomes(krelay, held.toSorted((a, b) => a - b));
  };
  if (auto) assertEquals((await synStatus(krelay)).heldPorts, []);
  if (v6 && !auto) {
    // The gate holds IPv6 clients' SYNs: queued by ip6tables, beside IPv4's KRELAY_SYN.
    const rules = await lab.exec("relay", ["ip6tables", "-w", "-t", "mangle", "-S"], {
      check: true,
    });
    assert(
      /-d 2001:db8:1::1\/128 -p tcp .*--tcp-flags FIN,SYN,RST,ACK SYN .*--dports 80,81,82,83 .*NFQUEUE/
        .test(rules.stdout),
      rules.stdout,
    );
  }
  await firstFailure(81);
  const refused = await connect(81);
  assertEquals(refused.out, "ConnectionRefusedError");
  assert(refused.ms < 1000, `refused after ${refused.ms} ms`);
  // dig says so at once too, instead of waiting out its timeout.
  if (!v6) await assertDigRefused(lab, R, ["lab.example"], 2_500, 7002);
  // curl tells "server down" (7: could not connect) from "request aborted" (56).
  const down = await curl(lab, [...f.curl, `http://${f.relayHost}:81/`], 5_000);
  assertEquals(down.code, 7, down.stderr);
  // No route to host (EHOSTUNREACH), as from the server's own network.
  await firstFailure(83);
  assertEquals((await connect(83)).out, "errno 113");
  // Silent: the client's own SYNs go unanswered until its timeout, as they would directly.
  await firstFailure(82);
  assertEquals((await connect(82)).out, "timeout");
  // And an answering server is reached as ever.
  assertEquals((await connect(80)).out, "connected");
  const web = await curl(lab, [...f.curl, `http://${f.relayHost}/`], 5_000);
  assertEquals(web.code, 0, web.stderr);
  assertEquals(await krelay.stop(), 0);
  const syn = (await krelay.finalRecord()).properties?.syn as Record<string, number>;
  // Over IPv6, the relay's connection, and the client's, see a second ICMPv6 error (above).
  if (v6) assert(syn.refused === 2 && syn.unreachable >= 1, JSON.stringify(syn));
  else assertEquals([syn.refused, syn.unreachable], [2, 1]);
  // auto never holds the answering service's SYNs.
  assert((auto || syn.accepted >= 2) && syn.unanswered >= 1, JSON.stringify(syn));
  // A clean stop leaves no rule queueing SYNs.
  const after = await lab.exec("relay", [f.iptables, "-w", "-t", "mangle", "-S"]);
  assert(!after.stdout.includes("NFQUEUE"), after.stdout);
}

labTest(
  "TCP: a refused connection is refused, an unreachable one unreachable, a silent one times out",
  [...NEEDS, "nginx", "curl"],
  (lab) => tcpServerDown(lab, IPV4),
);

labTest(
  "TCP with a packet script: refused, unreachable and silent servers as without the relay",
  [...NEEDS, "nginx", "curl"],
  (lab) =>
    tcpServerDown(lab, IPV4, {
      extraFlags: [
        "--script",
        new URL("../src/script/_fixtures/accept_all.ts", import.meta.url).pathname,
        "--on",
        "tcp:80,tcp:81,tcp:82,tcp:83",
      ],
    }),
);

labTest(
  "TCP, tcp_hold_syn auto (the default): after one failed connection, refused, unreachable and silent servers look as without the relay",
  [...NEEDS, "nginx", "curl"],
  (lab) => tcpServerDown(lab, IPV4, { auto: true }),
);

labTest(
  "TCP over IPv6, tcp_hold_syn true: refused, unreachable and silent IPv6 servers look as without the relay",
  [...NEEDS, "nginx", "curl", "cmd:ip6tables"],
  (lab) => tcpServerDown(lab, IPV6),
);

labTest(
  "TCP over IPv6, tcp_hold_syn auto: after one failed connection, refused, unreachable and silent IPv6 servers look as without the relay",
  [...NEEDS, "nginx", "curl", "cmd:ip6tables"],
  (lab) => tcpServerDown(lab, IPV6, { auto: true }),
);

labTest(
  "TCP over IPv6: a service with no IPv6 server up is refused by the kernel's ip6 rule; a clean stop leaves none",
  [...NEEDS, "curl", "cmd:ip6tables"],
  async (lab) => {
    const R6 = LAB_ADDR6.relay;
    const port = 81;
    // Nothing listens on 81 on any server. Two IPv6 servers: a lone one is never checked.
    // tcp_hold_syn false: without the kernel's rule the relay would accept the client's
    // connection and reset it (curl 56).
    const k = await startKrelay(lab, [
      "--real-ip",
      `${LAB_ADDR.server},${LAB_ADDR6.server},${LAB_ADDR6.server2}`,
      "--relay-ip",
      `${R},${R6}`,
      ...tcpServiceFlags(port),
      "--no-tcp-hold-syn",
    ]);
    await waitFor(async () => (await synStatus(k)).refusedPorts6?.includes(port) === true, {
      timeoutMs: 15_000,
      what: `tcp/${port} refused for IPv6 clients by the kernel`,
    });
    const divert = await lab.exec("relay", ["nft", "list", "chain", "ip6", "krelay", "divert"]);
    assert(
      /ip6 daddr 2001:db8:1::1 tcp dport 81 .*reject with tcp reset/.test(divert.stdout),
      divert.stdout,
    );
    const connect = await lab.exec("client", [
      "python3",
      "-c",
      `import socket\ntry:\n    socket.create_connection(('${R6}', ${port}), timeout=3)\n` +
      "    print('connected')\nexcept OSError as e:\n    print(type(e).__name__)",
    ], { check: true });
    assertEquals(connect.stdout.trim(), "ConnectionRefusedError");
    const down = await curl(lab, ["-6", `http://[${R6}]:${port}/`], 3_000);
    assertEquals(down.code, 7, down.stderr);
    assertEquals(await k.stop(), 0);
    // Refused by the kernel: the relay never accepted them.
    const tcp = (await k.finalRecord()).properties?.tcp as Record<string, number> | undefined;
    assertEquals(tcp?.total ?? 0, 0, JSON.stringify(tcp));
    const tables = await lab.exec("relay", ["nft", "list", "tables"], { check: true });
    assert(!tables.stdout.includes("krelay"), tables.stdout);
  },
  { secondServer: true },
);

labTest(
  "TCP, tcp_hold_syn auto: a server that stops listening is refused from its first failure on, established connections go on, and the service returns to the fast path",
  [...NEEDS, "curl"],
  async (lab) => {
    const port = 81;
    const server = lab.spawn("server", "refusing", [
      "python3",
      `${FIXTURES}refusing_server.py`,
      LAB_ADDR.server,
      String(port),
    ]);
    await lab.waitForListen("server", "tcp", port);
    const k = await startKrelay(lab, [
      ...LAB_FLAGS,
      "--tcp-ports",
      String(port),
      "--health-interval",
      "1",
    ]);
    const get = async () => {
      const t = performance.now();
      const r = await curl(lab, [`http://${R}:${port}/`], 5_000);
      return { code: r.code, ms: performance.now() - t, body: r.stdout, why: r.stderr };
    };
    // The fast path: no SYN is queued.
    assertEquals((await get()).body, "ok");
    assertEquals((await synStatus(k)).heldPorts, []);
    assertEquals(await synRules(lab), []);
    // A connection that will outlive the server's refusal.
    const long = await startLongClient(lab, R, port);

    signalGroup(server.pid, "SIGUSR1");
    await waitForLine(server.logPath, /^closed/, { timeoutMs: 5_000 });
    // The first connection after the server went away: accepted and reset (56), or already
    // refused (7) if the relay's failure came first.
    const first = await get();
    assert(first.code === 56 || first.code === 7, `curl ${first.code}: ${first.why}`);
    await heldBecomes(k, [port], 5_000);
    await synRulesBecome(lab, 1);
    for (let i = 0; i < 3; i++) {
      const refused = await get();
      assertEquals(refused.code, 7, refused.why);
      assert(refused.ms < 1_000, `refused after ${refused.ms} ms`);
    }
    // The connection established before goes on.
    await long.assertSecond();

    // Back: connections succeed, and after health_rise of them and health_interval the
    // service takes the fast path again.
    signalGroup(server.pid, "SIGUSR2");
    await waitFor(async () => /listening\n.*closed\n.*listening/s.test(await server.readLog()), {
      timeoutMs: 5_000,
      what: "the server listening again",
    });
    for (let i = 0; i < 3; i++) assertEquals((await get()).body, "ok");
    await heldBecomes(k, [], 10_000);
    await synRulesBecome(lab, 0);
    assertEquals((await get()).body, "ok");
    assertEquals(await k.stop(), 0);
    const syn = (await k.finalRecord()).properties?.syn as Record<string, number>;
    assert(syn.refused >= 3 && syn.accepted >= 2, JSON.stringify(syn));
  },
);
