/**
 * Text for the control commands: `krelay status`, `krelay nat` and `krelay config get`. Pure
 * functions of the daemon's answers, so the layout is tested without a daemon.
 *
 * @example
 * ```ts
 * import { formatBytes, formatDuration } from "./render.ts";
 * formatDuration(3723); // "1h 02m 03s"
 * formatBytes(1_234_567); // "1.2 MB"
 * ```
 * @module
 */

import Table from "cli-table3";
import { configKeys, valueToText } from "../config/text_values.ts";
import type { NatEntryView, StatusReport } from "./protocol.ts";

/** Rendering options. */
export interface RenderOptions {
  /** ANSI colours (only for a terminal, and not when NO_COLOR is set); default off. */
  color?: boolean;
}

/** Seconds as "3s", "2m 03s", "1h 02m 03s" or "2d 01h 02m 03s" (whole seconds, rounded down). */
export function formatDuration(seconds: number): string {
  let rest = Number.isFinite(seconds) && seconds > 0 ? Math.floor(seconds) : 0;
  const parts: number[] = [];
  for (const unit of [86400, 3600, 60]) {
    parts.push(Math.floor(rest / unit));
    rest %= unit;
  }
  parts.push(rest);
  const first = parts.findIndex((p, i) => p > 0 || i === parts.length - 1);
  return parts.slice(first).map((p, i) =>
    (i === 0 ? String(p) : String(p).padStart(2, "0")) + "dhms"[first + i]
  ).join(" ");
}

const BYTE_UNITS = ["B", "kB", "MB", "GB", "TB", "PB"];

/** Bytes in decimal units with one decimal: "999 B", "1.2 kB", "1.2 MB". */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 1000) return `${Math.max(0, Math.round(bytes) || 0)} B`;
  let unit = 0;
  let value = bytes;
  // Compare the rounded value, so 999,960 bytes is "1.0 MB", not "1000.0 kB".
  while (unit < BYTE_UNITS.length - 1 && Number(value.toFixed(1)) >= 1000) {
    value /= 1000;
    unit++;
  }
  return `${value.toFixed(1)} ${BYTE_UNITS[unit]}`;
}

/** A count with thousands separators: "1,234,567". */
export function formatCount(n: number): string {
  return n.toLocaleString("en-US");
}

/**
 * Every config key as "key = value", aligned, in the schema's order (keys the schema does not
 * know come last). Lists are written as on the command line ("53,5353"); unset keys are empty.
 */
export function renderConfig(config: Record<string, unknown>): string {
  const known = configKeys().map(([key]) => key);
  const keys = [...known, ...Object.keys(config).filter((k) => !known.includes(k))];
  const width = Math.max(...keys.map((k) => k.length));
  return keys.map((key) => `${key.padEnd(width)} = ${valueToText(config[key])}`.trimEnd())
    .join("\n");
}

