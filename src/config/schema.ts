/**
 * krelay's configuration: one schema (keys, types, ranges, defaults) for command-line flags,
 * the TOML config file and, later, live changes.
 *
 * @example
 * ```ts
 * import { parseConfig } from "./schema.ts";
 * const result = parseConfig({ real_ip: "203.0.113.10", udp_ports: [53] });
 * if (result.ok) console.log(result.config.gport); // 16000
 * ```
 * @module
 */

import { z } from "zod";
import { addressListProblem } from "./addresses.ts";
import { realIpListProblem } from "./real_ip.ts";

const port = z.number().int("must be a whole number").min(1, "must be 1-65535").max(
  65535,
  "must be 1-65535",
);
/** A comma-separated list of addresses of either family (addresses.ts), one per family. */
const addressList = (onePerFamily: boolean) =>
  z.string().superRefine((text, ctx) => {
    const problem = addressListProblem(text, onePerFamily);
    if (problem !== undefined) ctx.addIssue({ code: "custom", message: problem });
  });
const seconds = z.number().positive("must be more than 0 seconds").max(86400 * 7, "too long");
const serverList = z.string().superRefine((text, ctx) => {
  const why = realIpListProblem(text);
  if (why !== undefined) ctx.addIssue({ code: "custom", message: why });
});
const portList = z.array(port).max(64, "at most 64 ports").refine(
  (ports) => new Set(ports).size === ports.length,
  "has a port twice",
);

