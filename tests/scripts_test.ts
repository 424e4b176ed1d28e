/**
 * End to end, as root: packet scripts in a running `krelay run` in the lab, with real dig and
 * curl through the relay: the examples (DNS blocklist, rate limiter, packet logger), failures
 * (a throwing script, a runaway one, a script that does not type-check), the sandbox, and
 * `krelay script load|unload|list` at runtime.
 */

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { LAB_ADDR, LAB_IF } from "../src/lab/addresses.ts";
import { run } from "../src/lab/process.ts";
import { startServers } from "../src/lab/servers.ts";
import type { Lab } from "../src/lab/topology.ts";
import { waitFor } from "../src/lab/wait.ts";
import type { ScriptInfo } from "../src/script/host.ts";
import { ATTEMPTS, isDenied, probeScript } from "../src/script/_fixtures/sandbox_probe.ts";
import { KRELAY, krelayRules, type KrelayRun, LAB_FLAGS, startKrelay } from "./support/krelay.ts";
import { labTest, type Requirement } from "./support/requirements.ts";

const NEEDS: Requirement[] = ["iptables", "dnsmasq", "dig", "libnetfilter_queue"];
const R = LAB_ADDR.relay;
const root = (path: string) => new URL(`../${path}`, import.meta.url).pathname;
const EXAMPLES = {
  blocklist: root("examples/dns_blocklist.ts"),
  rateLimiter: root("examples/rate_limiter.ts"),
  logger: root("examples/packet_logger.ts"),
};
const fixture = (name: string) => root(`src/script/_fixtures/${name}.ts`);

/** dig through the relay: one try, so that a dropped query shows as a timeout. */
function dig(lab: Lab, name = "lab.example", extra: string[] = []) {
  return lab.exec("client", ["dig", "+time=1", "+tries=1", `@${R}`, ...extra, name, "A"], {
    timeoutMs: 10_000,
  });
}

/** The answer's address, "" when there is none, or "timeout". */
async function answer(lab: Lab, name = "lab.example", extra: string[] = []): Promise<string> {
  const r = await dig(lab, name, ["+short", ...extra]);
  if (r.stdout.includes("timed out")) return "timeout";
  return r.stdout.trim();
}

/** Runs `krelay ARGS --socket ...` from the root namespace (the socket is a file). */
function krelay(k: KrelayRun, ...args: string[]) {
  return run([KRELAY, ...args, "--socket", k.socket], { timeoutMs: 90_000 });
}

async function scripts(k: KrelayRun): Promise<ScriptInfo[]> {
  const r = await krelay(k, "script", "list", "--json");
  if (!r.success) throw new Error(`krelay script list: ${r.stderr}`);
  return JSON.parse(r.stdout) as ScriptInfo[];
}

/** The script's console lines in krelay's JSON log. */
async function scriptLines(k: KrelayRun, name: string): Promise<string[]> {
  return (await k.records())
    .filter((r) => r.properties?.script === name && typeof r.properties?.line === "string")
    .map((r) => r.properties!.line as string);
}

/** A script of the test's own in the lab's run directory. */
async function writeScript(lab: Lab, name: string, text: string): Promise<string> {
  const file = `${lab.runDir}/${name}.ts`;
  await Deno.writeTextFile(file, text);
  return file;
}

