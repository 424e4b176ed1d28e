// For limits_test.ts: a host with a script spinning in a timer; prints the script's pid,
// then waits to be killed. The CPU watchdog is off: this test is about the process outliving
// its parent, and the watchdog would otherwise kill the spinning timer within about 400 ms.
import { ScriptHost } from "./host.ts";
import { parseServices } from "./services.ts";

const host = new ScriptHost({
  policy: () => ({
    defaultVerdict: "accept",
    budgetMs: 50,
    maxErrors: 10,
    errorWindowMs: 1000,
    limits: { idleCpuMsPerS: 1e9 },
  }),
  relayIp: () => 1,
  serverOf: () => [2, 53],
  now: () => performance.now(),
  check: () => Promise.resolve(),
});
const file = new URL("./_fixtures/spin_timer.ts", import.meta.url).pathname;
const info = await host.load("spin", file, parseServices("udp:53"));
// Once its timer spins (after 100 ms), it no longer reads its stdin.
await new Promise((r) => setTimeout(r, 500));
console.log(info.pid);
await new Promise(() => {});
