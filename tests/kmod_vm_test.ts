// krelay.ko in a qemu VM (Debian's 6.1 kernel, TCG): load, /proc reads and writes with bad
// values, start toggling, the hooks' selection and queue bypass, the NAT table through the
// krelay-nat client, its bound, unload in each state, a concurrent stress, and a clean dmesg.
//
// One boot runs every check (tests/vm/guest/kmod_checks.sh prints "ok NAME" or "not ok NAME:
// why"); each Deno test below asserts its checks. Skipped, with the reason printed, when not
// root or when qemu or the 6.1 kernel cannot be installed. About 60-90 s in all.

import { ok as assert } from "node:assert/strict";
import { buildKmod, buildStatic, dmesgProblems, runVm, vmKernel, vmMissing } from "./vm/vm.ts";
import type { VmResult } from "./vm/vm.ts";
import { testOrSkip } from "./support/skip.ts";

const GUEST = new URL("./vm/guest/", import.meta.url).pathname;
const SCRIPT_TIMEOUT_SEC = 240;

const why = await vmMissing();

interface Run {
  result: VmResult;
  checks: Map<string, string | true>;
  buildLog: string;
}

let shared: Promise<Run> | undefined;

/** Boots once for all the tests of this file. */
function vmRun(): Promise<Run> {
  shared ??= (async () => {
    const kmod = await buildKmod(await vmKernel());
    const probe = await buildStatic(`${GUEST}netprobe.c`);
    try {
      const result = await runVm({
        script: await Deno.readTextFile(`${GUEST}kmod_checks.sh`),
        kmodDir: kmod.dir,
        bins: [probe.path],
        scriptTimeoutSec: SCRIPT_TIMEOUT_SEC,
      });
      const checks = new Map<string, string | true>();
      for (const line of result.output.split("\n")) {
        const m = /^(not )?ok (\S+?)(?:: (.*))?$/.exec(line);
        if (m) checks.set(m[2], m[1] ? m[3] ?? "failed" : true);
      }
      return { result, checks, buildLog: kmod.log };
    } finally {
      kmod.remove();
      probe.remove();
    }
  })();
  return shared;
}

function describe(r: VmResult): string {
  const tail = (text: string) => text.split("\n").slice(-30).join("\n");
  return `${r.failure ?? `exit ${r.code}`} after ${Math.round(r.durationMs / 1000)} s\n` +
    `--- guest output (tail):\n${tail(r.output)}\n--- serial console (tail):\n${tail(r.serial)}`;
}

/** A test that passes when every named guest check printed "ok". */
function vmTest(name: string, checks: string[]): void {
  testOrSkip(why, {
    name,
    sanitizeResources: false,
    sanitizeOps: false,
    async fn() {
      const run = await vmRun();
      for (const check of checks) {
        const got = run.checks.get(check);
        assert(got !== undefined, `check ${check} did not run: ${describe(run.result)}`);
        assert(got === true, `check ${check} failed: ${got}`);
      }
    },
  });
}

testOrSkip(why, {
  name: "kmod builds with W=1 without warnings",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const run = await vmRun();
    const warnings = run.buildLog.split("\n").filter((l) => /warning:|error:/i.test(l));
    assert(warnings.length === 0, warnings.join("\n"));
  },
});

vmTest("the VM runs Deno from the repository over 9p", ["deno-version"]);
vmTest("krelay.ko loads with its /proc/krelay files and defaults", ["load", "proc-defaults"]);
vmTest("/proc/krelay files read back what is written", ["proc-write"]);
vmTest("/proc/krelay refuses bad values with EINVAL and keeps the old one", ["proc-bad-values"]);
vmTest(
  "real_ip refuses loopback, 0/8, broadcast, multicast and the writer's netns's own addresses",
  ["proc-real-ip-refusals"],
);
vmTest("start 0 -> 1 -> 0 registers and unregisters the hooks", ["start-toggle"]);
vmTest("stats and GET_INFO answer at once while a stop sleeps", ["readers-during-stop"]);
vmTest("the hooks select marked first UDP packets, U1, U3, T1, T2 and nothing else", [
  "hooks-select",
]);
vmTest("with start=1 and no queue listener, bypass lets traffic pass", ["hooks-bypass"]);
vmTest("the hooks live in the writer's netns and leave with it; veth traffic", ["hooks-netns"]);
vmTest(
  "krelay-nat adds, reads, replaces and removes entries; EEXIST for a taken relay port",
  ["nat-sockopt"],
);
vmTest("the NAT table is bounded by max_entries", ["nat-bound"]);
vmTest("the NAT table's buckets grow with max_entries; its hash key is random", ["nat-hash"]);
vmTest("GET_TABLE gives what fits plus the count, and a large table whole", [
  "nat-dump-chunks",
]);
vmTest("krelay.ko unloads in every state", [
  "unload-stopped",
  "unload-started",
  "unload-start-param",
  "unload-after-toggles",
  "unload-started-in-netns",
  "unload-open-file-and-entries",
]);
vmTest("concurrent start toggles, /proc writes, sockopt calls and traffic", ["stress"]);

testOrSkip(why, {
  name: "the guest finished every check and its dmesg has no BUG, WARNING, Oops or taint",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const { result } = await vmRun();
    assert(result.failure === undefined, describe(result));
    assert(/^checks done/m.test(result.output), describe(result));
    for (const check of ["dmesg-after-checks", "dmesg-after-unloads", "dmesg-after-stress"]) {
      assert((await vmRun()).checks.get(check) === true, `${check} failed`);
    }
    const problems = dmesgProblems(result.dmesg);
    assert(problems.length === 0, problems.join("\n"));
    assert(/krelay: loaded \(abi 1/.test(result.dmesg), "no load message in dmesg");
    console.log(`VM run: ${result.durationMs} ms`);
  },
});
