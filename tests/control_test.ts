/**
 * End to end, as root: the control plane of a running `krelay run` in the lab, driven through
 * the real commands (`krelay status`, `nat`, `config`, `start`, `stop`) on its control socket,
 * with real dig and curl traffic.
 */

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { LAB_ADDR } from "../src/lab/addresses.ts";
import { run } from "../src/lab/process.ts";
import { startServers } from "../src/lab/servers.ts";
import type { Lab } from "../src/lab/topology.ts";
import { allowedCpus } from "../src/system/cpu_affinity.ts";
import { waitFor } from "../src/lab/wait.ts";
import { METRICS } from "../src/control/metrics.ts";
import type { StatusReport } from "../src/daemon/reports.ts";
import { expectedSeries, parseExposition, sampleKey } from "../src/control/_exposition.ts";
import { KRELAY, krelayRules, type KrelayRun, LAB_FLAGS, startKrelay } from "./support/krelay.ts";
import { labTest, type Requirement } from "./support/requirements.ts";

const NEEDS: Requirement[] = ["iptables", "dnsmasq", "nginx", "dig", "curl", "libnetfilter_queue"];
const R = LAB_ADDR.relay;

/** Runs `krelay ARGS --socket ...` (from the root namespace: the socket is a file). */
async function krelay(k: KrelayRun, ...args: string[]) {
  return await run([KRELAY, ...args, "--socket", k.socket], { timeoutMs: 30_000 });
}

async function json<T>(k: KrelayRun, ...args: string[]): Promise<T> {
  const r = await krelay(k, ...args, "--json");
  if (!r.success) throw new Error(`krelay ${args.join(" ")}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

function dig(lab: Lab, name = "lab.example", type = "A") {
  return lab.exec("client", ["dig", "+time=1", "+tries=1", "+short", `@${R}`, name, type], {
    timeoutMs: 10_000,
  });
}

/** curl from the client; kept to one CPU (`taskset`) when `cpu` is given. */
function curl(lab: Lab, path = "/", cpu?: number) {
  const pin = cpu === undefined ? [] : ["taskset", "-c", String(cpu)];
  return lab.exec("client", [...pin, "curl", "-sS", "--max-time", "5", `http://${R}${path}`], {
    timeoutMs: 10_000,
  });
}

/** Two relay threads. */
const THREADED = [...LAB_FLAGS, "--relay-threads", "2"];

/** `krelay status`'s relay threads, and the process. */
async function threadStatus(k: KrelayRun) {
  return await json<{ pid: number; relayThreads: ThreadView[] }>(k, "status");
}

interface Status {
  state: string;
  packets: Record<string, number>;
  tcp: Record<string, number>;
  nat: Record<string, number>;
}

interface NatRow {
  protocol: string;
  client: string;
  server: string;
  state: string;
}

labTest(
  "status, nat and config get show the running relay; counters match the traffic",
  NEEDS,
  async (lab) => {
    await startServers(lab);
    const k = await startKrelay(lab, LAB_FLAGS);
    for (let i = 0; i < 5; i++) assertEquals((await dig(lab)).stdout.trim(), LAB_ADDR.dnsAnswer);
    for (let i = 0; i < 3; i++) assert((await curl(lab)).success);
    // Relay threads report their counters at most every 200 ms.
    let status = await json<Status>(k, "status");
    await waitFor(async () => (status = await json<Status>(k, "status")).tcp.total === 3, {
      timeoutMs: 5_000,
      what: "status to count the three connections",
    });
    assertEquals(status.state, "started");
    // Each query's first packet went through krelay; the kernel carried the answers.
    const p = status.packets;
    assertEquals([p.udpRequests, p.toKernel, p.udpReplies], [5, 5, 0]);
    assertEquals([status.tcp.total, status.tcp.failed, status.tcp.active], [3, 0, 0]);
    assert(status.tcp.bytesToClient > 0 && status.tcp.bytesToServer > 0);
    const nat = await json<NatRow[]>(k, "nat");
    const udp = nat.filter((e) => e.protocol === "udp");
    const tcp = nat.filter((e) => e.protocol === "tcp");
    assertEquals(udp.length, 5);
    assert(udp.every((e) => e.client.startsWith(`${LAB_ADDR.client}:`)));
    assert(udp.every((e) => e.server === `${LAB_ADDR.server}:53`));
    // TCP connections take no NAT entry; closed ones are gone from the relay's list.
    assertEquals(tcp, []);
    assertEquals(status.nat.entries, 5);
    // The readable forms carry the same facts.
    const table = await krelay(k, "status");
    assert(table.success && table.stdout.includes("started"), table.stdout);
    const get = await krelay(k, "config", "get", "gport");
    assertEquals(get.stdout.trim(), "16000");
    await k.stop();
  },
);

