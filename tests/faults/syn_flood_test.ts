/**
 * Fault: a bounded SYN flood from random (spoofed) sources at the relay's TCP service while a
 * TCP connection and a UDP flow are live. The live connection keeps working, a new one gets
 * through during the flood and after it, and the packets the kernel dropped because krelay's
 * queue was full are counted in `krelay status`.
 */

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { labTest } from "../support/requirements.ts";
import {
  assertRelays,
  curl,
  faultFlags,
  krelay,
  NEEDS,
  python,
  R,
  startScenario,
  status,
} from "./support.ts";

labTest(
  "faults: a SYN flood keeps the live connection, lets a new one in, and counts queue drops",
  NEEDS,
  async (lab) => {
    // A short queue, so that the flood overflows it: the kernel's drops must show. Room in the
    // flow table for the UDP flood's flows (table pressure is table_flood_test.ts's).
    const { srv1, k, keeper } = await startScenario(
      lab,
      faultFlags("--nat-max-entries", "8192", "--queue-maxlen", "32"),
      12,
    );
    const flood = python(lab, ["syn", R, "80", "30000"]);
    // New UDP flows at the same time: their first packets are queued whatever the datapath
    // (the kernel path queues no TCP), so the queue overflows either way.
    const udpFlood = python(lab, ["udp", R, "53", "3000"]);
    const during = await curl(lab);
    const [sent, udpSent] = await Promise.all([flood, udpFlood]);
    assert(sent.sent >= 29_000 && udpSent.sent >= 2900, JSON.stringify([sent, udpSent]));
    assertEquals([during.code, during.body], [0, srv1.web.indexText], "curl during the flood");
    // The flood overflows the queue the live UDP flow shares: some of its queries may go.
    await keeper.assertNothingLost("SYN flood", true);
    await assertRelays(lab, srv1.web.indexText, "after the SYN flood");
    const s = await status(k);
    assert(s.queue !== undefined, "status shows the kernel's queue counters");
    assert(s.queue.queueDropped > 0, `the kernel's drops are counted: ${JSON.stringify(s.queue)}`);
    assert(s.queue.idSequence >= s.datapath.received, JSON.stringify(s));
    const text = await krelay(k, "status");
    assert(/kernel: dropped, queue full\s+│\s+[\d,]+/.test(text.stdout), text.stdout);
    assertEquals(await k.stop(), 0);
  },
  { timeoutMs: 90_000 },
);

labTest(
  "faults: with tcp_hold_syn true, a SYN flood held by the relay threads' gates starves no one",
  NEEDS,
  async (lab) => {
    // Every SYN held, by the relay threads (one per CPU) where each keeps to a CPU of its own.
    const { srv1, k, keeper } = await startScenario(
      lab,
      faultFlags("--nat-max-entries", "8192", "--tcp-hold-syn", "true"),
      12,
    );
    const flood = python(lab, ["syn", R, "80", "30000"]);
    const during = await curl(lab);
    const sent = await flood;
    assert(sent.sent >= 29_000, JSON.stringify(sent));
    assertEquals([during.code, during.body], [0, srv1.web.indexText], "curl during the flood");
    await keeper.assertNothingLost("SYN flood, SYNs held", true);
    await assertRelays(lab, srv1.web.indexText, "after the SYN flood");
    const s = await status(k) as unknown as { syn: { gate?: Record<string, number> } };
    const gate = s.syn.gate;
    // The flood's SYNs were decided by a gate (held, or let go past its limit)...
    assert(gate !== undefined && gate.held + gate.overflow >= 1000, JSON.stringify(gate));
    // ...the relay threads', from their own queues (after krelay's own, number 0).
    const queues = await lab.exec("relay", ["cat", "/proc/net/netfilter/nfnetlink_queue"]);
    const threadSyns = queues.stdout.trim().split("\n").map((l) => l.trim().split(/\s+/))
      .filter((f) => Number(f[0]) > 0).reduce((n, f) => n + Number(f[7]), 0);
    assert(threadSyns >= 1000, queues.stdout);
    assertEquals(await k.stop(), 0);
  },
  { timeoutMs: 90_000 },
);
