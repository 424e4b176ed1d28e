import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import type { CommandRunner } from "../system/command.ts";
import { KernelPath, type OpenFlowtable } from "./kernel_path.ts";
import type { FlowtableConfig } from "./udp_flowtable.ts";
import type { KernelUdpFlow } from "./kernel_udp_flows.ts";
import { labSpec, recorder } from "./_steering_spec.ts";

const spec = labSpec();

/** A KernelPath where BPF is refused (TPROXY), over a runner that records every command. */
function noBpfPath() {
  const calls: { cmd: string; stdin?: string }[] = [];
  const run: CommandRunner = (cmd, args, stdin) => {
    calls.push({ cmd: `${cmd} ${args.join(" ")}`, stdin });
    return Promise.resolve({ code: 0, stdout: "", stderr: "" });
  };
  const noBpf = () => {
    throw new Error("no BPF here");
  };
  // The IPv6 table's queue rule, recorded as a command (nft_queue.ts sends it by netlink).
  const queue6 = (table: string, chain: string, q: number) => {
    calls.push({ cmd: `queue ip6 ${table} ${chain} ${q}` });
  };
  const path = new KernelPath(run, "nft", "ip", noBpf, "ip6tables", undefined, queue6);
  /** The commands run so far, without their input. */
  const cmds = () => calls.map((c) => c.cmd);
  return { calls, cmds, path };
}

Deno.test("KernelPath.install() sets up the IPv4 nft table and no policy route", async () => {
  const { run, calls } = recorder();
  await new KernelPath(run).install(spec);
  // The table delivers the servers' answers itself: no rule costs every routed packet.
  assertEquals(calls.at(-1), "nft -f -");
  assert(!calls.some((c) => c.startsWith("ip rule add") || c.startsWith("ip route replace")));
});

Deno.test("KernelPath puts the queue rule in a new IPv4 table only, once", async () => {
  const { run, calls } = recorder();
  const queued: string[] = [];
  const path = new KernelPath(run, "nft", "ip", undefined, "ip6tables", (table, chain, q) => {
    // After the table is made: its chain must exist.
    queued.push(`${table} ${chain} ${q} after ${calls.filter((c) => c === "nft -f -").length}`);
  });
  await path.install(labSpec({ queue: 5 }));
  assertEquals(queued, ["krelay to_queue 5 after 1"]);
  // An update keeps the table, and its rule.
  await path.update(labSpec({ queue: 5, udpPorts: [53, 54] }));
  assertEquals(queued.length, 1);
});

Deno.test("KernelPath applies the table without the TCP refusal where the kernel refuses reject in prerouting", async () => {
  const scripts: string[] = [];
  const run: CommandRunner = (cmd, args, input) => {
    if (cmd === "nft" && args[0] === "-f") scripts.push(input ?? "");
    const fails = cmd === "nft" && args[0] === "-f" && (input ?? "").includes("reject");
    return Promise.resolve({ code: fails ? 1 : 0, stdout: "", stderr: fails ? "EOPNOTSUPP" : "" });
  };
  const path = new KernelPath(run);
  const refused = labSpec({ tcpPorts: [80], refusedTcpPorts: [80] });
  await path.install(refused);
  assertEquals(scripts.map((s) => s.includes("reject")), [true, false]);
  // Said once: later updates do not try again.
  await path.update(refused);
  assertEquals(scripts.map((s) => s.includes("reject")), [true, false, false]);
});

Deno.test("KernelPath.remove() deletes every TPROXY rule a crashed run left, then the route, for both families", async () => {
  const calls: string[] = [];
  const stale: Record<string, number> = { "4": 2, "6": 1 };
  const run: CommandRunner = (cmd, args) => {
    calls.push(`${cmd} ${args.join(" ")}`);
    const family = args[0] === "-6" ? "6" : "4";
    const fails = cmd === "ip" && args.includes("del") && stale[family]-- <= 0;
    return Promise.resolve({ code: fails ? 2 : 0, stdout: "", stderr: "" });
  };
  await new KernelPath(run).remove();
  const ip = calls.filter((c) => c.startsWith("ip "));
  assertEquals(ip, [
    ...Array(3).fill("ip rule del fwmark 0x4b52 lookup 19282 priority 19282"),
    "ip route flush table 19282",
    ...Array(2).fill("ip -6 rule del fwmark 0x4b52 lookup 19282 priority 19282"),
    "ip -6 route flush table 19282",
  ]);
  assertEquals(calls.filter((c) => c.startsWith("nft ")), [
    "nft delete table ip krelay",
    "nft -j list table ip6 mangle",
    "nft delete table ip6 krelay",
  ]);
  assertEquals(calls.filter((c) => c.startsWith("ip6tables ")), ["ip6tables -w -t mangle -S"]);
});

