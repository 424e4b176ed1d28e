import { deepStrictEqual as assertEquals, ok as assert, rejects } from "node:assert/strict";
import type { CommandRunner } from "../system/command.ts";
import { idleBuiltinChains, IptablesSteering } from "./iptables_steering.ts";
import { labSpec, recorder } from "./_steering_spec.ts";

// Held SYNs: a chain of iptables' own (first packets and ICMP errors are nft.ts's to queue).
const spec = labSpec({ heldSynPorts: [80] });

Deno.test("IptablesSteering.install() removes stale jumps and chains before installing", async () => {
  const { run, calls } = recorder({ staleJumps: 2 });
  await new IptablesSteering(run).install(spec);
  const deletes = calls.filter((c) => c.includes(" -D "));
  // Two stale jumps, then one failed try per form of jump (three) for each of six chains.
  assertEquals(deletes.length, 2 + 3 * 6);
  assertEquals(calls.at(-1), "iptables-restore -w --noflush");
});

Deno.test("IptablesSteering.install() undoes a refused install and reports why", async () => {
  const { run, calls } = recorder({ restoreFails: true });
  await rejects(new IptablesSteering(run).install(spec), /iptables-restore .*failed \(2\): bad/);
  const undo = calls.slice(calls.indexOf("iptables-restore -w --noflush") + 1);
  assert(undo.some((c) => c.includes("-X KRELAY_PRE")), undo.join("\n"));
});

Deno.test("IptablesSteering installs nothing when only nft.ts's table queues", async () => {
  const { run, calls } = recorder();
  await new IptablesSteering(run).install(labSpec());
  assert(!calls.some((c) => c.includes("iptables-restore")), calls.join("\n"));
});

Deno.test("IptablesSteering.update() refills installed chains, adds new ones, removes idle ones", async () => {
  const { run, calls } = recorder();
  const steering = new IptablesSteering(run);
  await steering.install(spec);
  calls.length = 0;
  await steering.update(spec);
  assertEquals(calls, ["iptables-restore -w --noflush"]);
  // A script on UDP 53: its chains come with their jumps.
  calls.length = 0;
  await steering.update({ ...spec, scriptedUdpPorts: [53] });
  assertEquals(calls, ["iptables-restore -w --noflush"]);
  // Unloaded: those chains go, jump first; the held SYNs' chain stays.
  calls.length = 0;
  await steering.update(spec);
  assertEquals(calls[0], "iptables-restore -w --noflush");
  const removed = calls.slice(1).filter((c) => c.includes(" -X "));
  assertEquals(removed, [
    "iptables -w -t raw -X KRELAY_PRE",
    "iptables -w -t mangle -X KRELAY_POST",
  ]);
});

const meta = { metainfo: { version: "1.0.6" } };
const table = { table: { family: "ip", name: "mangle" } };
const chain = (name: string, policy = "accept", hook: string | null = "prerouting") => ({
  chain: { family: "ip", table: "mangle", name, ...(hook ? { hook, policy } : {}) },
});

Deno.test("idleBuiltinChains() names the empty accepting built-in chains iptables-nft left", () => {
  const list = (...items: unknown[]) => JSON.stringify({ nftables: [meta, table, ...items] });
  assertEquals(idleBuiltinChains(list(chain("PREROUTING"), chain("POSTROUTING"))), {
    chains: ["PREROUTING", "POSTROUTING"],
    all: true,
  });
  // Someone's rule, policy or chain stays, and so does the table.
  const rule = { rule: { family: "ip", table: "mangle", chain: "PREROUTING", expr: [] } };
  assertEquals(idleBuiltinChains(list(chain("PREROUTING"), chain("FORWARD"), rule)), {
    chains: ["FORWARD"],
    all: false,
  });
  assertEquals(idleBuiltinChains(list(chain("PREROUTING", "drop"))), { chains: [], all: false });
  assertEquals(idleBuiltinChains(list(chain("PREROUTING"), chain("MINE", "accept", null))), {
    chains: ["PREROUTING"],
    all: false,
  });
  assertEquals(idleBuiltinChains("not json"), { chains: [], all: false });
});

Deno.test("IptablesSteering.remove() deletes the idle built-in chains and table iptables-nft left", async () => {
  const calls: string[] = [];
  const left = JSON.stringify({ nftables: [meta, table, chain("PREROUTING")] });
  const run: CommandRunner = (cmd, args) => {
    calls.push(`${cmd} ${args.join(" ")}`);
    const listing = cmd === "nft" && args[0] === "-j";
    if (listing && args.at(-1) === "raw") {
      return Promise.resolve({ code: 1, stdout: "", stderr: "" });
    }
    return Promise.resolve({
      code: args.includes("-D") ? 1 : 0,
      stdout: listing ? left : "",
      stderr: "",
    });
  };
  await new IptablesSteering(run).remove();
  const nft = calls.filter((c) => c.startsWith("nft ") && !c.includes("krelay"));
  assertEquals(nft, [
    "nft -j list table ip raw",
    "nft -j list table ip mangle",
    "nft delete chain ip mangle PREROUTING",
    "nft delete table ip mangle",
  ]);
});
