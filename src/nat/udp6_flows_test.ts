import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { Udp6Flows } from "./udp6_flows.ts";

const C = "2001:db8:1::10", S1 = "2001:db8:2::10", S2 = "2001:db8:2::20";

Deno.test("Udp6Flows: a flow keeps its server, its replies are found, it expires", () => {
  let now = 0;
  const flows = new Udp6Flows(2, () => now);
  let picks = 0;
  const pick = () => (picks++ === 0 ? S1 : S2);
  const f = flows.request(C, 4000, 53, pick, 1000);
  if (typeof f === "string") throw new Error(f);
  assertEquals(f.server, S1);
  now = 500;
  // The same flow: no new pick, its time renewed.
  assertEquals(flows.request(C, 4000, 53, pick, 1000), f);
  assertEquals(picks, 1);
  assertEquals(flows.reply(S1, 53, C, 4000, 1000)?.answered, true);
  // Only the flow's own server answers for it.
  assertEquals(flows.reply(S2, 53, C, 4000, 1000), undefined);
  now = 2600;
  assertEquals(flows.get(C, 4000, 53), undefined);
  assertEquals(flows.reply(S1, 53, C, 4000, 1000), undefined);
  flows.sweep();
  assertEquals(flows.size, 0);
});

Deno.test("Udp6Flows: full, or no server, makes no flow", () => {
  let now = 0;
  const flows = new Udp6Flows(1, () => now);
  assertEquals(flows.request(C, 1, 53, () => undefined, 1000), "no-server");
  assertEquals(typeof flows.request(C, 1, 53, () => S1, 1000), "object");
  assertEquals(flows.request(C, 2, 53, () => S1, 1000), "full");
  // An expired flow makes room.
  now = 1001;
  assertEquals(typeof flows.request(C, 2, 53, () => S1, 1000), "object");
  assertEquals(flows.size, 1);
});

Deno.test("Udp6Flows.record(): a kernel flow's server, renewed, replaced when its server changes", () => {
  let now = 0;
  const flows = new Udp6Flows(1, () => now);
  assertEquals(flows.record(C, 4000, 53, S1, 1000), true);
  assertEquals(flows.get(C, 4000, 53)?.server, S1);
  // Renewed (the kernel still has it): lives on past its first timeout.
  now = 900;
  assertEquals(flows.record(C, 4000, 53, S1, 1000), true);
  now = 1500;
  assertEquals(flows.get(C, 4000, 53)?.created, 0);
  // The kernel forgot it and the tuple came back to another server: the new one replaces it.
  assertEquals(flows.record(C, 4000, 53, S2, 1000), true);
  assertEquals(flows.get(C, 4000, 53)?.server, S2);
  assertEquals(flows.reply(S1, 53, C, 4000, 1000), undefined);
  assertEquals(flows.size, 1);
  // Full: not recorded.
  assertEquals(flows.record(C, 4001, 53, S1, 1000), false);
});
