/**
 * Prometheus metrics: the counters of `krelay status`, served over HTTP at /metrics through
 * prom-client, with its process metrics (CPU, memory, file descriptors, start time).
 *
 * Every series comes from {@link METRICS}, one table mapping status fields to metrics; the
 * status fields that have no series of their own are listed, with the reason, in
 * {@link NOT_EXPORTED}. The test walks the status report against both, so a new counter
 * cannot be left out. Names follow Prometheus' conventions: `_total` on counters only, no
 * counter and gauge sharing a stem, a start time rather than an uptime.
 *
 * @module
 */

import { Counter, Gauge, Registry } from "prom-client";
// prom-client's process collectors, one by one: its collectDefaultMetrics also adds
// Node-specific ones that mean little under Deno (event loop lag, heap spaces) and a gauge
// named `nodejs_active_resources_total`.
import processCpuTotal from "prom-client/lib/metrics/processCpuTotal.js";
import processStartTime from "prom-client/lib/metrics/processStartTime.js";
import osMemoryHeap from "prom-client/lib/metrics/osMemoryHeap.js";
import processOpenFileDescriptors from "prom-client/lib/metrics/processOpenFileDescriptors.js";
import processMaxFileDescriptors from "prom-client/lib/metrics/processMaxFileDescriptors.js";
import pkg from "../../package.json" with { type: "json" };
import type { DatapathStats } from "../queue/queue.ts";
import type { KernelQueueCounters } from "../queue/kernel_counters.ts";
import type { PacketCounters } from "../nat/counters.ts";
import type { NatTableStats } from "../nat/nat_table.ts";
import type { RelayThreadView } from "../relay/relay_threads.ts";
import type { CheckView, ServerView } from "../daemon/servers.ts";
import type { TcpRelayStats } from "../relay/stats.ts";
import type { StatusReport } from "../daemon/reports.ts";
import type { KernelUdpStats } from "../daemon/kernel_udp.ts";
import type { FlowtableCounters } from "../steering/udp_flowtable.ts";
import { logger } from "../system/log.ts";

const log = logger("metrics");

type NumberKeys<T> = { [K in keyof T]-?: T[K] extends number ? K : never }[keyof T] & string;

/** The sections of the status report whose numbers are metrics. */
interface Sections {
  packets: PacketCounters;
  datapath: DatapathStats;
  /** Absent while no queue is bound: its series are left out then. */
  queue: KernelQueueCounters;
  tcp: TcpRelayStats;
  nat: NatTableStats;
  kernelUdp: KernelUdpStats;
  /** Absent while there is no flowtable: its series are left out then. */
  flowtable: FlowtableCounters;
}

/** A number in the status report, by its path: "packets.udpRequests", "engineErrors". */
export type StatusField =
  | "engineErrors"
  | { [S in keyof Sections]: `${S}.${NumberKeys<Sections[S]>}` }[keyof Sections];

/**
 * A number of each element of a list in the report, one series per element: a relay thread's
 * "relayThreads[].total", a server's "servers[].tcpActive", a server's check of a service
 * "servers[].checks[].checks".
 */
export type ListField =
  | `relayThreads[].${NumberKeys<RelayThreadView>}`
  | `servers[].${NumberKeys<ServerView>}`
  | `servers[].checks[].${NumberKeys<CheckView>}`;

/** One series: a status field, with the labels that tell it from its family's others. */
export interface SeriesSpec {
  field: StatusField | ListField;
  /** Fixed labels. A list field has one series per element, with its {@link LIST_LABELS}. */
  labels?: Record<string, string>;
}

/** One metric family and the status fields of its series. */
export interface MetricSpec {
  name: string;
  type: "counter" | "gauge";
  help: string;
  series: readonly SeriesSpec[];
}

/** The labels that tell the elements of each list apart, and how each element gets them. */
export const LIST_LABELS: Readonly<
  Record<string, { names: string[]; of: (element: never, index: number) => Record<string, string> }>
> = {
  "relayThreads[]": {
    names: ["thread", "cpu"],
    of: (t: RelayThreadView, i: number) => ({
      thread: String(i + 1),
      cpu: t.cpu === null ? "any" : String(t.cpu),
    }),
  },
  "servers[]": { names: ["server"], of: (s: ServerView) => ({ server: s.address }) },
  "checks[]": { names: ["service"], of: (c: CheckView) => ({ service: c.service }) },
};

/** A family of one series, `field`. */
function metric(
  type: MetricSpec["type"],
  name: string,
  help: string,
  field: SeriesSpec["field"],
): MetricSpec {
  return { name, type, help, series: [{ field }] };
}