labTest(
  "stop makes dig and curl through the relay fail; start makes them work again",
  NEEDS,
  async (lab) => {
    const { srv1 } = await startServers(lab);
    const k = await startKrelay(lab);
    assert((await krelay(k, "stop")).success);
    assertEquals(await krelayRules(lab), []);
    assertEquals((await json<Status>(k, "status")).state, "stopped");
    assert(!(await dig(lab)).success || (await dig(lab)).stdout.trim() === "", "dig must fail");
    assert(!(await curl(lab)).success, "curl must fail");
    assert((await krelay(k, "start")).success);
    assertEquals((await dig(lab)).stdout.trim(), LAB_ADDR.dnsAnswer);
    assertEquals((await curl(lab)).stdout, srv1.web.indexText);
    await k.stop();
  },
);

labTest("krelay run --stopped relays nothing until krelay start", NEEDS, async (lab) => {
  await startServers(lab);
  const k = await startKrelay(lab, [...LAB_FLAGS, "--stopped"]);
  assertEquals(await krelayRules(lab), []);
  assert(!(await curl(lab)).success);
  assert((await krelay(k, "start")).success);
  assert((await curl(lab)).success);
  await k.stop();
});

/** A download of this size at 1 MB/s outlasts the socket buffers between server and client. */
const SLOW_BYTES = 12 * 1024 * 1024;

/** A slow download through the relay, running in the background. */
function slowDownload(lab: Lab, path: string) {
  const out = `${lab.runDir}/slow.out`;
  const proc = lab.spawn("client", "slow-curl", [
    "bash",
    "-c",
    `curl -sS --max-time 60 --limit-rate 1m http://${R}${path} | sha256sum > ${out}`,
  ]);
  return {
    async sha256(): Promise<string> {
      const status = await proc.status;
      assertEquals(status.code, 0, await proc.logTail());
      return (await Deno.readTextFile(out)).split(" ")[0];
    },
  };
}

labTest(
  "a live real_ip change moves new UDP and TCP flows while an established TCP relay goes on",
  NEEDS,
  async (lab) => {
    const { srv1, srv2 } = await startServers(lab);
    const file = await srv1.web.ensureFile("slow.bin", SLOW_BYTES);
    const k = await startKrelay(lab, LAB_FLAGS);
    assertEquals((await dig(lab, "whoami.lab.example", "TXT")).stdout.trim(), '"srv1"');
    const slow = slowDownload(lab, file.urlPath);
    await waitFor(
      async () =>
        (await json<NatRow[]>(k, "nat")).some((e) =>
          e.protocol === "tcp" && e.state === "established"
        ),
      {
        timeoutMs: 10_000,
        what: "the slow download to be relayed",
      },
    );
    const set = await krelay(k, "config", "set", "real_ip", LAB_ADDR.server2);
    assert(set.success, set.stderr);
    assert(set.stdout.includes(`real_ip: ${LAB_ADDR.server} -> ${LAB_ADDR.server2}`), set.stdout);
    assertEquals((await dig(lab, "whoami.lab.example", "TXT")).stdout.trim(), '"srv2"');
    assertEquals((await curl(lab)).stdout, srv2!.web.indexText);
    assertEquals(await slow.sha256(), file.sha256);
    await k.stop();
  },
  { secondServer: true, timeoutMs: 120_000 },
);