labTest(
  "dns blocklist: a listed name gets NXDOMAIN from the relay, the others resolve",
  NEEDS,
  async (lab) => {
    const { srv1 } = await startServers(lab);
    // The answer leaves by the interface the query came in on, with the relay's own source:
    // the lab's rp_filter=0 lets it through on this kernel; accept_local makes sure on others.
    await lab.exec(
      "relay",
      ["sysctl", "-qw", `net.ipv4.conf.${LAB_IF.relayClient}.accept_local=1`],
      {
        check: true,
      },
    );
    const k = await startKrelay(lab, [
      ...LAB_FLAGS,
      "--script",
      EXAMPLES.blocklist,
      "--on",
      "udp:53",
    ]);
    const blocked = await dig(lab, "blocked.lab.example");
    assert(blocked.stdout.includes("status: NXDOMAIN"), blocked.stdout);
    assert(blocked.stdout.includes(`SERVER: ${R}#53`), blocked.stdout);
    const under = await dig(lab, "www.blocked.lab.example");
    assert(under.stdout.includes("status: NXDOMAIN"), under.stdout);
    assertEquals(await answer(lab, "lab.example"), LAB_ADDR.dnsAnswer);
    assertEquals(await answer(lab, "other.lab.example"), LAB_ADDR.dnsAnswer);
    const names = (await srv1.dns.queries()).map((q) => q.name);
    assert(!names.some((n) => n.includes("blocked")), `the server saw ${names.join(", ")}`);
    const [info] = await scripts(k);
    assertEquals([info.name, info.services, info.state], ["dns_blocklist", "udp:53", "enabled"]);
    assertEquals([info.matched, info.verdicts.changed, info.errors], [2, 2, 0]);
    const lines = await scriptLines(k, "dns_blocklist");
    assert(lines.some((l) => l.startsWith("blocked blocked.lab.example")), lines.join("\n"));
    assertEquals(await k.stop(), 0);
  },
);

labTest(
  "rate limiter: each client gets its burst of queries answered, then is dropped",
  NEEDS,
  async (lab) => {
    await startServers(lab);
    // The example's limiter with test numbers: 3 at once, then one per 100 s.
    const file = await writeScript(
      lab,
      "limit3",
      `import { rateLimiter } from "${EXAMPLES.rateLimiter}";\n` +
        `export const match = rateLimiter({ burst: 3, perSecond: 0.01 });\n`,
    );
    const k = await startKrelay(lab, [...LAB_FLAGS, "--script", file]);
    const first: string[] = [];
    for (let i = 0; i < 5; i++) first.push(await answer(lab));
    assertEquals(first, [...Array(3).fill(LAB_ADDR.dnsAnswer), "timeout", "timeout"]);
    // Another client has a bucket of its own.
    const other = await answer(lab, "lab.example", ["-b", LAB_ADDR.client2]);
    assertEquals(other, LAB_ADDR.dnsAnswer);
    const [info] = await scripts(k);
    assertEquals(info.services, "udp:53,tcp:80", "by default every configured service");
    assertEquals([info.verdicts.dropped, info.errors], [2, 0]);
    assertEquals(await k.stop(), 0);
    const c = await k.finalCounters();
    assertEquals([c.udpRequests, c.udpReplies], [4, 4], "dropped queries never reached NAT");
  },
);

labTest(
  "packet logger: a line per packet in krelay's log, for DNS and HTTP, both hooks",
  [...NEEDS, "nginx", "curl"],
  async (lab) => {
    await startServers(lab);
    const k = await startKrelay(lab, [
      ...LAB_FLAGS,
      "--script",
      EXAMPLES.logger,
      "--on",
      "udp:53,tcp:80",
    ]);
    assertEquals(await answer(lab), LAB_ADDR.dnsAnswer);
    const page = await lab.exec("client", ["curl", "-sS", "--max-time", "5", `http://${R}/`], {
      timeoutMs: 10_000,
    });
    assert(page.success, page.stderr);
    let lines: string[] = [];
    let info: ScriptInfo | undefined;
    // The connection's last ACK may still be on its way when the FIN's line is there: wait until
    // the script's packet count and its lines agree (a line per packet, once traffic is over).
    await waitFor(async () => {
      [info] = await scripts(k);
      lines = await scriptLines(k, "packet_logger");
      return lines.some((l) => l.startsWith("reply tcp") && l.includes("[ACK,FIN]")) &&
        info.packets === lines.length;
    }, { timeoutMs: 5_000, what: "a logger's line for each packet the script saw" });
    const c = LAB_ADDR.client;
    const has = (re: RegExp) =>
      assert(lines.some((l) => re.test(l)), `${re}:\n${lines.join("\n")}`);
    has(new RegExp(`^request udp ${c}:\\d+ -> ${R}:53 \\(server ${LAB_ADDR.server}:53\\)`));
    has(new RegExp(`^reply udp ${R}:53 -> ${c}:\\d+ `));
    has(new RegExp(`^request tcp ${c}:\\d+ -> ${R}:80 .*\\[SYN\\]`));
    has(new RegExp(`^reply tcp ${R}:80 -> ${c}:\\d+ .*\\[SYN,ACK\\]`));
    assertEquals(info?.verdicts.accepted, lines.length);
    assertEquals(await k.stop(), 0);
  },
);

