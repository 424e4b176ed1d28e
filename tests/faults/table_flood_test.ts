/**
 * Fault: a flood of new UDP flows fills the kernel's flow table while a UDP flow and a TCP
 * connection are live. The live ones are never evicted and keep working throughout; new flows
 * find the table full (their first packet is dropped: its answer could not find its way back)
 * until the flood's flows expire, after udp_timeout, and then get through again.
 *
 * krelay evicts the flood's unanswered flows as the table fills (udp_evict_test.ts); new flows
 * that come while the table is full before an eviction are still dropped.
 */

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { sleep } from "../../src/lab/wait.ts";
import { labTest } from "../support/requirements.ts";
import { assertRelays, faultFlags, NEEDS, python, R, startScenario, status } from "./support.ts";

labTest(
  "faults: a UDP flood that fills the kernel's flow table keeps live flows; new ones pass once it expires",
  NEEDS,
  async (lab) => {
    const { srv1, k, keeper } = await startScenario(
      lab,
      faultFlags("--nat-max-entries", "256", "--udp-timeout", "4"),
      16,
    );
    await sleep(1000);
    const flood = await python(lab, ["udp", R, "53", "3000"]);
    assert(flood.sent >= 2900, JSON.stringify(flood));
    // The live flow and connection were kept through the flood (the keeper checks each step).
    await keeper.assertNothingLost("table flood");
    // The flood's flows expire after udp_timeout: new clients get through again.
    await sleep(4_500);
    await assertRelays(lab, srv1.web.indexText, "after the table flood's flows expired");
    const s = await status(k);
    assertEquals(s.state, "started");
    assertEquals(await k.stop(), 0);
  },
  { timeoutMs: 90_000 },
);
