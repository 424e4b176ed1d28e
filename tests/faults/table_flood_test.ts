/**
 * Fault: a flood of new UDP flows fills the NAT table while a UDP flow and a TCP connection
 * are live. The table evicts the oldest unanswered flows, never the live ones; a new client
 * still gets through; the evictions are counted and logged, a few lines in all.
 */

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { LAB_ADDR } from "../../src/lab/addresses.ts";
import { startServers } from "../../src/lab/servers.ts";
import { sleep } from "../../src/lab/wait.ts";
import { startKrelay } from "../support/krelay.ts";
import { labTest } from "../support/requirements.ts";
import {
  assertRelays,
  faultFlags,
  json,
  Keeper,
  logged,
  NEEDS,
  python,
  R,
  status,
} from "./support.ts";

interface NatRow {
  protocol: string;
  client: string;
  ageSeconds: number;
}

labTest(
  "faults: a UDP flood that fills the NAT table evicts unanswered flows, never live ones",
  NEEDS,
  async (lab) => {
    const { srv1 } = await startServers(lab);
    const k = await startKrelay(lab, faultFlags("--nat-max-entries", "256"));
    const keeper = await Keeper.start(lab, 12);
    // Long enough to have talked both ways for a while (conntrack's "stream").
    await sleep(2500);
    const flood = await python(lab, ["udp", R, "53", "3000"]);
    assert(flood.sent >= 2900, JSON.stringify(flood));
    await assertRelays(lab, srv1.web.indexText, "during the table flood");
    const rows = await json<NatRow[]>(k, "nat");
    const live = rows.find((r) => r.protocol === "udp" && r.client === `${LAB_ADDR.client}:5300`);
    assert(live !== undefined, "the live UDP flow's entry is there");
    assert(live.ageSeconds >= 2.5, `the live flow's entry is the first one: ${live.ageSeconds} s`);
    await keeper.assertNothingLost("table flood");
    const s = await status(k);
    assert(s.nat.evictedUnanswered >= 2000, JSON.stringify(s.nat));
    assertEquals(s.nat.evicted, s.nat.evictedUnanswered, "only unanswered flows were evicted");
    await assertRelays(lab, srv1.web.indexText, "after the table flood");
    const notes = await logged(k, "NAT table full");
    assert(notes >= 1 && notes <= 3, `${notes} log lines about the full table`);
    assertEquals(await k.stop(), 0);
  },
  { timeoutMs: 90_000 },
);