labTest(
  "a gport change rebinds the listener without dropping established relays",
  NEEDS,
  async (lab) => {
    const { srv1 } = await startServers(lab);
    const file = await srv1.web.ensureFile("slow.bin", SLOW_BYTES);
    const k = await startKrelay(lab, LAB_FLAGS);
    const slow = slowDownload(lab, file.urlPath);
    await waitFor(async () => (await json<Status>(k, "status")).tcp.active === 1, {
      timeoutMs: 10_000,
      what: "the slow download to be relayed",
    });
    const set = await krelay(k, "config", "set", "gport", "16001");
    assert(set.success, set.stderr);
    const listening = await run(["ip", "netns", "exec", lab.ns.relay, "ss", "-Htln"]);
    assert(listening.stdout.includes(":16001"), listening.stdout);
    assert(!listening.stdout.includes(":16000"), listening.stdout);
    assertEquals((await curl(lab)).stdout, srv1.web.indexText);
    assertEquals(await slow.sha256(), file.sha256);
    await k.stop();
  },
  { timeoutMs: 120_000 },
);

labTest(
  "relay_threads 2: two listeners share the gateway port, relay, list, follow live changes and count",
  NEEDS,
  async (lab) => {
    const { srv1, srv2 } = await startServers(lab);
    const file = await srv1.web.ensureFile("slow.bin", SLOW_BYTES);
    const k = await startKrelay(lab, THREADED);
    const listeners = async (port: number) =>
      (await run(["ip", "netns", "exec", lab.ns.relay, "ss", "-Htln", `sport = :${port}`]))
        .stdout.split("\n").filter((l) => l.trim() !== "");
    // One listener per relay thread, in the port's SO_REUSEPORT group.
    assertEquals((await listeners(16000)).length, 2);
    for (let i = 0; i < 10; i++) assertEquals((await curl(lab)).stdout, srv1.web.indexText);
    const hit = await srv1.web.waitForRequest((e) => e.request.startsWith("GET / "));
    assertEquals(hit.remoteAddr, LAB_ADDR.client);
    const slow = slowDownload(lab, file.urlPath);
    // The threads' connections are listed, and their counters reach status.
    await waitFor(
      async () =>
        (await json<NatRow[]>(k, "nat")).some((e) =>
          e.protocol === "tcp" && e.state === "established" &&
          e.client.startsWith(`${LAB_ADDR.client}:`) && e.server === `${LAB_ADDR.server}:80`
        ),
      { timeoutMs: 10_000, what: "the slow download to be listed" },
    );
    await waitFor(async () => {
      const tcp = (await json<Status>(k, "status")).tcp;
      return tcp.total === 11 && tcp.active === 1;
    }, { timeoutMs: 5_000, what: "status to count 11 connections, 1 active" });
    // Live changes reach every thread.
    assert((await krelay(k, "config", "set", "real_ip", LAB_ADDR.server2)).success);
    assertEquals((await curl(lab)).stdout, srv2!.web.indexText);
    assert((await krelay(k, "config", "set", "gport", "16001")).success);
    assertEquals([(await listeners(16001)).length, (await listeners(16000)).length], [2, 0]);
    assertEquals((await curl(lab)).stdout, srv2!.web.indexText);
    assertEquals(await slow.sha256(), file.sha256);
    assertEquals(await k.stop(), 0);
    const tcp = (await k.finalRecord()).properties?.tcp as Record<string, number>;
    assertEquals([tcp.total, tcp.failed, tcp.active], [13, 0, 0]);
    assertEquals(await listeners(16001), []);
  },
  { secondServer: true, timeoutMs: 120_000 },
);

interface ThreadView {
  cpu: number | null;
  active: number;
  total: number;
}

/** Each thread of process `pid`: its name, and the CPUs it may run on ("0-1", "1"). */
async function threadCpus(pid: number): Promise<{ name: string; cpus: string }[]> {
  const threads = [];
  for await (const task of Deno.readDir(`/proc/${pid}/task`)) {
    const status = await Deno.readTextFile(`/proc/${pid}/task/${task.name}/status`);
    threads.push({
      name: /^Name:\s*(.*)$/m.exec(status)![1],
      cpus: /^Cpus_allowed_list:\s*(\S+)/m.exec(status)![1],
    });
  }
  return threads;
}

