import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { isLabRunDir, ownerAlive, parseStat, processStartTime } from "./cleanup.ts";

Deno.test("parseStat() finds state and start time even when the name holds spaces and parens", () => {
  const rest = "S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 424242 99 100";
  assertEquals(parseStat(`123 (nginx) ${rest}`), { state: "S", startTime: "424242" });
  assertEquals(parseStat(`123 (a) b (c)) ${rest}`), { state: "S", startTime: "424242" });
  assertEquals(parseStat(`7 (deno) Z ${rest.slice(2)}`).state, "Z");
});

Deno.test("processStartTime() knows this process and no nonexistent one", async () => {
  assert(/^\d+$/.test((await processStartTime(Deno.pid)) ?? ""));
  assertEquals(await processStartTime(2 ** 22 + 1), undefined);
});

Deno.test("ownerAlive() needs the same PID and the same start time", async () => {
  const pidStart = await processStartTime(Deno.pid);
  const rec = {
    prefix: "krt-x",
    pid: Deno.pid,
    pidStart,
    runDir: "/tmp/krelay-lab-krt-x-1",
    keepRunDir: false,
    createdAt: "",
  };
  assert(await ownerAlive(rec));
  assert(!(await ownerAlive({ ...rec, pidStart: "1" })));
  assert(!(await ownerAlive({ ...rec, pid: 2 ** 22 + 1 })));
});

Deno.test("isLabRunDir() accepts only lab run directories", () => {
  assert(isLabRunDir("/tmp/krelay-lab-krt-ab12-9f8e7d"));
  assert(isLabRunDir("/tmp/krelay-lab-krl-a1b2c3"));
  for (
    const p of ["/", "/tmp", "/tmp/krelay-lab-", "/home/x", "/tmp/krelay-lab-x/../..", "/tmp/other"]
  ) {
    assert(!isLabRunDir(p), p);
  }
});
