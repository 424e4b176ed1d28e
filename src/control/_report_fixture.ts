/**
 * Sample answers of the daemon for the rendering and command tests: a full status report with a
 * distinct value in every counter, so a test can tell which counter a line shows.
 *
 * @module
 */

import type { NatEntryView, StatusReport } from "./protocol.ts";

/** A status report of a daemon up 1h 02m 03s, every counter different. */
export function sampleReport(): StatusReport {
  return {
    pid: 4242,
    state: "started",
    startedAt: "2026-11-21T01:22:11.000Z",
    uptimeSeconds: 3723.6,
    relayIp: "198.51.100.1",
    config: {
      real_ip: "203.0.113.10",
      relay_ip: "198.51.100.1",
      gport: 16000,
      udp_ports: [53, 5353],
      tcp_ports: [80, 8080],
      tcp_connect_timeout: 5,
      tcp_idle_timeout: 300,
      tcp_linger: 2,
      datapath: "auto",
      tcp_conntrack: true,
      relay_threads: 1,
      relay_cpu_affinity: true,
      relay_warm_up: 2000,
      queue: 0,
      queue_maxlen: 4096,
      udp_timeout: 30,
      udp_stream_timeout: 120,
      script_default_verdict: "accept",
      script_budget_ms: 50,
      script_memory_mb: 128,
      script_max_errors: 10,
      script_error_window: 60,
      nat_max_entries: 65536,
      log_level: "info",
      control_socket: "/run/krelay/krelay.sock",
    },
    packets: {
      seen: 1_234_567,
      rewritten: 1_100_001,
      udpRequests: 500_002,
      udpReplies: 499_003,
      tcpSegments: 50_004,
      toKernel: 1_006,
      passed: 134_008,
      passedOtherProtocol: 100_009,
      passedOtherPort: 30_010,
      passedNoFlow: 3_011,
      passedFragment: 12,
      passedMalformed: 13,
      dropped: 14,
      droppedNatFull: 15,
    },
    engineErrors: 16,
    datapath: { received: 1_234_517, verdicts: 1_234_518, enobufs: 19, errors: 20 },
    queue: {
      queue: 0,
      portId: 4242,
      waiting: 32,
      queueDropped: 1_049_063,
      userDropped: 33,
      idSequence: 2_345_678,
    },
    tcp: {
      active: 21,
      total: 22_022,
      failed: 23,
      bytesToServer: 1_234_567,
      bytesToClient: 9_876_543_210,
      ipv6Active: 0,
      ipv6Total: 0,
      fdLimit: 31,
    },
    relayThreads: [],
    nat: {
      entries: 24,
      created: 25_025,
      expired: 26_026,
      evicted: 27,
      evictedUnanswered: 29,
      refused: 28,
    },
  };
}

/** Two NAT entries: a DNS flow and a relayed HTTP connection. */
export function sampleNat(): NatEntryView[] {
  return [
    {
      protocol: "udp",
      client: "198.51.100.10:40000",
      relay: "198.51.100.1:53",
      relayPort: 53,
      server: "203.0.113.10:53",
      ageSeconds: 12.5,
      idleSeconds: 3.2,
      state: "replied",
      packetsToServer: 1,
      bytesToServer: 61,
      packetsToClient: 1,
      bytesToClient: 77,
    },
    {
      protocol: "tcp",
      client: "198.51.100.10:51234",
      relay: "198.51.100.1:80",
      relayPort: 20001,
      server: "203.0.113.10:80",
      ageSeconds: 3723,
      idleSeconds: 65,
      state: "established",
      packetsToServer: 900,
      bytesToServer: 1_234_567,
      packetsToClient: 80_000,
      bytesToClient: 104_857_600,
    },
  ];
}