labTest(
  "relay_threads 2: each thread keeps to a CPU and relays the connections whose handshake that CPU handles",
  [...NEEDS, "cmd:taskset", "two-cpus"],
  async (lab) => {
    const { srv1 } = await startServers(lab);
    // Without the SYN gate (the default): a held SYN would go on from the main thread's CPU,
    // where its verdict is sent, and its connection to that CPU's thread.
    const k = await startKrelay(lab, THREADED);
    const status = await threadStatus(k);
    const cpus = allowedCpus().slice(0, 2);
    assertEquals(status.relayThreads.map((t) => t.cpu), cpus);
    // The kernel keeps the two workers to one each (and the runtime's helper threads that a
    // worker starts to itself); the main thread runs on any.
    const threads = await threadCpus(status.pid);
    const workers = threads.filter((t) => t.name.startsWith("worker-")).map((t) => t.cpus);
    assertEquals(workers.sort(), cpus.map(String));
    const main = threads.filter((t) => t.name === "deno").map((t) => t.cpus);
    assert(main.every((c) => c === threads[0].cpus) && !cpus.map(String).includes(main[0]));
    // A client kept to a CPU sends its SYN from there, and the veth hands it on on the same
    // CPU: the connection goes to that CPU's thread, every time.
    const totals = async () => (await threadStatus(k)).relayThreads.map((t) => t.total);
    for (const [i, cpu] of cpus.entries()) {
      for (let n = 0; n < 4; n++) {
        assertEquals((await curl(lab, "/", cpu)).stdout, srv1.web.indexText);
      }
      const want = i === 0 ? [4, 0] : [4, 4];
      await waitFor(async () => JSON.stringify(await totals()) === JSON.stringify(want), {
        timeoutMs: 5_000,
        what: `the threads to count ${want.join(" and ")} connections`,
      }).catch(() => {});
      assertEquals(await totals(), want);
    }
    assertEquals(await k.stop(), 0);
  },
);

labTest(
  "relay_cpu_affinity false: the relay threads run on any CPU",
  [...NEEDS, "two-cpus"],
  async (lab) => {
    const { srv1 } = await startServers(lab);
    const k = await startKrelay(lab, [...THREADED, "--relay-cpu-affinity", "false"]);
    const status = await threadStatus(k);
    assertEquals(status.relayThreads.map((t) => t.cpu), [null, null]);
    const all = new Set((await threadCpus(status.pid)).map((t) => t.cpus));
    assertEquals(all.size, 1, `threads with different CPU sets: ${[...all].join(" ")}`);
    for (let n = 0; n < 4; n++) assertEquals((await curl(lab)).stdout, srv1.web.indexText);
    assertEquals(await k.stop(), 0);
  },
);

/**
 * The warm-ups krelay logged, for each relay that warmed up: [answered, of those closed by the
 * origin first, of those bulk, reset by the client, failed].
 */
async function warmUps(k: KrelayRun): Promise<unknown[][]> {
  return (await k.records()).filter((r) => r.message.startsWith("warmed up with ")).map((r) => [
    r.properties?.answered,
    r.properties?.originClosed,
    r.properties?.bulk,
    r.properties?.reset,
    r.properties?.failed,
  ]);
}

/** krelay's TCP sockets in the relay namespace that are not listening ("ESTAB ...", ...). */
async function openTcpSockets(lab: Lab, pid: number): Promise<string[]> {
  const ss = await run(["ip", "netns", "exec", lab.ns.relay, "ss", "-Htanp"]);
  return ss.stdout.split("\n").filter((l) => l.includes(`pid=${pid},`) && !l.startsWith("LISTEN"));
}

