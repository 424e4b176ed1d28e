/**
 * Fault: a second `krelay run` while the live one's control socket cannot take a connection
 * (the live krelay paused, its backlog filled: connect gets EAGAIN). The second refuses to
 * start and changes nothing: the socket file stays, and the live krelay, resumed, answers and
 * relays.
 */

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { KRELAY_LAUNCHER } from "../../src/lab/krelay_process.ts";
import { waitFor } from "../../src/lab/wait.ts";
import { krelayRules } from "../support/krelay.ts";
import { labTest } from "../support/requirements.ts";
import { assertRelays, faultFlags, krelay, NEEDS, startScenario, status } from "./support.ts";

const FLOOD = new URL("./fixtures/flood.py", import.meta.url).pathname;

labTest(
  "faults: a second krelay against a busy control socket refuses and changes nothing",
  NEEDS,
  async (lab) => {
    const { srv1, k, keeper } = await startScenario(lab, faultFlags(), 8);
    const rules = await krelayRules(lab);
    // Paused, the live krelay accepts nothing: its control socket's backlog fills up.
    Deno.kill(k.process.pid, "SIGSTOP");
    const filler = new Deno.Command("python3", {
      args: [FLOOD, "unix", k.socket, "5000", "10"],
      stdout: "piped",
    }).spawn();
    const lines = filler.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let second;
    try {
      assertEquals((await lines.read()).value?.trim(), "full", "the backlog filled up");
      second = await lab.exec(
        "relay",
        [KRELAY_LAUNCHER, "run", "--control-socket", k.socket, ...faultFlags()],
        { timeoutMs: 60_000 },
      );
    } finally {
      Deno.kill(k.process.pid, "SIGCONT");
      filler.kill();
      await lines.cancel();
      await filler.status;
    }
    assertEquals(second.code, 1, second.stderr + second.stdout);
    assert(
      /cannot be checked .*another krelay may be running/.test(second.stderr + second.stdout),
      second.stderr + second.stdout,
    );
    assertEquals((await Deno.lstat(k.socket)).isSocket, true, "the live socket file stays");
    await waitFor(async () => (await krelay(k, "status")).success, {
      timeoutMs: 15_000,
      what: "the live krelay to answer again",
    });
    assertEquals((await status(k)).state, "started");
    assertEquals(await krelayRules(lab), rules, "the live krelay's rules are untouched");
    await assertRelays(lab, srv1.web.indexText, "after the second krelay gave up");
    // Paused for a moment: UDP queries of that moment may go unanswered, TCP just waits.
    await keeper.assertNothingLost("a second krelay", true);
    assertEquals(await k.stop(), 0);
  },
  { timeoutMs: 90_000 },
);