/** The full `krelay status` report: state, configuration and every counter, grouped. */
export function renderStatus(report: StatusReport, options: RenderOptions = {}): string {
  const color = options.color === true;
  const p = report.packets;
  const sub = (label: string) => `  ${label}`;
  const header = [
    ["state", paint(report.state, report.state === "started" ? GREEN : YELLOW, color)],
    ["pid", String(report.pid)],
    ["uptime", `${formatDuration(report.uptimeSeconds)} (since ${report.startedAt})`],
    ...(report.relayIp === undefined ? [] : [["relay ip", report.relayIp]]),
    ...(report.relayIp6 === undefined ? [] : [["relay ip6", report.relayIp6]]),
  ].map(([k, v]) => `${k.padEnd(report.relayIp6 === undefined ? 8 : 9)}  ${v}`).join("\n");

  const packets: CounterGroup = ["packets", [
    ["seen", p.seen],
    ["rewritten", p.rewritten],
    [sub("UDP requests (U1/U2: client -> server)"), p.udpRequests],
    [sub("UDP replies (U3/U4: server -> client)"), p.udpReplies],
    [sub("UDP first packets left to the kernel"), p.toKernel],
    [sub("ICMP errors about UDP flows"), p.icmpErrors],
    ["TCP segments of scripted services", p.tcpSegments],
    ["passed untouched", p.passed],
    [sub("other protocol"), p.passedOtherProtocol],
    [sub("other port or address"), p.passedOtherPort],
    [sub("reply with no flow"), p.passedNoFlow],
    [sub("IP fragment"), p.passedFragment],
    [sub("malformed"), p.passedMalformed],
    ["dropped", p.dropped],
    [sub("NAT table full"), p.droppedNatFull],
    [sub("UDP first packet, no server up"), p.droppedNoServer ?? 0],
    ["engine errors (passed unchanged)", report.engineErrors],
  ]];

  const d = report.datapath;
  const datapath: CounterGroup = ["datapath (NFQUEUE)", [
    ["received", d.received],
    ["verdicts", d.verdicts],
    ["ENOBUFS (kernel dropped queued packets)", d.enobufs],
    ["errors", d.errors],
    ...(report.queue === undefined ? [] : [
      [sub("kernel: dropped, queue full"), report.queue.queueDropped],
      [sub("kernel: dropped, socket full"), report.queue.userDropped],
      [sub("kernel: packets queued (id sequence)"), report.queue.idSequence],
      [sub("kernel: waiting for a verdict"), report.queue.waiting],
    ] as [string, number][]),
  ]];

  const t = report.tcp;
  const tcp: CounterGroup = ["TCP connections", [
    ["active", t.active],
    ["total", t.total],
    ["failed", t.failed],
    ...(t.ipv6Total > 0 || report.relayIp6 !== undefined
      ? [
        [
          sub("of them IPv6"),
          `${formatCount(t.ipv6Active)} active, ${formatCount(t.ipv6Total)} total`,
        ] as [string, string],
      ]
      : []),
    [sub("reset at the fd limit"), t.fdLimit],
    [sub("no server up (reset at once)"), t.noServer ?? 0],
    ...(report.syn === undefined ? [] : [
      [
        "SYNs held until the server answers",
        report.syn.heldPorts.length > 0 ? `ports ${report.syn.heldPorts.join(",")}` : "none",
      ],
      [
        "SYNs refused by the kernel (no server up)",
        report.syn.refusedPorts.length > 0 ? `ports ${report.syn.refusedPorts.join(",")}` : "none",
      ],
      ...(report.syn.refusedPorts6?.length
        ? [["SYNs refused by the kernel (IPv6)", `ports ${report.syn.refusedPorts6.join(",")}`]]
        : []),
      ...(report.syn.gate === undefined ? [] : [
        [sub("held"), report.syn.gate.held],
        [sub("refused (RST)"), report.syn.gate.refused],
        [sub("unreachable (ICMP)"), report.syn.gate.unreachable],
        [sub("unanswered (dropped)"), report.syn.gate.unanswered],
      ] as [string, number][]),
    ] as [string, string | number][]),
    ["bytes client -> server", formatBytes(t.bytesToServer)],
    ["bytes server -> client", formatBytes(t.bytesToClient)],
    ...report.relayThreads.map((r, i): [string, string] => [
      sub(`relay thread ${i + 1}, CPU ${r.cpu ?? "any"}`),
      `${formatCount(r.active)} active, ${formatCount(r.total)} total`,
    ]),
  ]];

  const n = report.nat;
  const max = report.config.nat_max_entries;
  const nat: CounterGroup = ["NAT table", [
    ["entries", `${formatCount(n.entries)}${max === undefined ? "" : ` of ${formatCount(max)}`}`],
    ["created", n.created],
    ["expired", n.expired],
    ["evicted (full: oldest non-stream flow)", n.evicted],
    [sub("of them unanswered (evicted first)"), n.evictedUnanswered],
    ["refused (full of streams)", n.refused],
    ["kernel UDP flows evicted (full: unanswered)", report.kernelUdp?.evicted ?? 0],
    [sub("evictions that failed"), report.kernelUdp?.evictionErrors ?? 0],
    ...(report.flowtable === undefined ? [] : [
      ["kernel UDP datagrams forwarded at ingress", report.flowtable.forwarded],
      [sub("passed to the rules (a flow's refresh)"), report.flowtable.synced],
    ] as [string, number][]),
  ]];

  const config = renderConfig(report.config as Record<string, unknown>).split("\n")
    .map(sub).join("\n");
  return [
    header,
    ...(report.servers?.length ? [renderServers(report.servers, color)] : []),
    `configuration\n${config}`,
    ...counterTables([packets, datapath, tcp, nat], color),
  ]
    .join("\n\n");
}

const BORDERS = [
  "top",
  "top-mid",
  "top-left",
  "top-right",
  "bottom",
  "bottom-mid",
  "bottom-left",
  "bottom-right",
  "left",
  "left-mid",
  "mid",
  "mid-mid",
  "right",
  "right-mid",
  "middle",
];