Deno.test("KernelPath.remove() deletes the ICMPv6 queue rules of any queue number, and nothing else", async () => {
  const calls: string[] = [];
  const listed = [
    "-P PREROUTING ACCEPT",
    "-A PREROUTING -p ipv6-icmp -m mark --mark 0x4b55 -m comment --comment krelay -j NFQUEUE --queue-num 7 --queue-bypass",
    "-A PREROUTING -p udp -j ACCEPT",
    "-A OUTPUT -p ipv6-icmp -m mark --mark 0x4b55 -m comment --comment krelay -j NFQUEUE --queue-num 7 --queue-bypass",
  ].join("\n");
  const run: CommandRunner = (cmd, args) => {
    calls.push(`${cmd} ${args.join(" ")}`);
    const stdout = cmd === "ip6tables" && args.includes("-S") ? listed : "";
    return Promise.resolve({ code: cmd === "ip" ? 2 : 0, stdout, stderr: "" });
  };
  await new KernelPath(run).remove();
  assertEquals(calls.filter((c) => c.startsWith("ip6tables ") && c.includes(" -D ")), [
    "ip6tables -w -t mangle -D PREROUTING -p ipv6-icmp -m mark --mark 0x4b55 -m comment --comment krelay -j NFQUEUE --queue-num 7 --queue-bypass",
    "ip6tables -w -t mangle -D OUTPUT -p ipv6-icmp -m mark --mark 0x4b55 -m comment --comment krelay -j NFQUEUE --queue-num 7 --queue-bypass",
  ]);
});