/** A family of series told apart by the one label `label`: each field with its value. */
function byLabel(
  type: MetricSpec["type"],
  name: string,
  help: string,
  label: string,
  values: readonly [SeriesSpec["field"], string][],
): MetricSpec {
  return {
    name,
    type,
    help,
    series: values.map(([field, v]) => ({ field, labels: { [label]: v } })),
  };
}

/** Every metric of the status report (beside up, start time and build info, see below). */
export const METRICS: readonly MetricSpec[] = [
  metric("counter", "krelay_packets_seen_total", "Packets the engine looked at.", "packets.seen"),
  byLabel("counter", "krelay_packets_rewritten_total", "Packets rewritten, by flow.", "flow", [
    ["packets.udpRequests", "udp_request"],
    ["packets.udpReplies", "udp_reply"],
    ["packets.icmpErrors", "icmp_error"],
  ]),
  metric(
    "counter",
    "krelay_udp_first_packets_total",
    "UDP flows' first packets recorded and left to the kernel's NAT.",
    "packets.toKernel",
  ),
  metric(
    "counter",
    "krelay_tcp_scripted_segments_total",
    "TCP segments of scripted services passed on after their scripts.",
    "packets.tcpSegments",
  ),
  byLabel(
    "counter",
    "krelay_packets_passed_total",
    "Packets accepted untouched, by reason.",
    "reason",
    [
      ["packets.passedOtherProtocol", "other_protocol"],
      ["packets.passedOtherPort", "other_port"],
      ["packets.passedNoFlow", "no_flow"],
      ["packets.passedFragment", "fragment"],
      ["packets.passedMalformed", "malformed"],
    ],
  ),
  byLabel("counter", "krelay_packets_dropped_total", "Packets dropped, by reason.", "reason", [[
    "packets.droppedNatFull",
    "nat_full",
  ], ["packets.droppedNoServer", "no_server"]]),
  metric(
    "counter",
    "krelay_engine_errors_total",
    "Packets whose processing failed.",
    "engineErrors",
  ),
  metric(
    "counter",
    "krelay_queue_received_total",
    "Packets received from the kernel.",
    "datapath.received",
  ),
  metric(
    "counter",
    "krelay_queue_verdicts_total",
    "Verdicts sent to the kernel.",
    "datapath.verdicts",
  ),
  metric(
    "counter",
    "krelay_queue_enobufs_total",
    "Times the kernel dropped queued packets.",
    "datapath.enobufs",
  ),
  metric("counter", "krelay_queue_errors_total", "Netlink errors.", "datapath.errors"),
  metric(
    "gauge",
    "krelay_queue_waiting_packets",
    "Packets in krelay's queue waiting for a verdict (the kernel's count).",
    "queue.waiting",
  ),
  byLabel(
    "counter",
    "krelay_queue_dropped_total",
    "Packets the kernel dropped from krelay's queue: the queue full, or the socket's buffer.",
    "reason",
    [["queue.queueDropped", "queue_full"], ["queue.userDropped", "user_buffer_full"]],
  ),
  metric(
    "counter",
    "krelay_queue_kernel_queued_total",
    "Packets the kernel queued since krelay bound its queue (the id sequence).",
    "queue.idSequence",
  ),
  metric("gauge", "krelay_tcp_connections_active", "TCP connections being relayed.", "tcp.active"),
  metric(
    "gauge",
    "krelay_tcp_ipv6_connections_active",
    "TCP connections from IPv6 clients being relayed (of krelay_tcp_connections_active).",
    "tcp.ipv6Active",
  ),
  metric(
    "counter",
    "krelay_tcp_ipv6_connections_total",
    "TCP connections accepted from IPv6 clients (of krelay_tcp_connections_total).",
    "tcp.ipv6Total",
  ),
  metric("counter", "krelay_tcp_connections_total", "TCP connections accepted.", "tcp.total"),
  metric(
    "counter",
    "krelay_tcp_connections_failed_total",
    "TCP connections not relayed.",
    "tcp.failed",
  ),
  metric(
    "counter",
    "krelay_tcp_connections_no_server_total",
    "Of the TCP connections not relayed, those reset at once: no server of theirs was up.",
    "tcp.noServer",
  ),
  byLabel(
    "counter",
    "krelay_tcp_bytes_total",
    "Bytes relayed over TCP, by direction.",
    "direction",
    [["tcp.bytesToServer", "to_server"], ["tcp.bytesToClient", "to_client"]],
  ),
  metric(
    "counter",
    "krelay_tcp_fd_limit_resets_total",
    "Clients reset because no file descriptor was left (EMFILE, ENFILE).",
    "tcp.fdLimit",
  ),
  metric(
    "gauge",
    "krelay_relay_thread_connections_active",
    "TCP connections being relayed by each relay thread (relay_threads > 1), and its CPU.",
    "relayThreads[].active",
  ),
  metric(
    "counter",
    "krelay_relay_thread_connections_total",
    "TCP connections accepted by each relay thread (relay_threads > 1), and its CPU.",
    "relayThreads[].total",
  ),
  metric(
    "gauge",
    "krelay_server_tcp_connections_active",
    "TCP connections relayed to each real server now.",
    "servers[].tcpActive",
  ),
  metric(
    "counter",
    "krelay_server_tcp_connections_total",
    "TCP connections relayed to each real server.",
    "servers[].tcpTotal",
  ),
  metric(
    "counter",
    "krelay_server_tcp_connections_failed_total",
    "TCP connections to each real server refused or unreachable.",
    "servers[].tcpFailed",
  ),
  metric(
    "gauge",
    "krelay_server_udp_flows",
    "UDP flows to each real server in krelay's NAT table.",
    "servers[].udpFlows",
  ),
  metric(
    "counter",
    "krelay_server_checks_total",
    "Health probes of each real server's service.",
    "servers[].checks[].checks",
  ),
  metric(
    "counter",
    "krelay_server_check_failures_total",
    "Health probes of each real server's service that failed.",
    "servers[].checks[].checkFailures",
  ),
  metric(
    "counter",
    "krelay_server_check_passive_failures_total",
    "Flows of the relay that could not reach each real server's service.",
    "servers[].checks[].passiveFailures",
  ),
  metric("gauge", "krelay_nat_entries", "NAT table entries.", "nat.entries"),
  byLabel(
    "counter",
    "krelay_nat_events_total",
    "NAT entries created, expired, evicted, and new flows refused (table full).",
    "event",
    [["nat.created", "created"], ["nat.expired", "expired"], ["nat.evicted", "evicted"], [
      "nat.refused",
      "refused",
    ]],
  ),
  metric(
    "counter",
    "krelay_nat_evicted_unanswered_total",
    "Of the NAT entries evicted, those that had seen no reply.",
    "nat.evictedUnanswered",
  ),
  metric(
    "counter",
    "krelay_kernel_udp_evicted_total",
    "Unanswered UDP flows evicted from the kernel's full flow table for new ones.",
    "kernelUdp.evicted",
  ),
  metric(
    "counter",
    "krelay_kernel_udp_eviction_errors_total",
    "Evictions from the kernel's UDP flow table that failed.",
    "kernelUdp.evictionErrors",
  ),
  metric(
    "counter",
    "krelay_udp_flowtable_forwarded_total",
    "UDP datagrams of established flows forwarded at ingress by the flowtable.",
    "flowtable.forwarded",
  ),
  metric(
    "counter",
    "krelay_udp_flowtable_synced_total",
    "Datagrams of flowtable flows passed to nftables to refresh its entries.",
    "flowtable.synced",
  ),
  byLabel(
    "counter",
    "krelay_udp_flowtable_learned_total",
    "Flows and answers the flowtable learned from nftables' translations, by direction.",
    "direction",
    [["flowtable.learnedRequests", "request"], ["flowtable.learnedReplies", "reply"]],
  ),
];

