import { deepStrictEqual as assertEquals, match, ok } from "node:assert/strict";
import { sampleNat, sampleReport } from "./_report_fixture.ts";
import {
  formatBytes,
  formatCount,
  formatDuration,
  renderConfig,
  renderNat,
  renderStatus,
} from "./render.ts";

/** The start of an ANSI colour sequence. */
const ESC = "\x1b[";

/** The line of `text` that contains `label`, for checking a label and its value together. */
function lineWith(text: string, label: string): string {
  const line = text.split("\n").find((l) => l.includes(label));
  ok(line !== undefined, `no line with ${label} in:\n${text}`);
  return line;
}

/** The table row whose first cell starts with `label` (indentation ignored). */
function row(text: string, label: string): string {
  const line = text.split("\n").find((l) =>
    /^│ +/.test(l) && l.replace(/^│ +/, "").startsWith(label)
  );
  ok(line !== undefined, `no row ${label} in:\n${text}`);
  return line;
}

Deno.test("formatDuration() pads every unit after the first", () => {
  assertEquals(formatDuration(0), "0s");
  assertEquals(formatDuration(3), "3s");
  assertEquals(formatDuration(59.9), "59s");
  assertEquals(formatDuration(60), "1m 00s");
  assertEquals(formatDuration(123), "2m 03s");
  assertEquals(formatDuration(3723), "1h 02m 03s");
  assertEquals(formatDuration(3600), "1h 00m 00s");
  assertEquals(formatDuration(2 * 86400 + 3723), "2d 01h 02m 03s");
});

Deno.test("formatDuration() shows nonsense as 0s", () => {
  assertEquals(formatDuration(-5), "0s");
  assertEquals(formatDuration(NaN), "0s");
});

Deno.test("formatBytes() uses decimal units with one decimal", () => {
  assertEquals(formatBytes(0), "0 B");
  assertEquals(formatBytes(999), "999 B");
  assertEquals(formatBytes(1000), "1.0 kB");
  assertEquals(formatBytes(1234), "1.2 kB");
  assertEquals(formatBytes(1_234_567), "1.2 MB");
  assertEquals(formatBytes(9_876_543_210), "9.9 GB");
  assertEquals(formatBytes(2e15), "2.0 PB");
  assertEquals(formatBytes(5e18), "5000.0 PB");
});

Deno.test("formatBytes() moves to the next unit when rounding reaches 1000", () => {
  assertEquals(formatBytes(999_960), "1.0 MB");
  assertEquals(formatBytes(999_940), "999.9 kB");
});

Deno.test("formatCount() separates thousands", () => {
  assertEquals(formatCount(0), "0");
  assertEquals(formatCount(1_234_567), "1,234,567");
});

Deno.test("renderConfig() writes every key = value in schema order, lists with commas", () => {
  const text = renderConfig({ udp_ports: [53, 5353], real_ip: "203.0.113.10", gport: 16000 });
  const lines = text.split("\n");
  match(lines[0], /^real_ip += 203\.0\.113\.10$/);
  match(lineWith(text, "udp_ports"), /^udp_ports += 53,5353$/);
  // Unset keys are listed, empty; every "=" is in the same column.
  match(lineWith(text, "relay_ip"), /^relay_ip +=$/);
  assertEquals(new Set(lines.map((l) => l.indexOf("="))).size, 1);
  ok(lines.some((l) => l.startsWith("log_level")));
});

Deno.test("renderConfig() lists keys the schema does not know last", () => {
  const lines = renderConfig({ real_ip: "203.0.113.10", zzz_new: 1 }).split("\n");
  match(lines.at(-1)!, /^zzz_new += 1$/);
});

Deno.test("renderStatus() shows state, pid, uptime and relay ip", () => {
  const text = renderStatus(sampleReport());
  match(lineWith(text, "state"), /started/);
  match(lineWith(text, "pid"), /4242/);
  match(lineWith(text, "uptime"), /1h 02m 03s \(since 2026-11-21T01:22:11\.000Z\)/);
  match(lineWith(text, "relay ip"), /198\.51\.100\.1/);
});

