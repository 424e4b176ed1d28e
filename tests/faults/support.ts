/**
 * What the fault suite shares: the datapath flags every scenario runs with, live traffic kept
 * through the relay while a fault is played ({@link Keeper}), the check that the relay still
 * relays (dig and curl), and the control commands. Every load is bounded in count and time
 * and sent only to the lab's own addresses.
 *
 * @module
 */

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { LAB_ADDR } from "../../src/lab/addresses.ts";
import type { LabProcess } from "../../src/lab/process.ts";
import { run } from "../../src/lab/process.ts";
import type { Lab } from "../../src/lab/topology.ts";
import { waitFor } from "../../src/lab/wait.ts";
import { startServers } from "../../src/lab/servers.ts";
import { KRELAY, type KrelayRun, LAB_FLAGS, startKrelay } from "../support/krelay.ts";
import { LAB_PEERS, type Requirement } from "../support/requirements.ts";

/**
 * The datapath of the scenarios that do not need a packet script: today's default (the NFQUEUE
 * path, no flag). The lead sets it (say `["--kernel-nat", "true"]`) where the default changes;
 * scenarios with scripts use the default datapath whatever this says.
 */
export const MODE_FLAGS: readonly string[] = [];

/** The lab flags and {@link MODE_FLAGS}, then `more`. */
export function faultFlags(...more: string[]): string[] {
  return [...LAB_FLAGS, ...MODE_FLAGS, ...more];
}

/** What every fault scenario needs. */
export const NEEDS: Requirement[] = [...LAB_PEERS, "cmd:python3"];

/** The relay's client-side address. */
export const R = LAB_ADDR.relay;
const DENO = new URL("../../node_modules/deno/deno", import.meta.url).pathname;
const FIXTURES = new URL("./fixtures/", import.meta.url).pathname;

/**
 * A scenario's start: the lab's servers, krelay with `flags` ({@link faultFlags}), and live
 * traffic through it for `seconds` ({@link Keeper}).
 */
export async function startScenario(lab: Lab, flags: string[], seconds: number) {
  const { srv1 } = await startServers(lab);
  const k = await startKrelay(lab, flags);
  const keeper = await Keeper.start(lab, seconds);
  return { srv1, k, keeper };
}

/** Runs `krelay ARGS --socket ...` from the root namespace (the socket is a file). */
export function krelay(k: KrelayRun, ...args: string[]) {
  return run([KRELAY, ...args, "--socket", k.socket], { timeoutMs: 30_000 });
}

/** A control command's --json answer; throws with its stderr when it fails. */
export async function json<T>(k: KrelayRun, ...args: string[]): Promise<T> {
  const r = await krelay(k, ...args, "--json");
  if (!r.success) throw new Error(`krelay ${args.join(" ")}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

/** The fields of `krelay status --json` the suite reads. */
export interface Status {
  state: string;
  engineErrors: number;
  packets: Record<string, number>;
  tcp: Record<string, number>;
  nat: Record<string, number>;
  datapath: Record<string, number>;
  queue?: { queueDropped: number; userDropped: number; idSequence: number; waiting: number };
}

/** `krelay status --json`. */
export function status(k: KrelayRun): Promise<Status> {
  return json<Status>(k, "status");
}

/** One `dig` through the relay, one try: the answer's address, or "" / "timeout". */
export async function dig(lab: Lab, extra: string[] = []): Promise<string> {
  const r = await lab.exec(
    "client",
    ["dig", "+time=2", "+tries=1", "+short", `@${R}`, ...extra, "lab.example", "A"],
    { timeoutMs: 10_000 },
  );
  return r.stdout.includes("timed out") ? "timeout" : r.stdout.trim();
}

/** One `curl` of / through the relay: exit code and body. */
export async function curl(lab: Lab): Promise<{ code: number; body: string }> {
  const r = await lab.exec("client", ["curl", "-sS", "--max-time", "5", `http://${R}/`], {
    timeoutMs: 10_000,
  });
  return { code: r.code, body: r.stdout };
}

/** Asserts that the relay relays DNS and HTTP now, as a client would see it. */
export async function assertRelays(lab: Lab, indexText: string, when: string): Promise<void> {
  assertEquals(await dig(lab), LAB_ADDR.dnsAnswer, `dig through the relay ${when}`);
  const page = await curl(lab);
  assertEquals([page.code, page.body], [0, indexText], `curl through the relay ${when}`);
}

/** Runs a Python fixture (flood.py) in the client namespace; its JSON line. */
export async function python(lab: Lab, args: string[], timeoutMs = 60_000) {
  const r = await lab.exec("client", ["python3", `${FIXTURES}flood.py`, ...args], { timeoutMs });
  if (!r.success) throw new Error(`flood.py ${args.join(" ")} failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").at(-1)!);
}

/** What a {@link Keeper} saw. */
export interface KeeperResult {
  tcp: { ok: number; failed: number; error: string };
  udp: { ok: number; lost: number };
}

/**
 * One TCP connection and one UDP flow kept talking through the relay (fixtures/keeper.ts) for
 * a bounded time, each exchange checked.
 */
export class Keeper {
  private constructor(readonly process: LabProcess) {}

  /** Starts it for `seconds` from UDP port `udpPort`; resolves once both have answers. */
  static async start(lab: Lab, seconds: number, udpPort = 5300): Promise<Keeper> {
    const p = lab.spawn("client", `keeper-${udpPort}`, [
      DENO,
      "run",
      "-A",
      `${FIXTURES}keeper.ts`,
      R,
      String(seconds),
      String(udpPort),
    ]);
    await waitFor(async () => {
      if (!p.running) throw new Error(`the keeper ended early:\n${await p.logTail()}`);
      return (await p.readLog()).includes("ready");
    }, { timeoutMs: 30_000, what: "the keeper's first answers" });
    return new Keeper(p);
  }

  /** Waits for its end and returns what it saw. */
  async result(): Promise<KeeperResult> {
    await this.process.status;
    const last = (await this.process.readLog()).trim().split("\n").at(-1)!;
    return JSON.parse(last) as KeeperResult;
  }

  /**
   * Asserts that nothing it sent was lost: every request answered, the connection kept. With
   * `udpMayLose` (a flood overflowing the queue the live flow shares: the kernel drops some of
   * its datagrams, as a full link would), only most of its queries must be answered.
   */
  async assertNothingLost(what: string, udpMayLose = false): Promise<KeeperResult> {
    const r = await this.result();
    assertEquals(r.tcp.failed, 0, `${what}: the live TCP connection failed (${r.tcp.error})`);
    if (udpMayLose) assert(r.udp.lost * 10 <= r.udp.ok, `${what}: ${JSON.stringify(r.udp)}`);
    else assertEquals(r.udp.lost, 0, `${what}: UDP queries of the live flow were lost`);
    assert(r.tcp.ok > 0 && r.udp.ok > 0, JSON.stringify(r));
    return r;
  }
}

/** krelay's JSON log records whose message starts with `prefix`. */
export async function logged(k: KrelayRun, prefix: string): Promise<number> {
  return (await k.records()).filter((r) => r.message.startsWith(prefix)).length;
}