/** Numbers of the status report with no series of their own, and why. */
export const NOT_EXPORTED: Readonly<Record<string, string>> = {
  pid: "the process metrics describe the process",
  uptimeSeconds: "krelay_start_time_seconds instead: time() - it is the uptime",
  "packets.rewritten": "the sum of krelay_packets_rewritten_total's series",
  "packets.passed": "the sum of krelay_packets_passed_total's series",
  "packets.dropped": "the sum of krelay_packets_dropped_total's series",
  "relayThreads[].cpu": "a label of the relay thread series",
  "servers[].weight": "configuration (a server's weight in real_ip)",
  "servers[].checks[].forSeconds": "grows with the clock; status shows it with the state it times",
  "queue.queue": "the queue's number: configuration (queue)",
  "queue.portId": "an identifier, no measurement",
};

/** The metrics not read from a status number. */
const UP = "krelay_up";
const START_TIME = "krelay_start_time_seconds";
const BUILD_INFO = "krelay_build_info";

/** The labels and value of each series of `s` in `r` (none when its section is absent). */
function samples(s: SeriesSpec, r: StatusReport): [Record<string, string>, number][] {
  const out: [Record<string, string>, number][] = [];
  // "servers[].checks[].checks": into each server, into each of its checks, then the number.
  const walk = (at: unknown, parts: string[], labels: Record<string, string>) => {
    if (at === undefined || at === null) return;
    const [part, ...rest] = parts;
    if (part.endsWith("[]")) {
      const list = (at as Record<string, unknown[]>)[part.slice(0, -2)] ?? [];
      list.forEach((element, i) =>
        walk(element, rest, { ...labels, ...LIST_LABELS[part].of(element as never, i) })
      );
    } else if (rest.length > 0) {
      walk((at as Record<string, unknown>)[part], rest, labels);
    } else {
      const value = (at as Record<string, unknown>)[part];
      if (typeof value === "number") out.push([labels, value]);
    }
  };
  walk(r, s.field.split("."), { ...s.labels });
  return out;
}

