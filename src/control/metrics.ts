/**
 * Prometheus metrics: the counters of `krelay status` in the text exposition format, served
 * over HTTP at /metrics.
 *
 * @module
 */

import type { StatusReport } from "../daemon/reports.ts";
import { logger } from "../system/log.ts";

const log = logger("metrics");

type Sample = [labels: Record<string, string>, value: number];

function family(name: string, type: "counter" | "gauge", help: string, samples: Sample[]): string {
  const lines = [`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`];
  for (const [labels, value] of samples) {
    const l = Object.entries(labels).map(([k, v]) => `${k}="${v}"`).join(",");
    lines.push(`${name}${l ? `{${l}}` : ""} ${value}`);
  }
  return lines.join("\n");
}

/** The report as Prometheus text. */
export function renderMetrics(r: StatusReport): string {
  const p = r.packets;
  return [
    family("krelay_up", "gauge", "1 while relaying (started), 0 when stopped.", [[
      {},
      r.state === "started" ? 1 : 0,
    ]]),
    family("krelay_uptime_seconds", "gauge", "Seconds since krelay started.", [[
      {},
      r.uptimeSeconds,
    ]]),
    family("krelay_packets_seen_total", "counter", "Packets the engine looked at.", [[{}, p.seen]]),
    family("krelay_packets_rewritten_total", "counter", "Packets rewritten, by flow.", [
      [{ flow: "udp_request" }, p.udpRequests],
      [{ flow: "udp_reply" }, p.udpReplies],
    ]),
    family(
      "krelay_udp_first_packets_total",
      "counter",
      "UDP flows' first packets recorded and left to the kernel's NAT.",
      [[{}, p.toKernel]],
    ),
    family(
      "krelay_tcp_scripted_segments_total",
      "counter",
      "TCP segments of scripted services passed on after their scripts.",
      [[{}, p.tcpSegments]],
    ),
    family("krelay_packets_passed_total", "counter", "Packets accepted untouched, by reason.", [
      [{ reason: "other_protocol" }, p.passedOtherProtocol],
      [{ reason: "other_port" }, p.passedOtherPort],
      [{ reason: "no_flow" }, p.passedNoFlow],
      [{ reason: "fragment" }, p.passedFragment],
      [{ reason: "malformed" }, p.passedMalformed],
    ]),
    family("krelay_packets_dropped_total", "counter", "Packets dropped, by reason.", [
      [{ reason: "nat_full" }, p.droppedNatFull],
    ]),
    family("krelay_engine_errors_total", "counter", "Packets whose processing failed.", [[
      {},
      r.engineErrors,
    ]]),
    family("krelay_queue_received_total", "counter", "Packets received from the kernel.", [[
      {},
      r.datapath.received,
    ]]),
    family("krelay_queue_enobufs_total", "counter", "Times the kernel dropped queued packets.", [[
      {},
      r.datapath.enobufs,
    ]]),
    family("krelay_queue_errors_total", "counter", "Netlink errors.", [[{}, r.datapath.errors]]),
    family("krelay_tcp_connections_active", "gauge", "TCP connections being relayed.", [[
      {},
      r.tcp.active,
    ]]),
    family("krelay_tcp_connections_total", "counter", "TCP connections accepted.", [[
      {},
      r.tcp.total,
    ]]),
    family(
      "krelay_tcp_ipv6_connections_total",
      "counter",
      "TCP connections accepted from IPv6 clients (of krelay_tcp_connections_total).",
      [[{}, r.tcp.ipv6Total]],
    ),
    family("krelay_tcp_connections_failed_total", "counter", "TCP connections not relayed.", [[
      {},
      r.tcp.failed,
    ]]),
    family("krelay_tcp_bytes_total", "counter", "Bytes relayed over TCP, by direction.", [
      [{ direction: "to_server" }, r.tcp.bytesToServer],
      [{ direction: "to_client" }, r.tcp.bytesToClient],
    ]),
    family(
      "krelay_relay_thread_connections_total",
      "counter",
      "TCP connections accepted by each relay thread (relay_threads > 1), and its CPU.",
      r.relayThreads.map((t, i) => [
        { thread: String(i + 1), cpu: t.cpu === null ? "any" : String(t.cpu) },
        t.total,
      ]),
    ),
    family("krelay_nat_entries", "gauge", "NAT table entries.", [[{}, r.nat.entries]]),
    family("krelay_nat_entries_total", "counter", "NAT entries created, expired, evicted.", [
      [{ event: "created" }, r.nat.created],
      [{ event: "expired" }, r.nat.expired],
      [{ event: "evicted" }, r.nat.evicted],
      [{ event: "refused" }, r.nat.refused],
    ]),
  ].join("\n") + "\n";
}

/** A running metrics endpoint. */
export interface MetricsServer {
  close(): Promise<void>;
}

/** Serves /metrics at `address` ("127.0.0.1:9816"); throws when it cannot listen. */
export function serveMetrics(address: string, report: () => StatusReport): MetricsServer {
  const at = address.lastIndexOf(":");
  const hostname = address.slice(0, at);
  const port = Number(address.slice(at + 1));
  let server: Deno.HttpServer;
  try {
    server = Deno.serve({ hostname, port, onListen: () => {} }, (req) => {
      if (new URL(req.url).pathname !== "/metrics") {
        return new Response("not found\n", { status: 404 });
      }
      return new Response(renderMetrics(report()), {
        headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
      });
    });
  } catch (e) {
    throw new Error(`cannot serve metrics on ${address}: ${(e as Error).message}`);
  }
  log.info("metrics at http://{address}/metrics", { address });
  return { close: () => server.shutdown() };
}