/** The real servers: state, each service's check, and the flows relayed to each. */
export function renderServers(servers: StatusReport["servers"], color = false): string {
  // No borders: a list like the configuration's, apart from the counter tables' grid.
  const table = new Table({
    chars: Object.fromEntries(BORDERS.map((k) => [k, ""])),
    style: { ...tableOptions(color).style, "padding-left": 2, "padding-right": 0 },
    head: [
      "server",
      "weight",
      "state",
      "checks",
      "tcp active",
      "tcp total",
      "tcp failed",
      "udp flows",
    ],
    colAligns: ["left", "right", "left", "left", "right", "right", "right", "right"],
  });
  for (const s of servers) {
    const checks = s.checks.map((c) =>
      `${c.service} ${c.state} ${formatDuration(c.forSeconds)}` +
      (c.last !== "" && c.last !== "ok" ? ` (${c.last})` : "")
    );
    table.push([
      s.address + (s.backup ? " (backup)" : ""),
      String(s.weight),
      paint(s.state, s.state === "up" ? GREEN : YELLOW, color),
      checks.join("\n") || "none",
      formatCount(s.tcpActive),
      formatCount(s.tcpTotal),
      formatCount(s.tcpFailed),
      formatCount(s.udpFlows),
    ]);
  }
  return `servers\n${table.toString()}`;
}

/** The `krelay nat` table, one row per entry, then a count line. */
export function renderNat(entries: NatEntryView[], options: RenderOptions = {}): string {
  const udp = entries.filter((e) => e.protocol === "udp").length;
  const count = entries.length === 0
    ? "no NAT entries"
    : `${formatCount(entries.length)} NAT ${entries.length === 1 ? "entry" : "entries"} ` +
      `(${formatCount(udp)} udp, ${formatCount(entries.length - udp)} tcp)`;
  if (entries.length === 0) return count;
  const table = new Table({
    ...tableOptions(options.color === true),
    head: [
      "proto",
      "client",
      "relay",
      "relay port",
      "server",
      "age",
      "idle",
      "state",
      "to server",
      "to client",
    ],
    colAligns: [
      "left",
      "left",
      "left",
      "right",
      "left",
      "right",
      "right",
      "left",
      "right",
      "right",
    ],
  });
  for (const e of entries) {
    table.push([
      // IPv6's as netstat writes them.
      e.family === 6 ? `${e.protocol}6` : e.protocol,
      e.client,
      e.relay,
      String(e.relayPort),
      e.server,
      formatDuration(e.ageSeconds),
      formatDuration(e.idleSeconds),
      e.state,
      formatBytes(e.bytesToServer),
      formatBytes(e.bytesToClient),
    ]);
  }
  return `${table.toString()}\n${count}`;
}

const GREEN = 32;
const YELLOW = 33;

function paint(text: string, code: number, color: boolean): string {
  return color ? `\x1b[${code}m${text}\x1b[39m` : text;
}

/** cli-table3 colours the head and border by default, even into a pipe. Compact: a line under
 * the head only, so the groups read as lists, not as grids. */
function tableOptions(color: boolean): { style: Partial<Table.TableInstanceOptions["style"]> } {
  return {
    style: color
      ? { head: ["cyan"], border: ["grey"], compact: true }
      : { head: [], border: [], compact: true },
  };
}

/** A titled group of counters: labels and values (numbers get thousands separators). */
type CounterGroup = [title: string, rows: [label: string, value: number | string][]];

/** One two-column table per group, all as wide as the widest, so they line up. */
function counterTables(groups: CounterGroup[], color: boolean): string[] {
  const text = (v: number | string) => typeof v === "number" ? formatCount(v) : v;
  const rows = groups.flatMap(([, r]) => r);
  // Cell padding: one space each side.
  const labelWidth = Math.max(...rows.map(([label]) => label.length)) + 2;
  const valueWidth = Math.max(...rows.map(([, value]) => text(value).length)) + 2;
  return groups.map(([title, rows]) => {
    const table = new Table({
      ...tableOptions(color),
      // A title across both columns: cli-table3 takes cells in the head; its typings say strings.
      head: [{ content: title, colSpan: 2 }] as unknown as string[],
      colAligns: ["left", "right"],
      colWidths: [labelWidth, valueWidth],
    });
    for (const [label, value] of rows) table.push([label, text(value)]);
    return table.toString();
  });
}