Deno.test("renderStatus() shows the configuration as key = value", () => {
  const text = renderStatus(sampleReport());
  match(lineWith(text, "udp_ports"), /udp_ports += 53,5353/);
  match(lineWith(text, "real_ip "), /real_ip += 203\.0\.113\.10/);
  match(lineWith(text, "control_socket"), /\/run\/krelay\/krelay\.sock/);
});

Deno.test("renderStatus() shows packets rewritten by flow", () => {
  const text = renderStatus(sampleReport());
  match(row(text, "seen"), /1,234,567/);
  match(row(text, "rewritten"), /1,100,001/);
  match(row(text, "UDP requests"), /500,002/);
  match(row(text, "UDP replies"), /499,003/);
  match(row(text, "TCP segments of scripted"), /50,004/);
  match(row(text, "UDP first packets"), /1,006/);
});

Deno.test("renderStatus() shows packets passed and dropped by reason, and engine errors", () => {
  const text = renderStatus(sampleReport());
  match(row(text, "passed untouched"), /134,008/);
  match(row(text, "other protocol"), /100,009/);
  match(row(text, "other port"), /30,010/);
  match(row(text, "reply with no flow"), /3,011/);
  match(row(text, "IP fragment"), / 12 /);
  match(row(text, "malformed"), / 13 /);
  match(row(text, "dropped"), / 14 /);
  match(row(text, "NAT table full"), / 15 /);
  match(row(text, "engine errors"), / 16 /);
});

Deno.test("renderStatus() shows ENOBUFS", () => {
  const text = renderStatus(sampleReport());
  match(row(text, "ENOBUFS"), / 19 /);
  match(row(text, "received"), /1,234,517/);
  match(row(text, "verdicts"), /1,234,518/);
  match(row(text, "errors"), / 20 /);
});

Deno.test("renderStatus() shows the kernel's queue drops and the resets at the fd limit", () => {
  const text = renderStatus(sampleReport());
  match(row(text, "kernel: dropped, queue full"), /1,049,063/);
  match(row(text, "kernel: dropped, socket full"), / 33 /);
  match(row(text, "kernel: packets queued"), /2,345,678/);
  match(row(text, "kernel: waiting"), / 32 /);
  match(row(text, "reset at the fd"), / 31 /);
  const without = renderStatus({ ...sampleReport(), queue: undefined });
  assertEquals(without.includes("kernel: dropped"), false);
});

Deno.test("renderStatus() shows TCP connections with bytes in human units", () => {
  const text = renderStatus(sampleReport());
  match(row(text, "active"), / 21 /);
  match(row(text, "total"), /22,022/);
  match(row(text, "failed"), / 23 /);
  match(row(text, "bytes client -> server"), /1\.2 MB/);
  match(row(text, "bytes server -> client"), /9\.9 GB/);
});

Deno.test("renderStatus() shows each relay thread's CPU and connections, and none without", () => {
  const report = sampleReport();
  assertEquals(renderStatus(report).includes("relay thread"), false);
  report.relayThreads = [
    { cpu: 0, active: 3, total: 12_345 },
    { cpu: null, active: 0, total: 7 },
  ];
  const text = renderStatus(report);
  match(row(text, "relay thread 1, CPU 0"), /3 active, 12,345 total/);
  match(row(text, "relay thread 2, CPU any"), /0 active, 7 total/);
});

Deno.test("renderStatus() shows the NAT table's entries against its size", () => {
  const text = renderStatus(sampleReport());
  match(row(text, "entries"), /24 of 65,536/);
  match(row(text, "created"), /25,025/);
  match(row(text, "expired"), /26,026/);
  match(row(text, "evicted"), / 27 /);
  match(row(text, "refused"), / 28 /);
});