/** The schema; field descriptions feed `--help` and the README. */
export const configSchema = z.object({
  real_ip: serverList.default("192.168.0.10").describe(
    "the real servers: one address, or a comma-separated list (ADDRESS[@WEIGHT][@backup], " +
      "e.g. 203.0.113.10,203.0.113.20@3) over which new flows are spread; IPv6 addresses " +
      "(2001:db8:2::10) are the IPv6 clients' servers, a list of their own (either family " +
      "may be left out: it is then not relayed)",
  ),
  balance: z.enum(["client-hash", "round-robin"]).default("client-hash").describe(
    "how new flows are spread over the servers up: client-hash (a client's flows stick to " +
      "one server; a server going down moves only its clients) or round-robin (per flow)",
  ),
  health_checks: z.boolean().default(true).describe(
    "check the health of each server of a list (not of a lone server): active probes and the " +
      "relay's failed connections take a server out of rotation; false: every server is " +
      "always in rotation",
  ),
  health_interval: seconds.default(2).describe(
    "seconds between two active health checks of each server's each service",
  ),
  health_timeout: seconds.default(1).describe(
    "seconds a health check may take before it counts as failed",
  ),
  health_rise: z.number().int("must be a whole number").min(1).max(100).default(2).describe(
    "successful checks in a row that put a down server back in rotation",
  ),
  health_fall: z.number().int("must be a whole number").min(1).max(100).default(3).describe(
    "failures in a row (checks, or connections of the relay that could not reach it) that " +
      "take a server out of rotation",
  ),
  health_udp_probe: z.string().regex(
    /^(dns|none|hex:([0-9a-fA-F]{2}){1,512})$/,
    'must be "dns", "none" or "hex:" and the bytes of the datagram to send',
  ).default("dns").describe(
    "health check of UDP services: dns (a DNS query for health_dns_name; any answer is up), " +
      "hex:BYTES (this datagram; any answer is up) or none (no active check)",
  ),
  health_dns_name: z.string().regex(
    /^(\.|([A-Za-z0-9_-]{1,63}\.)*[A-Za-z0-9_-]{1,63}\.?)$/,
    "must be a domain name like example.org or . for the root",
  ).default(".").describe("the name health_udp_probe dns asks for (an NS query for the root)"),
  relay_ip: addressList(true).optional().describe(
    "the relay's address that clients talk to, one per family (default: detected)",
  ),
  gport: port.default(16000).describe("TCP gateway port the relay listens on"),
  udp_ports: portList.default([53]).describe("UDP service ports relayed by NAT"),
  tcp_ports: portList.default([80]).describe("TCP service ports relayed through gport"),
  tcp_connect_timeout: seconds.default(5).describe(
    "seconds to wait for the real server to accept a connection",
  ),
  tcp_hold_syn: z.union([z.literal("auto"), z.boolean()], {
    error: "must be auto, true or false",
  }).default("auto").describe(
    "hold a client's SYN until the real server has answered the relay, so that a refused " +
      "connection is refused and a silent one unanswered, as without the relay: auto (only " +
      "for a service whose connects failed lately, until they succeed again: no cost while " +
      "its servers answer), true (every SYN: a queue round trip per connection) or false " +
      "(never: the relay accepts at once and resets the client if the server then fails); " +
      "a service with no server up is refused by the kernel either way",
  ),
  tcp_idle_timeout: seconds.default(300).describe(
    "seconds a relayed TCP connection may stay idle before both sides are reset",
  ),
  queue: z.number().int().min(0).max(65535, "must be 0-65535").default(0).describe(
    "NFQUEUE queue number",
  ),
  queue_maxlen: z.number().int().min(16).max(1 << 20).default(4096).describe(
    "packets the kernel may hold for krelay before dropping",
  ),
  udp_timeout: seconds.default(30).describe("seconds an unreplied UDP flow is kept"),
  udp_stream_timeout: seconds.default(120).describe(
    "seconds a UDP flow that keeps talking both ways is kept",
  ),
  nat_max_entries: z.number().int().min(16).max(4_000_000).default(65536).describe(
    "NAT table size",
  ),
  datapath: z.enum(["auto", "kmod", "iptables"]).default("auto").describe(
    "what steers packets to the queue: krelay.ko's hooks (kmod), iptables rules, or auto " +
      "(kmod when /proc/krelay exists)",
  ),
  tcp_conntrack: z.boolean().default(true).describe(
    "a conntrack the host's own rules load tracks relayed TCP connections like " +
      "other traffic; false exempts them (notrack): no conntrack entries for them, but the " +
      "host's stateful firewall rules see their packets as untracked (krelay loads no " +
      "conntrack; without one, false only costs)",
  ),
  relay_threads: z.number().int("must be a whole number").min(0).max(64).default(0).describe(
    "threads relaying TCP, each with its own gateway-port listener (SO_REUSEPORT) and the " +
      "connections the kernel gives it; 0: one per CPU krelay may use",
  ),
  relay_cpu_affinity: z.boolean().default(true).describe(
    "relay_threads > 1: each relay thread keeps to one CPU of those krelay may use, in turn, " +
      "and takes the new connections that CPU handles (SO_INCOMING_CPU); false: threads run " +
      "on any CPU and the kernel spreads connections by hash",
  ),
  relay_warm_up: z.number().int("must be a whole number").min(0).max(100_000).default(2000)
    .describe(
      "loopback connections each relay thread relays through its own code when it " +
        "starts, before clients are steered to it, so that they meet optimised code (0: none)",
    ),
  log_level: z.enum(["debug", "info", "warning", "error"]).default("info").describe("log level"),
  control_socket: z.string().regex(/^\//, "must be an absolute path").default(
    "/run/krelay/krelay.sock",
  ).describe("Unix socket for krelay status, nat, config, start and stop (root only)"),
  metrics: z.string().regex(
    /^\d+\.\d+\.\d+\.\d+:\d{1,5}$/,
    "must be ADDRESS:PORT like 127.0.0.1:9816",
  )
    .optional().describe("serve Prometheus metrics at http://ADDRESS:PORT/metrics"),
  script_default_verdict: z.enum(["accept", "drop"]).default("accept").describe(
    "verdict for packets a script could not decide (it threw, ran too long, or is disabled)",
  ),
  script_budget_ms: z.number().int("must be a whole number").min(1).max(10_000).default(50)
    .describe("milliseconds a script may take on one batch before its worker is terminated"),
  script_memory_mb: z.number().int("must be a whole number").min(16).max(65536).default(128)
    .describe(
      "heap size (MB) of each script's own process (its resident memory may exceed it by 96 " +
        "MB); past either the process is killed and the script disabled",
    ),
  script_max_errors: z.number().int("must be a whole number").min(1).max(1_000_000).default(10)
    .describe("errors within script_error_window that disable a script"),
  script_error_window: seconds.default(60).describe(
    "seconds over which a script's errors are counted",
  ),
}).strict().superRefine((c, ctx) => {
  if (c.health_timeout > c.health_interval) {
    ctx.addIssue({
      code: "custom",
      path: ["health_timeout"],
      message: `must not exceed health_interval ${c.health_interval}`,
    });
  }
  if (c.tcp_ports.includes(c.gport)) {
    ctx.addIssue({
      code: "custom",
      path: ["tcp_ports"],
      message: `must not include gport ${c.gport}`,
    });
  }
});

