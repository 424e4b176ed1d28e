/**
 * End to end, as root: the edges of a TCP connection on every path a connection can take
 * through krelay: BPF sk_lookup (the default), TPROXY (where BPF is refused: krelay without
 * CAP_BPF and CAP_SYS_ADMIN), a service with a packet script (its segments through the queue),
 * and the SYN gate (`tcp_hold_syn`). On each: half-close both ways, a reset from either side
 * passed on, the idle timeout. And one gigabyte through one connection, compared by hash.
 * (krelay.ko's datapath is run in the VM: tests/kmod_e2e_vm_test.ts.)
 */

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { run } from "../src/lab/process.ts";
import type { Lab } from "../src/lab/topology.ts";
import type { SynReport } from "../src/daemon/reports.ts";
import { KRELAY, type KrelayRun, LAB_FLAGS, startKrelay } from "./support/krelay.ts";
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

/** A path a connection can take, and how the test shows it took it. */
interface Path {
  name: string;
  needs?: Requirement[];
  /** krelay's flags beyond FLAGS (given the lab, for a script in its run directory). */
  flags?: (lab: Lab) => Promise<string[]>;
  /** A command that runs krelay's launcher. */
  wrap?: string[];
  /** Asserts, with krelay running after the edges, that the connections took this path. */
  took: (krelay: KrelayRun, log: string) => Promise<void> | void;
}

const PATHS: Path[] = [
  {
    name: "sk_lookup path",
    took: (_, log) => assert(/by sk_lookup/.test(log), "the connections went by sk_lookup"),
  },
  {
    name: "TPROXY path (no CAP_BPF)",
    needs: ["cmd:setpriv"],
    // A container without CAP_BPF or CAP_SYS_ADMIN: the sk_lookup program cannot be loaded.
    wrap: ["setpriv", "--bounding-set", "-bpf,-sys_admin,-perfmon", "--"],
    took: (_, log) => assert(/diverted by TPROXY/.test(log), `TPROXY diverts:\n${log}`),
  },
  {
    name: "a service with a packet script",
    flags: async (lab) => {
      const script = `${lab.runDir}/pass.ts`;
      await Deno.writeTextFile(script, `export function target(): "accept" { return "accept"; }\n`);
      return ["--script", script];
    },
    took: async (krelay) => {
      const c = (await status(krelay)).packets;
      assert(
        c.tcpSegments > 0,
        `the client's segments went through the queue: ${JSON.stringify(c)}`,
      );
    },
  },
  {
    name: "the SYN gate (tcp_hold_syn)",
    flags: () => Promise.resolve(["--tcp-hold-syn", "true"]),
    took: async (krelay) => {
      const gate = (await status(krelay)).syn.gate;
      assert((gate?.held ?? 0) > 0 && gate?.accepted === gate?.held, JSON.stringify(gate));
    },
  },
];

/** What these tests read of `krelay status --json`. */
async function status(krelay: KrelayRun) {
  const r = await run([KRELAY, "status", "--json", "--socket", krelay.socket], {
    timeoutMs: 30_000,
  });
  if (!r.success) throw new Error(`krelay status: ${r.stderr}`);
  return JSON.parse(r.stdout) as { packets: Record<string, number>; syn: SynReport };
}

for (const path of PATHS) {
  labTest(
    `${path.name}: half-close, resets both ways and the idle timeout`,
    [...NEEDS, ...path.needs ?? []],
    async (lab) => {
      const peer = await startEdgesPeer(lab);
      const more = await path.flags?.(lab) ?? [];
      const krelay = await startKrelay(lab, [...FLAGS, ...more], "krelay", path.wrap);
      await checkEdges(lab, peer, IDLE_S);
      await path.took(krelay, (await krelay.records()).map((r) => r.message).join("\n"));
      assertEquals(await krelay.stop(), 0);
      await peer.stop();
    },
  );
}

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