Deno.test("renderStatus() has no colours unless asked, and colours when asked", () => {
  const report = { ...sampleReport(), state: "stopped" as const };
  ok(!renderStatus(report).includes(ESC));
  ok(renderStatus(report, { color: true }).includes(`${ESC}33mstopped${ESC}39m`));
});

Deno.test("renderStatus() lines up the counter tables", () => {
  const widths = new Set(
    renderStatus(sampleReport()).split("\n").filter((l) => l.startsWith("│")).map((l) => l.length),
  );
  assertEquals(widths.size, 1);
});

Deno.test("renderNat() shows one row per entry with ages and bytes, then a count", () => {
  const text = renderNat(sampleNat());
  const header = lineWith(text, "proto");
  for (const column of ["client", "relay", "relay port", "server", "age", "idle", "state"]) {
    ok(header.includes(column), column);
  }
  match(header, /to server.*to client/);
  const udp = lineWith(text, "udp ");
  match(udp, /198\.51\.100\.10:40000 .*198\.51\.100\.1:53 .* 53 .*203\.0\.113\.10:53/);
  match(udp, /12s .* 3s .*replied .* 61 B .* 77 B/);
  const tcp = lineWith(text, "tcp ");
  match(tcp, /198\.51\.100\.1:80 .* 20001 .*203\.0\.113\.10:80/);
  match(tcp, /1h 02m 03s .* 1m 05s .*established .* 1\.2 MB .* 104\.9 MB/);
  assertEquals(text.split("\n").at(-1), "2 NAT entries (1 udp, 1 tcp)");
  ok(!text.includes(ESC));
});

Deno.test("renderNat() says so when the table is empty", () => {
  assertEquals(renderNat([]), "no NAT entries");
});

Deno.test("renderNat() counts one entry in the singular", () => {
  assertEquals(renderNat(sampleNat().slice(0, 1)).split("\n").at(-1), "1 NAT entry (1 udp, 0 tcp)");
});

Deno.test("renderStatus() lists the servers with their state, checks and flows", () => {
  const report = sampleReport();
  report.servers.push({
    address: "203.0.113.20",
    weight: 3,
    backup: true,
    state: "down",
    checks: [{
      service: "udp/53",
      state: "down",
      forSeconds: 12,
      checks: 40,
      checkFailures: 41,
      passiveFailures: 0,
      last: "no answer in 1000 ms",
    }],
    tcpActive: 0,
    tcpTotal: 42,
    tcpFailed: 43,
    udpFlows: 0,
  });
  const text = renderStatus(report);
  const lines = text.split("\n");
  const first = lines.find((l) => l.includes("203.0.113.10"))!;
  for (const cell of ["1", "up", "tcp/80 up 1h 01m 40s", "34", "35", "36", "37"]) {
    ok(first.includes(cell), `${cell} in ${first}`);
  }
  const second = lines.find((l) => l.includes("203.0.113.20"))!;
  for (
    const cell of ["(backup)", "3", "down", "udp/53 down 12s (no answer in 1000 ms)", "42", "43"]
  ) {
    ok(second.includes(cell), `${cell} in ${second}`);
  }
  match(row(text, "UDP first packet, no server up"), / 29 /);
  match(row(text, "no server up (reset at once)"), / 30 /);
});

Deno.test("renderStatus() shows the relay's IPv6 address and the IPv6 clients' connections", () => {
  const report = {
    ...sampleReport(),
    relayIp6: "2001:db8:1::1",
    tcp: { ...sampleReport().tcp, ipv6Active: 3, ipv6Total: 44 },
  };
  const text = renderStatus(report);
  ok(text.includes("\nrelay ip   198.51.100.1\n"), text);
  ok(text.includes("\nrelay ip6  2001:db8:1::1\n"), text);
  match(text, /of them IPv6\s+│\s+3 active, 44 total/);
  ok(!renderStatus(sampleReport()).includes("IPv6"));
});