/** A complete, validated configuration. */
export type Config = z.infer<typeof configSchema>;
/** The keys of the configuration. */
export type ConfigKey = keyof Config;

/** The outcome of validation: a config, or one message per problem, each naming its key. */
export type ConfigResult =
  | { ok: true; config: Config; warnings?: string[] }
  | { ok: false; errors: string[] };

/**
 * Keys earlier versions took, and why they are gone: a file that still sets one is accepted
 * with a warning (see {@link removedKeys}), so that an upgrade does not stop a running service.
 */
export const REMOVED_KEYS: Readonly<Record<string, string>> = {
  kernel_nat: "the kernel carries established flows in every configuration now",
  relay_ports: "the kernel picks the relay's ports toward the server (ip_local_port_range)",
  tcp_linger: "TCP connections take no NAT entry: the kernel keeps their last segments",
};

/** The removed keys `raw` sets, each with why it is gone. */
export function removedKeys(raw: Record<string, unknown>): string[] {
  return Object.keys(raw).filter((k) => k in REMOVED_KEYS).map((k) =>
    `${k} is no longer used and is ignored: ${REMOVED_KEYS[k]}`
  );
}

/** Validates raw values (from a file, flags, ...) and fills in defaults. */
export function parseConfig(raw: unknown): ConfigResult {
  if (typeof raw === "object" && raw !== null && !Array.isArray(raw)) {
    raw = Object.fromEntries(Object.entries(raw).filter(([k]) => !(k in REMOVED_KEYS)));
  }
  const result = configSchema.safeParse(raw);
  if (result.success) return { ok: true, config: result.data };
  return { ok: false, errors: result.error.issues.map(formatIssue) };
}

function formatIssue(issue: z.core.$ZodIssue): string {
  if (issue.code === "unrecognized_keys") {
    return `unknown key${issue.keys.length > 1 ? "s" : ""}: ${issue.keys.join(", ")}`;
  }
  const key = issue.path.map(String).join(".") || "(config)";
  const message = issue.code !== "invalid_type"
    ? issue.message
    : issue.expected === "int"
    ? "must be a whole number"
    : `must be ${issue.expected === "array" ? "a list" : `a ${issue.expected}`}`;
  return `${key}: ${message}`;
}

/** Keys that `krelay config set` may change while krelay runs; new flows use the new values. */
export const LIVE_KEYS = [
  "real_ip",
  "relay_ip",
  "balance",
  "health_checks",
  "health_interval",
  "health_timeout",
  "health_rise",
  "health_fall",
  "health_udp_probe",
  "health_dns_name",
  "gport",
  "udp_ports",
  "tcp_ports",
  "udp_timeout",
  "udp_stream_timeout",
  "tcp_connect_timeout",
  "tcp_hold_syn",
  "tcp_idle_timeout",
] as const satisfies readonly ConfigKey[];
/** One of {@link LIVE_KEYS}. */
export type LiveKey = typeof LIVE_KEYS[number];
