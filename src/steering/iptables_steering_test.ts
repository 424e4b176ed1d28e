import { deepStrictEqual as assertEquals, ok as assert, rejects } from "node:assert/strict";
import type { CommandResult, CommandRunner } from "../system/command.ts";
import { idleBuiltinChains, IptablesSteering } from "./iptables_steering.ts";
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
  // Two stale jumps, then one failed try per form of jump (three) in each of three places.
  assertEquals(deletes.length, 2 + 3 * 3);
  assertEquals(calls.at(-1), "iptables-restore -w --noflush");
});

Deno.test("IptablesSteering.install() undoes a refused install and reports why", async () => {
  const { run, calls } = recorder({ restoreFails: true });
  await rejects(new IptablesSteering(run).install(spec), /iptables-restore .*failed \(2\): bad/);
  const undo = calls.slice(calls.indexOf("iptables-restore -w --noflush") + 1);
  assert(undo.includes("nft delete table ip krelay"), undo.join("\n"));
  assertEquals(undo.at(-1), "ip route flush table 19282");
});

Deno.test("IptablesSteering.update() replaces the rules in one restore, touching no jump", async () => {
  const { run, calls } = recorder();
  await new IptablesSteering(run).update(spec);
  assertEquals(calls, ["iptables-restore -w --noflush"]);
});

Deno.test("IptablesSteering with kernel_nat sets up the nft table and the TPROXY route before the queue rules", async () => {
  const { run, calls } = recorder();
  await new IptablesSteering(run).install({ ...spec, kernelNat: true });
  assertEquals(calls.slice(-4), [
    "nft -f -",
    "ip rule add fwmark 0x4b52 lookup 19282 priority 19282",
    "ip route replace local 0.0.0.0/0 dev lo table 19282",
    "iptables-restore -w --noflush",
  ]);
});

Deno.test("IptablesSteering.remove() deletes every TPROXY rule a crashed run left, then the route", async () => {
  const calls: string[] = [];
  let staleRules = 2;
  const run: CommandRunner = (cmd, args) => {
    calls.push(`${cmd} ${args.join(" ")}`);
    const fails = cmd === "ip" && args[1] === "del" && staleRules-- <= 0;
    return Promise.resolve({ code: fails ? 2 : 0, stdout: "", stderr: "" });
  };
  await new IptablesSteering(run).remove();
  const ip = calls.filter((c) => c.startsWith("ip "));
  assertEquals(ip, [
    ...Array(3).fill("ip rule del fwmark 0x4b52 lookup 19282 priority 19282"),
    "ip route flush table 19282",
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

/** A runner that records each command with what it was given on stdin. */
function scripted() {
  const calls: { cmd: string; stdin?: string }[] = [];
  const run: CommandRunner = (cmd, args, stdin) => {
    calls.push({ cmd: `${cmd} ${args.join(" ")}`, stdin });
    const deleting = args.includes("-D") || args.includes("del");
    return Promise.resolve({ code: deleting ? 1 : 0, stdout: "", stderr: "" });
  };
  const nftScripts = () => calls.filter((c) => c.cmd === "nft -f -").map((c) => c.stdin ?? "");
  return { run, calls, nftScripts };
}

Deno.test("IptablesSteering with kernel_nat and listeners hands connections over by sk_lookup, not TPROXY", async () => {
  const { run, nftScripts } = scripted();
  const seen: string[] = [];
  const attach = (t: { relayIp: string; tcpPorts: readonly number[] }, l: readonly number[]) => {
    seen.push(`attach ${t.relayIp} ${t.tcpPorts} -> ${l}`);
    return {
      update: (u: typeof t, m: readonly number[]) => seen.push(`update ${u.tcpPorts} -> ${m}`),
      close: () => seen.push("close"),
    };
  };
  const steering = new IptablesSteering(run, "iptables", "nft", "ip", attach);
  const kspec = { ...spec, kernelNat: true, listeners: [11, 12] };
  await steering.install(kspec);
  assert(!nftScripts()[0].includes("dport { 80 } tproxy"), nftScripts()[0]);
  await steering.update({ ...kspec, tcpPorts: [80, 81], listeners: [13] });
  assert(!nftScripts()[1].includes("tproxy"), nftScripts()[1]);
  await steering.remove();
  await steering.remove();
  assertEquals(seen, ["attach 198.51.100.1 80 -> 11,12", "update 80,81 -> 13", "close"]);
});

Deno.test("IptablesSteering falls back to TPROXY when sk_lookup is refused, or without listeners", async () => {
  const refused = scripted();
  const attach = () => {
    throw new Error("bpf program load: EPERM (Operation not permitted)");
  };
  await new IptablesSteering(refused.run, "iptables", "nft", "ip", attach)
    .install({ ...spec, kernelNat: true, listeners: [11] });
  assert(refused.nftScripts()[0].includes("tcp dport { 80 } tproxy to :16000"));
  const none = scripted();
  let attached = 0;
  const counting = () => {
    attached++;
    return { update: () => {}, close: () => {} };
  };
  await new IptablesSteering(none.run, "iptables", "nft", "ip", counting)
    .install({ ...spec, kernelNat: true });
  assertEquals(attached, 0);
  assert(none.nftScripts()[0].includes("tcp dport { 80 } tproxy to :16000"));
});
