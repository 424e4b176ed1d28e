/**
 * The control protocol between `krelay run` and the commands that talk to it (`status`, `nat`,
 * `config`, `start`, `stop`): one JSON request per connection on a Unix socket, one JSON
 * response line back.
 *
 * @module
 */

import type { Config } from "../config/schema.ts";
import type { DatapathStats } from "../datapath/datapath.ts";
import type { PacketCounters } from "../nat/counters.ts";
import type { NatTableStats } from "../nat/nat_table.ts";
import type { TcpRelayStats } from "../relay/tcp_relay.ts";

/** Config keys `krelay config set` may change while krelay runs. */
export const LIVE_KEYS = [
  "real_ip",
  "gport",
  "udp_ports",
  "tcp_ports",
  "udp_timeout",
  "udp_stream_timeout",
  "tcp_connect_timeout",
  "tcp_idle_timeout",
  "tcp_linger",
  "log_level",
] as const;
/** One of {@link LIVE_KEYS}. */
export type LiveKey = typeof LIVE_KEYS[number];

/** A request. `config-set` carries the value as text, parsed like a command-line flag. */
export type Request =
  | { cmd: "status" }
  | { cmd: "nat" }
  | { cmd: "config-get"; key?: string }
  | { cmd: "config-set"; key: string; value: string }
  | { cmd: "start" }
  | { cmd: "stop" };

/** A response: the result, or an error message for the user. */
export type Response<T = unknown> = { ok: true; result: T } | { ok: false; error: string };

/** Whether krelay is relaying. */
export type RelayState = "started" | "stopped";

/** The answer to `status`. */
export interface StatusReport {
  pid: number;
  state: RelayState;
  /** ISO time krelay started, and seconds since. */
  startedAt: string;
  uptimeSeconds: number;
  /** The relay address in use (configured or detected). */
  relayIp: string;
  config: Config;
  packets: PacketCounters;
  /** Packets whose processing threw (accepted unchanged). */
  engineErrors: number;
  datapath: DatapathStats;
  tcp: TcpRelayStats;
  nat: NatTableStats;
}

/** One NAT entry as `krelay nat` shows it. */
export interface NatEntryView {
  protocol: "udp" | "tcp";
  /** "198.51.100.10:40000" */
  client: string;
  /** The address and service port the client asked: "198.51.100.1:80". */
  relay: string;
  /** TCP: the relay's own port toward the server (y); UDP: the service port. */
  relayPort: number;
  /** "203.0.113.10:80" */
  server: string;
  ageSeconds: number;
  idleSeconds: number;
  state: string;
  packetsToServer: number;
  bytesToServer: number;
  packetsToClient: number;
  bytesToClient: number;
}

/** The answer to `config-get` (a whole config, or one key), `config-set` (what changed). */
export interface ConfigChange {
  key: string;
  from: unknown;
  to: unknown;
}
