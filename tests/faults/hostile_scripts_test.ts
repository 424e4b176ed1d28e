/**
 * Fault: packet scripts that attack the daemon from inside: a heap that grows from a timer, a
 * timer that logs megabytes, a timer that spins, a script that starts a worker. Each runs in
 * a process of its own and is killed and disabled; krelay keeps relaying every port, its
 * control socket answers throughout, its memory and log stay small, unload leaves no process,
 * and SIGTERM ends it at once.
 */

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { startServers } from "../../src/lab/servers.ts";
import { waitFor } from "../../src/lab/wait.ts";
import type { ScriptInfo } from "../../src/script/host.ts";
import { LAB_FLAGS, startKrelay } from "../support/krelay.ts";
import { labTest } from "../support/requirements.ts";
import { assertRelays, json, Keeper, krelay, NEEDS, status } from "./support.ts";

const fixture = (name: string) =>
  new URL(`../../src/script/_fixtures/${name}.ts`, import.meta.url).pathname;
/**
 * Why each is disabled. They sit on a service of their own with no traffic, so that their
 * limits end them (with traffic, a timer holding up batches past the budget is ended by the
 * budget: restarted, then disabled by its errors; host_test.ts shows that).
 */
const HOSTILE = { heap_hog: /memory/, log_flood: /console output/, spin_timer: /CPU/ };

const gone = (pid: number) => {
  try {
    return /^State:\s+Z/m.test(Deno.readTextFileSync(`/proc/${pid}/status`));
  } catch {
    return true;
  }
};

const rssMb = (pid: number) =>
  Number(/VmRSS:\s+(\d+)/.exec(Deno.readTextFileSync(`/proc/${pid}/status`))![1]) / 1024;

labTest(
  "faults: hostile packet scripts are killed and disabled; krelay relays and answers",
  NEEDS,
  async (lab) => {
    const { srv1 } = await startServers(lab);
    // Scripts need the queue for every packet of their service: today's default datapath. A
    // budget with room for a machine loaded by the hostile scripts themselves: the one script
    // on the live traffic must not be timed out by that.
    const k = await startKrelay(lab, [
      ...LAB_FLAGS,
      "--udp-ports",
      "53,5353",
      "--script-memory-mb",
      "64",
      "--script-budget-ms",
      "500",
    ]);
    const keeper = await Keeper.start(lab, 20);
    const loads = [
      ...Object.keys(HOSTILE).map((name) =>
        krelay(k, "script", "load", name, fixture(name), "--on", "udp:5353")
      ),
      krelay(k, "script", "load", "worker_spawner", fixture("worker_spawner"), "--on", "udp:53"),
    ];
    // The control socket answers while they load and run.
    const answered: boolean[] = [];
    const probing = (async () => {
      for (let i = 0; i < 20; i++) {
        answered.push((await krelay(k, "status")).success);
        await new Promise((r) => setTimeout(r, 500));
      }
    })();
    for (const load of await Promise.all(loads)) assert(load.success, load.stderr);
    let list: ScriptInfo[] = [];
    await waitFor(async () => {
      list = await json<ScriptInfo[]>(k, "script", "list");
      return Object.keys(HOSTILE).every((n) =>
        list.find((s) => s.name === n)?.state === "disabled"
      );
    }, { timeoutMs: 30_000, what: "the hostile scripts disabled" });
    for (const [name, why] of Object.entries(HOSTILE)) {
      const info = list.find((s) => s.name === name)!;
      assert(why.test(info.disabledReason ?? ""), `${name}: ${info.disabledReason}`);
      assertEquals(info.pid, undefined, `${name} has no process left`);
    }
    const spawner = list.find((s) => s.name === "worker_spawner")!;
    assertEquals(spawner.state, "enabled");
    const lines = (await k.records()).filter((r) => r.properties?.script === "worker_spawner")
      .map((r) => String(r.properties?.line));
    assert(lines.some((l) => l.startsWith("worker: refused")), lines.join("\n"));
    assertEquals((await krelay(k, "script", "unload", "worker_spawner")).success, true);
    await waitFor(() => gone(spawner.pid!), { timeoutMs: 5_000, what: "its process gone" });
    await probing;
    assert(answered.every((a) => a), `status answered ${answered.filter((a) => a).length}/20`);
    assert(rssMb(k.process.pid) < 1024, `krelay's memory: ${rssMb(k.process.pid)} MB`);
    const logBytes = (await Deno.stat(k.process.logPath)).size;
    assert(logBytes < 2_000_000, `krelay's log: ${logBytes} bytes`);
    await assertRelays(lab, srv1.web.indexText, "with hostile scripts loaded");
    await keeper.assertNothingLost("hostile scripts");
    assertEquals((await status(k)).state, "started");
    const stopped = performance.now();
    assertEquals(await k.stop(), 0);
    assert(performance.now() - stopped < 5_000, "SIGTERM ends krelay at once");
  },
  { timeoutMs: 120_000 },
);
