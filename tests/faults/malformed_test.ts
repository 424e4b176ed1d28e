/**
 * Fault: malformed datagrams at the relay's services (UDP and TCP headers cut short or
 * lying about their length, bad checksums, impossible flags, fragments, IP options, other
 * protocols) while a TCP connection and a UDP flow are live. krelay passes or drops each
 * without harm: nothing live is lost and the relay still relays.
 */

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { labTest } from "../support/requirements.ts";
import { assertRelays, faultFlags, NEEDS, python, R, startScenario, status } from "./support.ts";

labTest(
  "faults: malformed datagrams of 29 kinds harm nothing live",
  NEEDS,
  async (lab) => {
    const { srv1, k, keeper } = await startScenario(lab, faultFlags(), 6);
    const sent = await python(lab, ["malformed", R, "40"]);
    assertEquals(sent.kinds, 29);
    assert(sent.sent >= 29 * 40 * 0.9, JSON.stringify(sent));
    await keeper.assertNothingLost("malformed datagrams");
    await assertRelays(lab, srv1.web.indexText, "after the malformed datagrams");
    const s = await status(k);
    assertEquals(s.state, "started");
    // The kernel path hands krelay only what looks like a new flow's first packet: of the
    // malformed ones, those reach it, and each is passed as malformed, never a crash.
    assert(s.packets.passedMalformed >= 29, `krelay met them: ${JSON.stringify(s.packets)}`);
    assertEquals(s.engineErrors, 0);
    assertEquals(await k.stop(), 0);
  },
  { timeoutMs: 90_000 },
);
