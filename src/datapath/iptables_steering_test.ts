import { deepStrictEqual as assertEquals, rejects } from "node:assert/strict";
import type { CommandResult, CommandRunner } from "../system/command.ts";
import { IptablesSteering } from "./iptables_steering.ts";
import { labSpec } from "./_steering_spec.ts";

const spec = labSpec();

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
  assertEquals(deletes.length, 2 + 1 + 1 + 1); // two stale jumps, then one failed try per place
  assertEquals(calls.at(-1), "iptables-restore -w --noflush");
});

Deno.test("IptablesSteering.install() undoes a refused install and reports why", async () => {
  const { run, calls } = recorder({ restoreFails: true });
  await rejects(new IptablesSteering(run).install(spec), /iptables-restore .*failed \(2\): bad/);
  assertEquals(calls.at(-1), "nft delete table ip krelay");
});

Deno.test("IptablesSteering.update() replaces the rules in one restore, touching no jump", async () => {
  const { run, calls } = recorder();
  await new IptablesSteering(run).update(spec);
  assertEquals(calls, ["iptables-restore -w --noflush"]);
});

Deno.test("IptablesSteering with kernel_nat sets up the nft NAT table before the queue rules", async () => {
  const { run, calls } = recorder();
  const steering = new IptablesSteering(run);
  await steering.install({ ...spec, kernelNat: true });
  assertEquals(calls.slice(-2), ["nft -f -", "iptables-restore -w --noflush"]);
  await steering.prepareClient(0xc633640a);
  assertEquals(calls.at(-1), "nft add element ip krelay clients { 0xc633640a : 198.51.100.10 }");
});