/** Options of {@link metricsRenderer}. */
export interface RendererOptions {
  /** Add prom-client's process metrics (CPU, memory, file descriptors, start time). */
  process?: boolean;
}

/**
 * A renderer of status reports as Prometheus text: one registry, kept for the life of the
 * endpoint (the process CPU counters count from its creation).
 */
export function metricsRenderer(opts: RendererOptions = {}): (r: StatusReport) => Promise<string> {
  const registry = new Registry();
  // Set just before each scrape: prom-client calls every collect() synchronously within
  // registry.metrics(), so concurrent scrapes each see their own report.
  let report: StatusReport | undefined;
  new Gauge({
    name: UP,
    help: "1 while relaying (started), 0 when stopped.",
    registers: [registry],
    collect() {
      this.set(report!.state === "started" ? 1 : 0);
    },
  });
  new Gauge({
    name: START_TIME,
    help: "When krelay started, in seconds since the Unix epoch.",
    registers: [registry],
    collect() {
      this.set(Date.parse(report!.startedAt) / 1000);
    },
  });
  new Gauge({
    name: BUILD_INFO,
    help: "Always 1; the labels say which krelay and Deno run.",
    labelNames: ["version", "deno"],
    registers: [registry],
  }).set({ version: pkg.version, deno: Deno.version.deno }, 1);
  for (const m of METRICS) {
    const labelNames = [
      ...new Set(
        m.series.flatMap((s) => [
          ...Object.keys(s.labels ?? {}),
          ...s.field.split(".").filter((p) => p.endsWith("[]"))
            .flatMap((p) => LIST_LABELS[p].names),
        ]),
      ),
    ];
    const config = { name: m.name, help: m.help, labelNames, registers: [registry] };
    // Filled afresh from the report at each scrape, a counter by inc(), a gauge by set().
    const refill = (
      metric: Counter<string> | Gauge<string>,
      put: (labels: Record<string, string>, value: number) => void,
    ) => {
      metric.reset();
      const all = m.series.flatMap((s) => samples(s, report!));
      for (const [labels, value] of all) put(labels, value);
      // prom-client shows an unlabelled metric as 0 when nothing was set: absent is absent.
      if (all.length === 0 && labelNames.length === 0) metric.remove({});
    };
    if (m.type === "counter") {
      new Counter({
        ...config,
        collect() {
          refill(this, (labels, value) => this.inc(labels, value));
        },
      });
    } else {
      new Gauge({
        ...config,
        collect() {
          refill(this, (labels, value) => this.set(labels, value));
        },
      });
    }
  }
  if (opts.process) {
    for (
      const add of [
        processCpuTotal,
        processStartTime,
        osMemoryHeap,
        processOpenFileDescriptors,
        processMaxFileDescriptors,
      ]
    ) add(registry, {});
  }
  return (r) => {
    report = r;
    return registry.metrics();
  };
}

/** The report as Prometheus text, without process metrics. */
export function renderMetrics(r: StatusReport): Promise<string> {
  return metricsRenderer()(r);
}

/** The content type of the exposition. */
export const METRICS_CONTENT_TYPE: string = new Registry().contentType;

/** A running metrics endpoint. */
export interface MetricsServer {
  close(): Promise<void>;
}

/** Serves /metrics at `address` ("127.0.0.1:9816"); throws when it cannot listen. */
export function serveMetrics(address: string, report: () => StatusReport): MetricsServer {
  const at = address.lastIndexOf(":");
  const hostname = address.slice(0, at);
  const port = Number(address.slice(at + 1));
  const render = metricsRenderer({ process: true });
  let server: Deno.HttpServer;
  try {
    server = Deno.serve({ hostname, port, onListen: () => {} }, async (req) => {
      if (new URL(req.url).pathname !== "/metrics") {
        return new Response("not found\n", { status: 404 });
      }
      return new Response(await render(report()), {
        headers: { "content-type": METRICS_CONTENT_TYPE },
      });
    });
  } catch (e) {
    throw new Error(`cannot serve metrics on ${address}: ${(e as Error).message}`);
  }
  log.info("metrics at http://{address}/metrics", { address });
  return { close: () => server.shutdown() };
}
