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
import { isIpv4 } from "../packet/address.ts";

const port = z.number().int("must be a whole number").min(1, "must be 1-65535").max(
  65535,
  "must be 1-65535",
);
const ipv4 = z.string().refine(isIpv4, "must be an IPv4 address like 203.0.113.10");
const seconds = z.number().positive("must be more than 0 seconds").max(86400 * 7, "too long");
const portList = z.array(port).max(64, "at most 64 ports").refine(
  (ports) => new Set(ports).size === ports.length,
  "has a port twice",
);

/** The schema; field descriptions feed `--help` and the README. */
export const configSchema = z.object({
  real_ip: ipv4.default("192.168.0.10").describe("address of the real server"),
  relay_ip: ipv4.optional().describe(
    "the relay's address that clients talk to (default: detected)",
  ),
  gport: port.default(16000).describe("TCP gateway port the relay listens on"),
  udp_ports: portList.default([53]).describe("UDP service ports relayed by NAT"),
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
  log_level: z.enum(["debug", "info", "warning", "error"]).default("info").describe("log level"),
}).strict();

/** A complete, validated configuration. */
export type Config = z.infer<typeof configSchema>;
/** The keys of the configuration. */
export type ConfigKey = keyof Config;

/** The outcome of validation: a config, or one message per problem, each naming its key. */
export type ConfigResult = { ok: true; config: Config } | { ok: false; errors: string[] };

/** Validates raw values (from a file, flags, ...) and fills in defaults. */
export function parseConfig(raw: unknown): ConfigResult {
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