labTest(
  "each relay warms up through loopback before clients come, uncounted, leaving no socket",
  NEEDS,
  async (lab) => {
    const { srv1 } = await startServers(lab);
    const k = await startKrelay(lab, [...THREADED, "--relay-warm-up", "300"]);
    // Every answer read whole, in both FIN orders and through the splice path (one in 16 bulk);
    // one in 32 reset by the client.
    assertEquals(await warmUps(k), [[291, 150, 19, 9, 0], [291, 150, 19, 9, 0]]);
    const status = await threadStatus(k);
    assertEquals(status.relayThreads.map((t) => t.total), [0, 0]);
    assertEquals((await json<Status>(k, "status")).tcp.total, 0);
    assertEquals(await openTcpSockets(lab, status.pid), []);
    assertEquals((await curl(lab)).stdout, srv1.web.indexText);
    await waitFor(async () => (await json<Status>(k, "status")).tcp.total === 1, {
      timeoutMs: 5_000,
      what: "status to count the one client",
    });
    assertEquals(await k.stop(), 0);
    // The main thread's relay (one relay thread) warms up as well; 0 turns the warm-up off.
    const one = await startKrelay(lab, [
      ...LAB_FLAGS,
      "--relay-threads",
      "1",
      "--relay-warm-up",
      "300",
    ]);
    assertEquals(await warmUps(one), [[291, 150, 19, 9, 0]]);
    assertEquals((await json<Status>(one, "status")).tcp.total, 0);
    assertEquals(await one.stop(), 0);
    const off = await startKrelay(lab, [...THREADED, "--relay-warm-up", "0"]);
    assertEquals(await warmUps(off), []);
    assertEquals((await curl(lab)).stdout, srv1.web.indexText);
    assertEquals(await off.stop(), 0);
  },
);

labTest("bad config set values are refused and change nothing", NEEDS, async (lab) => {
  await startServers(lab);
  // Something else holds port 16005 in the relay's namespace.
  const holder = lab.spawn("relay", "holder", ["python3", "-m", "http.server", "16005"]);
  await lab.waitForListen("relay", "tcp", 16005, { timeoutMs: 20_000 });
  const k = await startKrelay(lab);
  for (
    const [key, value, why] of [
      ["gport", "70000", "gport: must be 1-65535"],
      ["gport", "16005", "gateway port 16005 is already in use"],
      ["real_ip", "203.0.113.999", "real_ip: must be an IPv4 or IPv6 address"],
      ["udp_ports", "53,x", "must be a number"],
      ["queue", "3", "queue cannot change while krelay runs"],
    ]
  ) {
    const r = await krelay(k, "config", "set", key, value);
    assertEquals(r.code, 1, `${key}=${value}: ${r.stdout}`);
    assert(r.stderr.includes(why), `${key}=${value}: expected "${why}" in ${r.stderr}`);
  }
  for (
    const [key, value] of [["gport", "16000"], ["real_ip", LAB_ADDR.server], ["udp_ports", "53"]]
  ) {
    assertEquals((await krelay(k, "config", "get", key)).stdout.trim(), value, key);
  }
  assertEquals((await dig(lab)).stdout.trim(), LAB_ADDR.dnsAnswer);
  await k.stop();
  await holder.stop();
});

labTest("the Prometheus endpoint serves the same counters as status", [...NEEDS], async (lab) => {
  await startServers(lab);
  const k = await startKrelay(lab, [...LAB_FLAGS, "--metrics", "127.0.0.1:9816"]);
  for (let i = 0; i < 2; i++) await dig(lab);
  // A scrape between two equal status reports (a stray packet between them: try again).
  const counters = (s: StatusReport) => JSON.stringify({ ...s, uptimeSeconds: 0 });
  let status: StatusReport | undefined;
  let text = "";
  for (let i = 0; i < 5 && status === undefined; i++) {
    const before = await json<StatusReport>(k, "status");
    text = (await lab.exec("relay", ["curl", "-sS", "http://127.0.0.1:9816/metrics"], {
      check: true,
    })).stdout;
    const after = await json<StatusReport>(k, "status");
    if (counters(before) === counters(after)) status = after;
  }
  assert(status !== undefined, "the counters never stood still for a scrape");
  const scrape = parseExposition(text);
  const served = Object.fromEntries(
    scrape.samples.filter((s) => s.name.startsWith("krelay_"))
      .map((s) => [sampleKey(s.name, s.labels), s.value]),
  );
  const expected = expectedSeries(status, METRICS);
  assertEquals(
    Object.fromEntries(Object.keys(expected).map((key) => [key, served[key]])),
    expected,
  );
  assertEquals(served['krelay_packets_rewritten_total{flow="udp_request"}'], 2);
  assertEquals(served.krelay_up, 1);
  assertEquals(served.krelay_start_time_seconds, Date.parse(status.startedAt) / 1000);
  assert(scrape.samples.some((s) => s.name === "process_resident_memory_bytes" && s.value > 0));
  await k.stop();
});