labTest(
  "a script loaded at run time takes its service through the queue; unloaded, the kernel carries it again",
  NEEDS,
  async (lab) => {
    await startServers(lab);
    const k = await startKrelay(lab, LAB_FLAGS);
    const queued = async () => (await krelayRules(lab)).filter((r) => /--dports 53 /.test(r));
    // Without a script, only first packets are queued: no rule for the service's packets.
    assertEquals(await queued(), []);
    assertEquals(await answer(lab), LAB_ADDR.dnsAnswer);
    const load = await krelay(k, "script", "load", "logger", EXAMPLES.logger, "--on", "udp:53");
    assertEquals(load.code, 0, load.stderr);
    assertEquals((await queued()).length, 1);
    // Each query and its answer cross the script (request and reply hooks).
    for (let i = 0; i < 3; i++) assertEquals(await answer(lab), LAB_ADDR.dnsAnswer);
    const [info] = await scripts(k);
    assertEquals(info.packets, 6);
    const unload = await krelay(k, "script", "unload", "logger");
    assertEquals(unload.code, 0, unload.stderr);
    assertEquals(await queued(), []);
    assertEquals(await answer(lab), LAB_ADDR.dnsAnswer);
    assertEquals(await scripts(k), []);
    assertEquals(await k.stop(), 0);
  },
);

/**
 * Python, in the client: DNS queries for lab.example from one port (argv[2]) to argv[1]:53, one
 * every 5 ms or so, each waited for up to 1 s, until a line on stdin (or 60 s); prints
 * "sent N answered M".
 */
const QUERY_LOOP = `
import select, socket, struct, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("", int(sys.argv[2])))
sent = answered = 0
end = time.time() + 60
while time.time() < end and not select.select([sys.stdin], [], [], 0.005)[0]:
    qid = sent & 0xFFFF
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + b"\\x03lab\\x07example\\x00\\x00\\x01\\x00\\x01"
    s.sendto(q, (sys.argv[1], 53))
    sent += 1
    s.settimeout(1)
    try:
        while True:
            data, peer = s.recvfrom(4096)
            if data[:2] == struct.pack(">H", qid) and peer == (sys.argv[1], 53):
                answered += 1
                break
    except socket.timeout:
        pass
print("sent %d answered %d" % (sent, answered), flush=True)
`;

labTest(
  "a script loaded and unloaded under traffic: the flow moves to the queue and back, no query lost",
  NEEDS,
  async (lab) => {
    await startServers(lab);
    const k = await startKrelay(lab, LAB_FLAGS);
    const client = new Deno.Command("ip", {
      args: ["netns", "exec", lab.ns.client, "python3", "-c", QUERY_LOOP, LAB_ADDR.relay, "5399"],
      stdin: "piped",
      stdout: "piped",
    }).spawn();
    try {
      // The flow is the kernel's once its first query is answered.
      await new Promise((r) => setTimeout(r, 1_000));
      const load = await krelay(k, "script", "load", "logger", EXAMPLES.logger, "--on", "udp:53");
      assertEquals(load.code, 0, load.stderr);
      await waitFor(async () => (await scripts(k))[0]?.packets > 20, {
        timeoutMs: 10_000,
        what: "the script to see the flow's packets",
      });
      const unload = await krelay(k, "script", "unload", "logger");
      assertEquals(unload.code, 0, unload.stderr);
      await new Promise((r) => setTimeout(r, 1_000));
    } finally {
      const stop = client.stdin.getWriter();
      await stop.write(new TextEncoder().encode("stop\n")).catch(() => {});
      await stop.close().catch(() => {});
    }
    const out = new TextDecoder().decode((await client.output()).stdout).trim();
    const [, sent, answered] = /sent (\d+) answered (\d+)/.exec(out) ?? [];
    assert(Number(sent) > 50, out);
    assertEquals(answered, sent, out);
    assertEquals(await k.stop(), 0);
  },
);

