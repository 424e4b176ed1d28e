/**
 * End to end, as root: the edges of a TCP connection on every path a connection can take
 * through krelay: BPF sk_lookup (the default), TPROXY (where BPF is refused: krelay without
 * CAP_BPF and CAP_SYS_ADMIN), a service with a packet script (its segments through the queue),
 * and the SYN gate (`tcp_hold_syn`). On each: half-close both ways, a reset from either side
 * passed on, the idle timeout. And one gigabyte through one connection, compared by hash.
 * (krelay.ko's datapath is run in the VM: tests/kmod_e2e_vm_test.ts.)
 */

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { LAB_FLAGS, startKrelay } from "./support/krelay.ts";
import { labTest, type Requirement } from "./support/requirements.ts";
import { checkEdges, EDGES_PORT, edgesClient, startEdgesPeer } from "./support/tcp_edges.ts";

const NEEDS: Requirement[] = ["iptables", "nft", "libnetfilter_queue", "cmd:python3"];
const IDLE_S = 3;

const FLAGS = [
  ...LAB_FLAGS,
  "--tcp-ports",
  String(EDGES_PORT),
  "--tcp-idle-timeout",
  String(IDLE_S),
];

labTest("sk_lookup path: half-close, resets both ways and the idle timeout", NEEDS, async (lab) => {
  const peer = await startEdgesPeer(lab);
  const krelay = await startKrelay(lab, FLAGS);
  const log = (await krelay.records()).map((r) => r.message).join("\n");
  assert(/by sk_lookup/.test(log), "the connections went by sk_lookup");
  await checkEdges(lab, peer, IDLE_S);
  assertEquals(await krelay.stop(), 0);
  await peer.stop();
});

labTest(
  "TPROXY path (no CAP_BPF): half-close, resets both ways and the idle timeout",
  [...NEEDS, "cmd:setpriv"],
  async (lab) => {
    const peer = await startEdgesPeer(lab);
    // A container without CAP_BPF or CAP_SYS_ADMIN: the sk_lookup program cannot be loaded.
    const noBpf = ["setpriv", "--bounding-set", "-bpf,-sys_admin,-perfmon", "--"];
    const krelay = await startKrelay(lab, FLAGS, "krelay", noBpf);
    const log = (await krelay.records()).map((r) => r.message).join("\n");
    assert(/diverted by TPROXY/.test(log), `TPROXY diverts:\n${log}`);
    await checkEdges(lab, peer, IDLE_S);
    assertEquals(await krelay.stop(), 0);
    await peer.stop();
  },
);

labTest(
  "a service with a packet script: half-close, resets both ways and the idle timeout",
  NEEDS,
  async (lab) => {
    const peer = await startEdgesPeer(lab);
    const script = `${lab.runDir}/pass.ts`;
    await Deno.writeTextFile(
      script,
      `let n = 0;\nexport function target(): "accept" { n++; return "accept"; }\n`,
    );
    const krelay = await startKrelay(lab, [...FLAGS, "--script", script]);
    await checkEdges(lab, peer, IDLE_S);
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
    const peer = await startEdgesPeer(lab);
    const krelay = await startKrelay(lab, [...FLAGS, "--tcp-hold-syn", "true"]);
    await checkEdges(lab, peer, IDLE_S);
    assertEquals(await krelay.stop(), 0);
    await peer.stop();
  },
);

labTest(
  "one gigabyte through one relayed connection has the server's sha256",
  NEEDS,
  async (lab) => {
    const peer = await startEdgesPeer(lab);
    const krelay = await startKrelay(lab, FLAGS);
    const bulk = await edgesClient(lab, "bulk", "1024");
    assertEquals(bulk.length, 1024 * (1 << 20));
    assertEquals(bulk.sha256, bulk.expected_sha256);
    assertEquals(await krelay.stop(), 0);
    await peer.stop();
  },
  { timeoutMs: 240_000 },
);
