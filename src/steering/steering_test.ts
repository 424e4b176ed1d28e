import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { ComposedSteering, sameButHeldSyns, type Steering, type SteeringSpec } from "./steering.ts";
import { labSpec } from "./_steering_spec.ts";

/** A steering that records what it was given, as "name op scripted-udp-ports". */
function recording(name: string, log: string[]): Steering {
  const note = (op: string) => (spec?: SteeringSpec) => {
    log.push(`${name} ${op}${spec ? ` ${spec.scriptedUdpPorts.join(",") || "-"}` : ""}`);
    return Promise.resolve();
  };
  return { install: note("install"), update: note("update"), remove: note("remove") };
}

Deno.test("ComposedSteering installs the kernel path first and removes it last", async () => {
  const log: string[] = [];
  const s = new ComposedSteering(recording("kernel", log), recording("queue", log));
  await s.install(labSpec());
  await s.remove();
  // install() first removes what a crashed run may have left.
  assertEquals(log, [
    "queue remove",
    "kernel remove",
    "kernel install -",
    "queue install -",
    "queue remove",
    "kernel remove",
  ]);
});

Deno.test("ComposedSteering moves a service to and from the queue with no gap", async () => {
  const log: string[] = [];
  const s = new ComposedSteering(recording("kernel", log), recording("queue", log));
  await s.install(labSpec({ udpPorts: [53, 5353] }));
  log.length = 0;
  // A script on 53: the queue takes it before the kernel lets it go.
  await s.update(labSpec({ udpPorts: [53, 5353], scriptedUdpPorts: [53] }));
  assertEquals(log, ["queue update 53", "kernel update 53", "queue update 53"]);
  log.length = 0;
  // Moved to 5353: the queue keeps 53 until the kernel has it back.
  await s.update(labSpec({ udpPorts: [53, 5353], scriptedUdpPorts: [5353] }));
  assertEquals(log, ["queue update 53,5353", "kernel update 5353", "queue update 5353"]);
  log.length = 0;
  // Nothing scripted changed: one update each.
  await s.update(labSpec({ udpPorts: [53, 5353, 5354], scriptedUdpPorts: [5353] }));
  assertEquals(log, ["kernel update 5353", "queue update 5353"]);
});

Deno.test("ComposedSteering changes only the queue selection when only the held SYNs change", async () => {
  const log: string[] = [];
  const s = new ComposedSteering(recording("kernel", log), recording("queue", log));
  await s.install(labSpec({ tcpPorts: [80] }));
  log.length = 0;
  // tcp_hold_syn auto: a service comes into doubt and leaves it; the kernel path has no part.
  await s.update(labSpec({ tcpPorts: [80], heldSynPorts: [80] }));
  await s.update(labSpec({ tcpPorts: [80], heldSynPorts: [] }));
  assertEquals(log, ["queue update -", "queue update -"]);
  log.length = 0;
  // Anything else: both.
  await s.update(labSpec({ tcpPorts: [80], heldSynPorts: [80], refusedTcpPorts: [80] }));
  assertEquals(log, ["kernel update -", "queue update -"]);
  log.length = 0;
  // With IPv6 clients, the kernel path too: its ip6tables rules queue their SYNs.
  const dual = { tcpPorts: [80], relayIp6: "2001:db8:1::1", realIp6: "2001:db8:2::10" };
  await s.update(labSpec({ ...dual, heldSynPorts: [] }));
  log.length = 0;
  await s.update(labSpec({ ...dual, heldSynPorts: [80] }));
  assertEquals(log, ["kernel update -", "queue update -"]);
});

Deno.test("sameButHeldSyns() ignores the held SYNs' ports and queues only", () => {
  const spec = labSpec();
  const held = { ...spec, heldSynPorts: [80], heldSynQueues: { base: 1, count: 2 } };
  assertEquals(sameButHeldSyns(spec, held), true);
  assertEquals(sameButHeldSyns(spec, { ...held, gport: spec.gport + 1 }), false);
});