labTest(
  "a throwing script fails open: the query is answered, the error counted and logged",
  NEEDS,
  async (lab) => {
    await startServers(lab);
    const k = await startKrelay(lab, [...LAB_FLAGS, "--script", fixture("throws")]);
    // The fixture throws on packets from port 6666.
    assertEquals(
      await answer(lab, "lab.example", ["-b", `${LAB_ADDR.client}#6666`]),
      LAB_ADDR.dnsAnswer,
    );
    assertEquals(await answer(lab), LAB_ADDR.dnsAnswer);
    const [info] = await scripts(k);
    assertEquals([info.errors, info.verdicts.default, info.state], [1, 1, "enabled"]);
    const logged = (await k.records()).find((r) =>
      r.level === "ERROR" && r.properties?.script === "throws"
    );
    assert(String(logged?.properties?.error).includes("boom from the fixture"));
    assertEquals(await k.stop(), 0);
  },
);

labTest(
  "a runaway script is stopped after its budget, then disabled; the relay keeps relaying",
  NEEDS,
  async (lab) => {
    await startServers(lab);
    const k = await startKrelay(lab, [
      ...LAB_FLAGS,
      "--script",
      fixture("runaway"),
      "--script-budget-ms",
      "100",
      "--script-max-errors",
      "2",
    ]);
    // The fixture loops forever on packets from port 7777.
    const loop = ["-b", `${LAB_ADDR.client}#7777`];
    assertEquals(await answer(lab, "lab.example", loop), LAB_ADDR.dnsAnswer);
    let info = (await scripts(k))[0];
    assertEquals([info.timeouts, info.errors, info.state], [1, 1, "enabled"]);
    await waitFor(async () => (await scripts(k))[0].restarts === 1, {
      timeoutMs: 10_000,
      what: "the worker's restart",
    });
    assertEquals(await answer(lab), LAB_ADDR.dnsAnswer);
    assertEquals(await answer(lab, "lab.example", loop), LAB_ADDR.dnsAnswer);
    info = (await scripts(k))[0];
    assertEquals([info.timeouts, info.state], [2, "disabled"]);
    for (let i = 0; i < 3; i++) assertEquals(await answer(lab), LAB_ADDR.dnsAnswer);
    const r = await krelay(k, "script", "list");
    assert(r.stdout.includes("runaway: disabled (2 errors within 60 s)"), r.stdout);
    assertEquals(await k.stop(), 0);
  },
);

const BAD_SCRIPT = (api: string) =>
  `import type { Packet } from "${api}";\n` +
  `export function target(packet: Packet): number {\n  return packet.ttl;\n}\n`;

labTest(
  "a script that does not type-check is refused with the compiler's message, nothing changes",
  NEEDS,
  async (lab) => {
    await startServers(lab);
    const bad = await writeScript(lab, "bad", BAD_SCRIPT(root("src/script/api.ts")));
    const refused = await lab.exec("relay", [KRELAY, "run", ...LAB_FLAGS, "--script", bad], {
      timeoutMs: 60_000,
    });
    assertEquals(refused.code, 2, refused.stderr);
    assert(refused.stderr.includes(`script ${bad} refused, nothing changed`), refused.stderr);
    assert(refused.stderr.includes("TS2322"), refused.stderr);
    assertEquals(await krelayRules(lab), []);
    // At runtime: refused, and the script already loaded stays.
    const k = await startKrelay(lab, [...LAB_FLAGS, "--script", EXAMPLES.logger]);
    const load = await krelay(k, "script", "load", "packet_logger", bad);
    assertEquals(load.code, 1, load.stdout);
    assert(load.stderr.includes("TS2322"), load.stderr);
    const list = await scripts(k);
    assertEquals(list.map((s) => [s.name, s.file]), [["packet_logger", EXAMPLES.logger]]);
    assertEquals(await answer(lab), LAB_ADDR.dnsAnswer);
    assertEquals((await scripts(k))[0].packets, 2);
    assertEquals(await k.stop(), 0);
  },
);

