/**
 * End to end, as root: the edges of a TCP connection on every path a connection can take
 * through krelay: BPF sk_lookup (the default), TPROXY (where BPF is refused: krelay without
 * CAP_BPF and CAP_SYS_ADMIN), a service with a packet script (its segments through the queue),
 * and the SYN gate (`tcp_hold_syn`). On each: half-close both ways, a reset from either side
 * passed on, the idle timeout. And one gigabyte through one connection, compared by hash.
 * (krelay.ko's datapath is run in the VM: tests/kmod_e2e_vm_test.ts.)
 */

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { LAB_ADDR } from "../src/lab/addresses.ts";
import type { Lab } from "../src/lab/topology.ts";
import { LAB_FLAGS, startKrelay } from "./support/krelay.ts";
import { labTest, type Requirement } from "./support/requirements.ts";

const NEEDS: Requirement[] = ["iptables", "nft", "libnetfilter_queue", "cmd:python3"];
const R = LAB_ADDR.relay;
const PORT = 9000;
const PEER = new URL("./fixtures/tcp_edges.py", import.meta.url).pathname;
const IDLE_S = 3;

/** The edges' server in the server namespace; its records in `results`. */
async function startPeer(lab: Lab): Promise<{ results: string; stop: () => Promise<unknown> }> {
  const results = `${lab.runDir}/tcp_edges.jsonl`;
  const server = lab.spawn("server", "tcp-edges", [
    "python3",
    PEER,
    "server",
    LAB_ADDR.server,
    String(PORT),
    results,
  ]);
  await lab.waitForListen("server", "tcp", PORT);
  return { results, stop: () => server.stop() };
}

/** One case of the fixture's client, through relay:PORT; what the client saw. */
async function client(lab: Lab, kase: string, arg = ""): Promise<Record<string, unknown>> {
  const r = await lab.exec("client", ["python3", PEER, "client", R, String(PORT), kase, arg], {
    timeoutMs: 120_000,
  });
  if (!r.success) throw new Error(`${kase}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").at(-1)!);
}

/** The server's record of the connection with this case and tag, once it has ended. */
async function serverSaw(results: string, kase: string, tag = "") {
  for (let i = 0; i < 100; i++) {
    const text = await Deno.readTextFile(results).catch(() => "");
    const hit = text.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l))
      .find((r) => r.case === kase && r.tag === tag);
    if (hit) return hit;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the server has no record of ${kase} ${tag}`);
}

/** Every edge of a connection, through a krelay already relaying PORT. */
async function edges(lab: Lab, results: string): Promise<void> {
  // The client half-closes: the server still answers after the client's FIN, in full.
  const half = await client(lab, "halfclose");
  assertEquals(half.server_saw, half.expected, "the server read all the client sent");
  assertEquals(half.body_ok, true, "the answer after the client's FIN arrived whole");
  // The server half-closes: the client still sends, and the server reads it all.
  const fin = await client(lab, "serverfin");
  assertEquals(fin.received, 1 << 20);
  assertEquals(fin.after, "eof");
  assertEquals((await serverSaw(results, "serverfin")).sha256, fin.sent_sha256);
  // A reset from the server reaches the client as a reset, not an orderly end.
  assertEquals((await client(lab, "rst")).end, "reset");
  // A reset from the client reaches the server as a reset.
  await client(lab, "clientrst");
  assertEquals((await serverSaw(results, "wait", "clientrst")).end, "reset");
  // A silent connection is ended after the idle timeout, not before, on both sides.
  const idle = await client(lab, "idle", String(IDLE_S));
  assert(idle.end === "eof" || idle.end === "reset", `idle connection: ${JSON.stringify(idle)}`);
  assert((idle.after_s as number) >= IDLE_S - 0.5, `ended before the timeout: ${idle.after_s}`);
  assert((await serverSaw(results, "wait", "idle")).end !== undefined);
}

const FLAGS = [...LAB_FLAGS, "--tcp-ports", String(PORT), "--tcp-idle-timeout", String(IDLE_S)];

labTest("sk_lookup path: half-close, resets both ways and the idle timeout", NEEDS, async (lab) => {
  const peer = await startPeer(lab);
  const krelay = await startKrelay(lab, FLAGS);
  const log = (await krelay.records()).map((r) => r.message).join("\n");
  assert(/by sk_lookup/.test(log), "the connections went by sk_lookup");
  await edges(lab, peer.results);
  assertEquals(await krelay.stop(), 0);
  await peer.stop();
});

labTest(
  "TPROXY path (no CAP_BPF): half-close, resets both ways and the idle timeout",
  [...NEEDS, "cmd:setpriv"],
  async (lab) => {
    const peer = await startPeer(lab);
    // A container without CAP_BPF or CAP_SYS_ADMIN: the sk_lookup program cannot be loaded.
    const noBpf = ["setpriv", "--bounding-set", "-bpf,-sys_admin,-perfmon", "--"];
    const krelay = await startKrelay(lab, FLAGS, "krelay", noBpf);
    const log = (await krelay.records()).map((r) => r.message).join("\n");
    assert(/diverted by TPROXY/.test(log), `TPROXY diverts:\n${log}`);
    await edges(lab, peer.results);
    assertEquals(await krelay.stop(), 0);
    await peer.stop();
  },
);

labTest(
  "a service with a packet script: half-close, resets both ways and the idle timeout",
  NEEDS,
  async (lab) => {
    const peer = await startPeer(lab);
    const script = `${lab.runDir}/pass.ts`;
    await Deno.writeTextFile(
      script,
      `let n = 0;\nexport function target(): "accept" { n++; return "accept"; }\n`,
    );
    const krelay = await startKrelay(lab, [...FLAGS, "--script", script]);
    await edges(lab, peer.results);
    assertEquals(await krelay.stop(), 0);
    const c = await krelay.finalCounters();
    assert(c.tcpSegments > 0, `the client's segments went through the queue: ${JSON.stringify(c)}`);
    await peer.stop();
  },
);

labTest(
  "the SYN gate (tcp_hold_syn): half-close, resets both ways and the idle timeout",
  NEEDS,
  async (lab) => {
    const peer = await startPeer(lab);
    const krelay = await startKrelay(lab, [...FLAGS, "--tcp-hold-syn", "true"]);
    await edges(lab, peer.results);
    assertEquals(await krelay.stop(), 0);
    await peer.stop();
  },
);

labTest(
  "one gigabyte through one relayed connection has the server's sha256",
  NEEDS,
  async (lab) => {
    const peer = await startPeer(lab);
    const krelay = await startKrelay(lab, FLAGS);
    const bulk = await client(lab, "bulk", "1024");
    assertEquals(bulk.length, 1024 * (1 << 20));
    assertEquals(bulk.sha256, bulk.expected_sha256);
    assertEquals(await krelay.stop(), 0);
    await peer.stop();
  },
  { timeoutMs: 240_000 },
);
