/**
 * Fault: a flood of unanswered UDP flows, from many source ports, fills the kernel's flow table
 * (a small nat_max_entries, and a udp_timeout longer than the test, so that nothing expires).
 * krelay evicts the idlest unanswered flows as the table fills (kernel_udp.ts): the answered
 * flows (a dig from one source port, asked again and again, and the keeper's) are never
 * evicted and keep working, a new client's flow is answered just after the flood, and the
 * evictions are counted in `krelay status` and noted in the log.
 */

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { LAB_ADDR } from "../../src/lab/addresses.ts";
import type { Lab } from "../../src/lab/topology.ts";
import { startServers } from "../../src/lab/servers.ts";
import { sleep } from "../../src/lab/wait.ts";
import { startKrelay } from "../support/krelay.ts";
import { labTest } from "../support/requirements.ts";
import {
  assertRelays,
  dig,
  faultFlags,
  Keeper,
  logged,
  NEEDS,
  python,
  R,
  status,
} from "./support.ts";

/** dig from one source port (one flow) until `done`; the answers it had and missed. */
async function digLoop(lab: Lab, done: () => boolean) {
  const seen = { ok: 0, missed: [] as string[] };
  while (!done()) {
    const a = await dig(lab, ["-b", `${LAB_ADDR.client}#5400`]);
    if (a === LAB_ADDR.dnsAnswer) seen.ok++;
    else seen.missed.push(a);
    await sleep(200);
  }
  return seen;
}

labTest(
  "faults: a flood of unanswered UDP flows evicts them, never the answered ones; a new flow gets through",
  NEEDS,
  async (lab) => {
    const { srv1 } = await startServers(lab);
    const k = await startKrelay(
      lab,
      faultFlags("--nat-max-entries", "256", "--udp-timeout", "60"),
    );
    const keeper = await Keeper.start(lab, 14);
    assertEquals(await dig(lab, ["-b", `${LAB_ADDR.client}#5400`]), LAB_ADDR.dnsAnswer);
    let flooding = true;
    const loop = digLoop(lab, () => !flooding);
    // Twelve times the table, from as many source ports: none of them is ever answered.
    const flood = await python(lab, ["udp", R, "53", "3000"]);
    await sleep(500);
    flooding = false;
    const seen = await loop;
    assert(flood.sent >= 2900, JSON.stringify(flood));
    assertEquals(seen.missed, [], `the answered flow kept working: ${JSON.stringify(seen)}`);
    assert(seen.ok > 0);
    await keeper.assertNothingLost("unanswered UDP flood");
    // The next tick evicts what the flood's end left above the mark: a new client gets in, long
    // before the flood's flows would expire (60 s).
    await sleep(1_500);
    await assertRelays(lab, srv1.web.indexText, "just after the unanswered flood");
    const s = await status(k) as Awaited<ReturnType<typeof status>> & {
      kernelUdp: { evicted: number; evictionErrors: number };
    };
    // At least a round down to the low mark (a quarter of the table; the flood outpaces them,
    // the kernel dropping the rest of its first packets while the table is full).
    assert(s.kernelUdp.evicted >= 32, `evictions counted: ${JSON.stringify(s.kernelUdp)}`);
    assertEquals(s.kernelUdp.evictionErrors, 0);
    const flows = await lab.exec("relay", [
      "nft",
      "-j",
      "list",
      "map",
      "ip",
      "krelay",
      "udp_flows",
    ]);
    const count = (flows.stdout.match(/"concat"/g) ?? []).length;
    assert(count <= 256 && count > 0, `the kernel's flows: ${count}`);
    // Rate-limited: a flood of thousands of evictions is a line or two.
    const notes = await logged(k, "kernel UDP flow table full");
    assert(notes >= 1 && notes <= 3, `${notes} notes of the evictions`);
    assertEquals(await k.stop(), 0);
  },
  { timeoutMs: 90_000 },
);