labTest(
  "script load, list, reload under the same name without losing a query, and unload",
  NEEDS,
  async (lab) => {
    await startServers(lab);
    const k = await startKrelay(lab);
    assertEquals((await krelay(k, "script", "list")).stdout.trim(), "no scripts loaded");
    const load = await krelay(k, "script", "load", "s", EXAMPLES.logger, "--on", "udp:53");
    assertEquals(load.code, 0, load.stderr);
    assertEquals(load.stdout.trim(), `script s loaded from ${EXAMPLES.logger} on udp:53`);
    assertEquals(await answer(lab), LAB_ADDR.dnsAnswer);
    let [info] = await scripts(k);
    assertEquals([info.name, info.packets, info.verdicts.accepted], ["s", 2, 2]);
    // Rounds of 100 queries, one try each, until the script has been replaced (its check
    // takes a while), and one round after.
    let reloaded: Awaited<ReturnType<typeof krelay>> | undefined;
    const reload = krelay(k, "script", "load", "s", fixture("accept_all"), "--on", "udp:53")
      .then((r) => (reloaded = r));
    const batch = `${lab.runDir}/queries.txt`;
    await Deno.writeTextFile(batch, "lab.example A\n".repeat(100));
    let sent = 0;
    let answered = 0;
    for (let round = 0; round < 300; round++) {
      const last = reloaded !== undefined;
      const r = await lab.exec("client", [
        "dig",
        "+time=2",
        "+tries=1",
        "+short",
        `@${R}`,
        "-f",
        batch,
      ], { timeoutMs: 60_000 });
      sent += 100;
      answered += r.stdout.split("\n").filter((l) => l === LAB_ADDR.dnsAnswer).length;
      if (last) break;
    }
    await reload;
    assertEquals(reloaded?.code, 0, String(reloaded?.stderr));
    assert(sent >= 200, "queries before and after the swap");
    assertEquals(answered, sent);
    [info] = await scripts(k);
    assertEquals([info.name, info.file], ["s", fixture("accept_all")]);
    // The new script decided the last round (a request and a reply per query), at least.
    assert(info.packets >= 200 && info.packets < 2 * sent, `${info.packets} packets`);
    const replaced = (await k.records()).some((r) =>
      r.properties?.script === "s" && r.properties?.what === "reloaded"
    );
    assert(replaced, "reload logged");
    const unload = await krelay(k, "script", "unload", "s");
    assertEquals([unload.code, unload.stdout.trim()], [0, "script s unloaded"]);
    assertEquals(await scripts(k), []);
    const again = await krelay(k, "script", "unload", "s");
    assertEquals(again.code, 1);
    assert(again.stderr.includes("no script named s"), again.stderr);
    assertEquals(await answer(lab), LAB_ADDR.dnsAnswer);
    assertEquals(await k.stop(), 0);
  },
);

labTest(
  "the sandbox: a script cannot read or write files, connect, listen, run, load FFI, read env " +
    "or start workers",
  [...NEEDS, "curl", "cmd:python3"],
  async (lab) => {
    // The network attempts go to a live HTTP listener on 127.0.0.1 in the relay namespace,
    // started before krelay, so they would succeed with any network permission.
    const [hostname, port] = ["127.0.0.1", 9817];
    const listener = lab.spawn("relay", "listener", [
      "python3",
      "-m",
      "http.server",
      "--bind",
      hostname,
      String(port),
    ]);
    await waitFor(async () => {
      const r = await lab.exec("relay", [
        "curl",
        "-s",
        "-o",
        "/dev/null",
        `http://${hostname}:${port}/`,
      ]);
      return r.success;
    }, { timeoutMs: 10_000, what: "the listener" });
    const file = await writeScript(
      lab,
      "sandbox_probe",
      probeScript({
        hostname,
        port,
        module: new URL(`file://${fixture("accept_all")}`).href,
        file: fixture("accept_all"),
      }),
    );
    const k = await startKrelay(lab, [...LAB_FLAGS, "--script", file]);
    const lines = (await scriptLines(k, "sandbox_probe")).filter((l) => l.startsWith("sandbox "));
    const outcomes = Object.fromEntries(lines.map((l) => {
      const at = l.indexOf(": ");
      const [what, how] = [l.slice("sandbox ".length, at), l.slice(at + 2)];
      return [what, isDenied(how) ? "denied" : how];
    }));
    assertEquals(outcomes, Object.fromEntries(ATTEMPTS.map((a) => [a, "denied"])));
    assertEquals(await k.stop(), 0);
    await listener.stop();
  },
);
