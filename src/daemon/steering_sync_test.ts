import { deepStrictEqual as assertEquals, rejects } from "node:assert/strict";
import type { Steering, SteeringSpec } from "../steering/steering.ts";
import { labSpec } from "../steering/_steering_spec.ts";
import { SteeringSync } from "./steering_sync.ts";

function recorder(opts: { installFails?: boolean } = {}) {
  const log: string[] = [];
  const note = (op: string) => (spec?: SteeringSpec) => {
    log.push(spec ? `${op} ${spec.udpPorts}` : op);
    return op === "install" && opts.installFails
      ? Promise.reject(new Error("no"))
      : new Promise<void>((r) => setTimeout(r, 5));
  };
  const steering: Steering = {
    install: note("install"),
    update: note("update"),
    remove: note("remove"),
  };
  return { log, steering };
}

Deno.test("SteeringSync updates only when the spec changed, and never after a removal", async () => {
  const { log, steering } = recorder();
  const sync = new SteeringSync(steering);
  await sync.update(() => labSpec()); // nothing installed: nothing to update
  await sync.install(() => labSpec());
  await sync.update(() => labSpec()); // the same spec
  await sync.update(() => labSpec({ udpPorts: [53, 5353] }));
  // Queued in order: the update after the removal finds nothing installed.
  await Promise.all([sync.remove(), sync.update(() => labSpec({ udpPorts: [54] }))]);
  assertEquals(log, ["install 53", "update 53,5353", "remove"]);
  assertEquals(sync.installed, false);
});

Deno.test("SteeringSync leaves nothing recorded when an install fails", async () => {
  const { steering } = recorder({ installFails: true });
  const sync = new SteeringSync(steering);
  await rejects(sync.install(() => labSpec()), /no/);
  assertEquals(sync.installed, false);
});

Deno.test("SteeringSync's spec is the one in effect: not an update still being applied", async () => {
  const { steering } = recorder();
  const sync = new SteeringSync(steering);
  // Read afresh each time (an assertion narrows a property it compared).
  const spec = () => sync.spec;
  assertEquals(spec(), undefined);
  await sync.install(() => labSpec());
  assertEquals(spec()?.udpPorts, [53]);
  const applying = sync.update(() => labSpec({ udpPorts: [53, 5353], refusedTcpPorts: [80] }));
  // The steering takes a while (5 ms here): meanwhile the old spec is what the kernel has.
  await new Promise((r) => setTimeout(r, 1));
  assertEquals(spec()?.refusedTcpPorts, undefined);
  await applying;
  assertEquals(spec()?.refusedTcpPorts, [80]);
  await sync.remove();
  assertEquals(spec(), undefined);
});
