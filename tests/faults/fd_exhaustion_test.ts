/**
 * Fault: krelay runs out of file descriptors (a low `ulimit -n`, then many connections held
 * open). New connections are reset while it lasts and counted, logged once per burst; the
 * control socket survives it and answers again; a live connection and UDP flow keep working;
 * the launcher says it could not raise the limit.
 */

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { KRELAY_LAUNCHER } from "../../src/lab/krelay_process.ts";
import { startServers } from "../../src/lab/servers.ts";
import type { Lab } from "../../src/lab/topology.ts";
import { waitFor } from "../../src/lab/wait.ts";
import { controlSocket, KrelayRun } from "../support/krelay.ts";
import { labTest } from "../support/requirements.ts";
import {
  assertRelays,
  faultFlags,
  Keeper,
  krelay,
  logged,
  NEEDS,
  python,
  R,
  status,
} from "./support.ts";

/** The descriptor limit (soft and hard) krelay runs under here. */
const NOFILE = 256;

/** `krelay run` under a hard limit of {@link NOFILE} descriptors that it cannot raise. */
async function startLimited(lab: Lab, args: string[]): Promise<KrelayRun> {
  const socket = controlSocket(lab);
  const proc = lab.spawn("relay", "krelay", [
    "bash",
    "-c",
    `ulimit -Hn ${NOFILE} -Sn ${NOFILE} && exec "$0" run "$@"`,
    KRELAY_LAUNCHER,
    "--log-json",
    "--control-socket",
    socket,
    ...args,
  ]);
  await waitFor(async () => {
    if (!proc.running) throw new Error(`krelay exited early:\n${await proc.logTail(30)}`);
    return (await proc.readLog()).includes("relaying on");
  }, { timeoutMs: 30_000, what: "krelay to start" });
  return new KrelayRun(proc, socket);
}

labTest(
  "faults: descriptor exhaustion resets new connections, and krelay recovers",
  NEEDS,
  async (lab) => {
    const { srv1 } = await startServers(lab);
    const k = await startLimited(lab, faultFlags());
    const launcher = await k.process.readLog();
    assert(launcher.includes(`open files limited to ${NOFILE}`), launcher.slice(0, 2000));
    const keeper = await Keeper.start(lab, 14);
    // Far more connections than 256 descriptors allow (two sockets each, and pipes).
    const hold = python(lab, ["hold", R, "80", "400", "3"]);
    await waitFor(async () => (await status(k).catch(() => undefined))?.tcp.fdLimit !== 0, {
      timeoutMs: 20_000,
      what: "krelay at its descriptor limit",
    }).catch(() => {});
    // The control socket at the limit: clients are closed, not left hanging; nothing breaks.
    for (let i = 0; i < 3; i++) await krelay(k, "status");
    const held = await hold;
    assert(held.held > 100, JSON.stringify(held));
    // Once the held connections are gone, everything answers again.
    await waitFor(async () => (await krelay(k, "status")).success, {
      timeoutMs: 15_000,
      what: "the control socket to answer again",
    });
    await assertRelays(lab, srv1.web.indexText, "after descriptor exhaustion");
    await keeper.assertNothingLost("descriptor exhaustion");
    const s = await status(k);
    assert(s.tcp.fdLimit > 0, `resets at the fd limit counted: ${JSON.stringify(s.tcp)}`);
    const relayNotes = await logged(k, "no file descriptor left for new connections");
    assert(relayNotes >= 1 && relayNotes <= 20, `${relayNotes} lines for ${s.tcp.fdLimit} resets`);
    assertEquals(await k.stop(), 0);
  },
  { timeoutMs: 90_000 },
);