Deno.test("KernelPath installs the ip6 table only with an IPv6 relay and server, and updates it in place", async () => {
  const { calls, path } = noBpfPath();
  await path.install(labSpec({ relayIp6: "2001:db8:1::1" }));
  const scripts = () => calls.filter((c) => c.cmd === "nft -f -").map((c) => c.stdin ?? "");
  assertEquals(scripts().length, 1);
  assert(!calls.some((c) => c.cmd.startsWith("ip -6 rule add")));
  const dual = labSpec({ relayIp6: "2001:db8:1::1", realIp6: "2001:db8:2::10" });
  await path.update(dual);
  assert(scripts()[2].startsWith("table ip6 krelay {"), scripts()[2]);
  assert(scripts()[2].includes("ip6 daddr 2001:db8:1::1 tcp dport { 80 } tproxy to :16000"));
  // The queue rule goes in the new table's own chain, once: no ip6tables rule (no hook of
  // ip6tables-nft's) for the ICMPv6 errors and first packets.
  const queued = calls.map((c) => c.cmd).filter((c) => c.startsWith("queue "));
  assertEquals(queued, ["queue ip6 krelay to_queue 0"]);
  const made = calls.findIndex((c) => c.cmd === "nft -f -" && c.stdin === scripts()[2]);
  assert(calls.findIndex((c) => c.cmd.startsWith("queue ")) > made);
  assert(!calls.some((c) => c.cmd.startsWith("ip6tables") && c.cmd.includes(" -A ")));
  // The table delivers the servers' answers itself: no policy rule or route, of either family.
  assert(!calls.some((c) => / (rule|route) (add|replace) /.test(c.cmd)), JSON.stringify(calls));
  await path.update(dual);
  assertEquals(calls.filter((c) => c.cmd.startsWith("queue ")).length, 1);
  // Each server's flow set is added if new (kept, with its flows, if not), then the rules.
  assert(scripts()[4].startsWith("add set ip6 krelay udp_flows_0 {"), scripts()[4]);
  assert(scripts()[4].includes("\nflush chain ip6 krelay divert\n"), scripts()[4]);
  calls.length = 0;
  await path.update(labSpec());
  assert(calls.some((c) => c.cmd === "nft delete table ip6 krelay"));
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

Deno.test("KernelPath with listeners hands connections over by sk_lookup, not TPROXY", async () => {
  const { run, nftScripts } = scripted();
  const seen: string[] = [];
  const attach = (t: { relayIp?: string; tcpPorts: readonly number[] }, l: readonly number[]) => {
    seen.push(`attach ${t.relayIp} ${t.tcpPorts} -> ${l}`);
    return {
      update: (u: typeof t, m: readonly number[]) => seen.push(`update ${u.tcpPorts} -> ${m}`),
      close: () => seen.push("close"),
    };
  };
  const steering = new KernelPath(run, "nft", "ip", attach);
  const kspec = { ...spec, listeners: [11, 12] };
  await steering.install(kspec);
  assert(!nftScripts()[0].includes("dport { 80 } tproxy"), nftScripts()[0]);
  await steering.update({ ...kspec, tcpPorts: [80, 81], listeners: [13] });
  // No TPROXY for the clients' segments (the servers' answers' delivery is nft.ts's).
  assert(!nftScripts()[1].includes("tproxy to :"), nftScripts()[1]);
  await steering.remove();
  await steering.remove();
  assertEquals(seen, ["attach 198.51.100.1 80 -> 11,12", "update 80,81 -> 13", "close"]);
});

Deno.test("KernelPath falls back to TPROXY when sk_lookup is refused, or without listeners", async () => {
  const refused = scripted();
  const attach = () => {
    throw new Error("bpf program load: EPERM (Operation not permitted)");
  };
  await new KernelPath(refused.run, "nft", "ip", attach)
    .install({ ...spec, listeners: [11] });
  assert(refused.nftScripts()[0].includes("tcp dport { 80 } tproxy to :16000"));
  const none = scripted();
  let attached = 0;
  const counting = () => {
    attached++;
    return { update: () => {}, close: () => {} };
  };
  await new KernelPath(none.run, "nft", "ip", counting)
    .install(spec);
  assertEquals(attached, 0);
  assert(none.nftScripts()[0].includes("tcp dport { 80 } tproxy to :16000"));
});

Deno.test("KernelPath queues scripted IPv6 services by ip6tables rules, added and removed with the scripts", async () => {
  const { calls, cmds, path } = noBpfPath();
  const dual = { relayIp6: "2001:db8:1::1", realIp6: "2001:db8:2::10" };
  await path.install(labSpec(dual));
  const scripted = () => cmds().filter((c) => c.includes("multiport"));
  assertEquals(scripted(), []);
  await path.update(labSpec({ ...dual, scriptedUdpPorts: [53] }));
  const q = "-m comment --comment krelay -j NFQUEUE --queue-num 0 --queue-bypass";
  assertEquals(scripted(), [
    `ip6tables -w -t mangle -A PREROUTING -d 2001:db8:1::1/128 -p udp -m multiport --dports 53 ${q}`,
    `ip6tables -w -t mangle -A POSTROUTING -p udp -m multiport --sports 53 ${q}`,
  ]);
  // The ip6 table no longer NATs it: no flow set rule for port 53.
  const last = cmds().filter((c) => c === "nft -f -").length;
  assert(last >= 3);
  calls.length = 0;
  await path.update(labSpec({ ...dual, scriptedUdpPorts: [53] }));
  assertEquals(scripted(), []);
  await path.update(labSpec(dual));
  assertEquals(scripted(), [
    `ip6tables -w -t mangle -D PREROUTING -d 2001:db8:1::1/128 -p udp -m multiport --dports 53 ${q}`,
    `ip6tables -w -t mangle -D POSTROUTING -p udp -m multiport --sports 53 ${q}`,
  ]);
});

Deno.test("KernelPath with IPv6 only installs no ip table and no policy rule", async () => {
  const { calls, path } = noBpfPath();
  const only6 = labSpec({
    relayIp: undefined,
    realIp: undefined,
    relayIp6: "2001:db8:1::1",
    realIp6: "2001:db8:2::10",
  });
  await path.install(only6);
  const scripts = calls.filter((c) => c.cmd === "nft -f -").map((c) => c.stdin ?? "");
  assertEquals(scripts.length, 1);
  assert(scripts[0].startsWith("table ip6 krelay {"), scripts[0]);
  assert(!calls.some((c) => c.cmd.startsWith("ip rule add")), JSON.stringify(calls));
  assert(!calls.some((c) => c.cmd.startsWith("ip -6 rule add")), JSON.stringify(calls));
});

Deno.test("KernelPath queues IPv6 clients' held SYNs by ip6tables; a change of them alone touches nothing else", async () => {
  const { calls, cmds, path } = noBpfPath();
  const dual = { relayIp6: "2001:db8:1::1", realIp6: "2001:db8:2::10", tcpPorts: [80, 81] };
  await path.install(labSpec(dual));
  calls.length = 0;
  await path.update(labSpec({ ...dual, heldSynPorts: [81, 82] }));
  const q = "-m comment --comment krelay -j NFQUEUE --queue-num 0 --queue-bypass";
  const rule = `PREROUTING -d 2001:db8:1::1/128 -p tcp --syn -m multiport --dports 81 ${q}`;
  // No table, no route: the one rule (82 is no service).
  assertEquals(cmds(), [`ip6tables -w -t mangle -A ${rule}`]);
  calls.length = 0;
  await path.update(labSpec({ ...dual, heldSynPorts: [] }));
  assertEquals(cmds(), [`ip6tables -w -t mangle -D ${rule}`]);
  // Anything else changes the tables as ever, the held SYNs' rule with them.
  calls.length = 0;
  await path.update(labSpec({ ...dual, heldSynPorts: [81], refusedTcpPorts6: [80] }));
  assert(cmds().includes(`ip6tables -w -t mangle -A ${rule}`), cmds().join("\n"));
  assert(cmds().filter((c) => c === "nft -f -").length === 2, cmds().join("\n"));
});

/** A KernelPath with a fake flowtable that records what is done to it. */
function flowtablePath(refuse = false) {
  const { run } = recorder();
  const events: string[] = [];
  const open: OpenFlowtable = (config) => {
    if (refuse) throw new Error("no tcx here");
    events.push(`open ${config.relayIp} ${config.timeoutMs} ${config.maxEntries}`);
    const table = {
      config,
      attach: () => {
        events.push("attach");
        return 2;
      },
      reconfigure: (c: FlowtableConfig) => {
        table.config = c;
        events.push(`reconfigure ${c.relayIp} ${c.timeoutMs}`);
      },
      counters: () => ({ forwarded: 7, synced: 1, learnedRequests: 1, learnedReplies: 1 }),
      forget: (flows: readonly KernelUdpFlow[]) =>
        events.push(`forget ${flows.map((f) => `${f.client}:${f.clientPort}`).join(" ")}`),
      close: () => events.push("close"),
    };
    return table;
  };
  const path = new KernelPath(run, "nft", "ip", undefined, "ip6tables", undefined, () => {}, open);
  return { path, events };
}

Deno.test("KernelPath opens the UDP flowtable with the table, and gives it new maps when what its flows were learned under changes", async () => {
  const { path, events } = flowtablePath();
  await path.install(labSpec({ udpTimeout: 2, udpPorts: [53, 54] }));
  assertEquals(events, ["open 198.51.100.1 2000 65536", "attach"]);
  assertEquals(path.flowtable()?.forwarded, 7);
  // Flows evicted from the table leave the flowtable at once.
  const evicted = { client: "198.51.100.10", clientPort: 5300, servicePort: 53 };
  path.forgetUdpFlows([{ ...evicted, server: "203.0.113.10", expiresSeconds: 1 }]);
  assertEquals(events.splice(2), ["forget 198.51.100.10:5300"]);
  // A TCP change: the flows stay; interfaces added since are attached.
  await path.update(labSpec({ udpTimeout: 2, udpPorts: [53, 54], tcpPorts: [80, 443] }));
  assertEquals(events.slice(2), ["attach"]);
  // A service scripted since: its flows must reach the queue, so none is carried on.
  await path.update(labSpec({ udpTimeout: 2, udpPorts: [53, 54], scriptedUdpPorts: [54] }));
  assertEquals(events.slice(3), ["reconfigure 198.51.100.1 2000", "attach"]);
  await path.update(labSpec({ udpTimeout: 5, udpPorts: [53, 54], scriptedUdpPorts: [54] }));
  assertEquals(events.slice(5), ["reconfigure 198.51.100.1 5000", "attach"]);
  // No UDP service NATed by the kernel: no flowtable.
  await path.update(labSpec({ udpPorts: [54], scriptedUdpPorts: [54] }));
  assertEquals(events.slice(7), ["close"]);
  assertEquals(path.flowtable(), undefined);
  await path.update(labSpec());
  await path.remove();
  assertEquals(events.slice(8), ["open 198.51.100.1 30000 65536", "attach", "close"]);
});

Deno.test("KernelPath goes on without the flowtable where the kernel refuses it, and does not ask again", async () => {
  const { path, events } = flowtablePath(true);
  await path.install(labSpec());
  await path.update(labSpec({ udpPorts: [53, 54] }));
  assertEquals(events, []);
  assertEquals(path.flowtable(), undefined);
  await path.remove();
});
