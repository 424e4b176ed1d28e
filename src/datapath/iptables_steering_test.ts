import { deepStrictEqual as assertEquals, rejects } from "node:assert/strict";
import type { CommandResult, CommandRunner } from "../system/command.ts";
import { IptablesSteering } from "./iptables_steering.ts";

const spec = {
  queue: 0,
  relayIp: "198.51.100.1",
  udpPorts: [53],
  tcpPorts: [80],
  gports: [16000],
  relayPorts: [20000, 29999] as const,
};

/** A runner that records calls; jump deletions succeed `staleJumps` times, then fail. */
function recorder(opts: { staleJumps?: number; restoreFails?: boolean } = {}) {
  const calls: string[] = [];
  let stale = opts.staleJumps ?? 0;
  const run: CommandRunner = (cmd, args) => {
    calls.push(`${cmd} ${args.join(" ")}`);
    let r: CommandResult = { code: 0, stdout: "", stderr: "" };
    if (args.includes("-D")) r = stale-- > 0 ? r : { code: 1, stdout: "", stderr: "no rule" };
    if (cmd.endsWith("-restore") && opts.restoreFails) r = { code: 2, stdout: "", stderr: "bad" };
    return Promise.resolve(r);
  };
  return { run, calls };
}

Deno.test("IptablesSteering.install() removes stale jumps and chains before installing", async () => {
  const { run, calls } = recorder({ staleJumps: 2 });
  await new IptablesSteering(run).install(spec);
  const deletes = calls.filter((c) => c.includes(" -D "));
  assertEquals(deletes.length, 2 + 1 + 1); // two stale raw jumps, then one failed try per table
  assertEquals(calls.at(-1), "iptables-restore -w --noflush");
});

Deno.test("IptablesSteering.install() undoes a refused install and reports why", async () => {
  const { run, calls } = recorder({ restoreFails: true });
  await rejects(new IptablesSteering(run).install(spec), /iptables-restore .*failed \(2\): bad/);
  assertEquals(calls.at(-1), "iptables -w -t mangle -X KRELAY_POST");
});

Deno.test("IptablesSteering.update() replaces the rules in one restore, touching no jump", async () => {
  const { run, calls } = recorder();
  await new IptablesSteering(run).update(spec);
  assertEquals(calls, ["iptables-restore -w --noflush"]);
});
