/**
 * What each part of the daemon is given, made from the configuration: the rewrite engine's
 * settings, the TCP relay's, the scripts' policy, the steering spec, how many relay threads,
 * and the real_ip rule against the relay's own addresses. Pure functions of the config (and
 * of what the daemon knows at run time: its addresses, live flows, scripts, the server pool).
 *
 * @module
 */

import type { Config } from "../config/schema.ts";
import { checkRealIp } from "../config/real_ip.ts";
import { firstOfEach } from "../config/addresses.ts";
import type { RewriterSettings } from "../nat/rewriter.ts";
import { parseIpv4 } from "../packet/address.ts";
import type { TcpRelaySettings } from "../relay/tcp_relay.ts";
import type { ScriptPolicy } from "../script/host.ts";
import type { ServerPool } from "../servers/balancer.ts";
import { ofFamily, serverList } from "../servers/list.ts";
import type { SteeringSpec } from "../steering/steering.ts";
import { allowedCpus } from "../system/cpu_affinity.ts";
import { logger } from "../system/log.ts";
import { staticPool } from "./servers.ts";

const log = logger("daemon");

/** The engine's settings derived from a config and the ports that have packet scripts. */
export function rewriterSettings(
  config: Config,
  relayIp: string | undefined,
  scriptedUdpPorts: readonly number[] = [],
  pool: ServerPool = staticPool(config),
  relayIp6?: string,
  pool6: ServerPool = staticPool(config, 6),
): RewriterSettings {
  return {
    // Only with an IPv6 server too: IPv6 clients are steered only then.
    relayIp6: firstOfEach(config.real_ip).v6 === undefined ? undefined : relayIp6,
    // 0 (no packet's destination) when IPv4 clients are not relayed (IPv6 only).
    relayIp: relayIp === undefined ? 0 : parseIpv4(relayIp),
    pool,
    pool6,
    udpPorts: new Set(config.udp_ports),
    udpTimeoutMs: config.udp_timeout * 1000,
    udpStreamTimeoutMs: config.udp_stream_timeout * 1000,
    tcpPorts: new Set(config.tcp_ports),
    scriptedUdpPorts: new Set(scriptedUdpPorts),
  };
}

/** The TCP relay's settings from a config. */
export function relaySettings(config: Config): TcpRelaySettings {
  return {
    connectTimeoutMs: config.tcp_connect_timeout * 1000,
    idleTimeoutMs: config.tcp_idle_timeout * 1000,
  };
}

/** How packet scripts fail, from a config. */
export function scriptPolicy(config: Config): ScriptPolicy {
  return {
    defaultVerdict: config.script_default_verdict,
    budgetMs: config.script_budget_ms,
    maxErrors: config.script_max_errors,
    errorWindowMs: config.script_error_window * 1000,
    limits: {
      memoryMb: config.script_memory_mb,
      // Timers count against the budget too: a second's CPU outside batches may take a few
      // budgets (room for V8's own compiler and GC threads), within 200-400 ms.
      idleCpuMsPerS: Math.min(400, Math.max(200, 4 * config.script_budget_ms)),
    },
  };
}

/**
 * The first IPv4 server of the config's list: the one krelay.ko's real_ip shows; undefined
 * when the list has IPv6 servers only.
 */
export function firstServer(config: Config): string | undefined {
  return ofFamily(serverList(config.real_ip), 4)[0]?.address;
}

/** The steering for a config, widened by the ports of live flows so that they can finish. */
export function steeringSpec(
  config: Config,
  relayIp: string | undefined,
  live: { udpPorts: Iterable<number>; tcpPorts: Iterable<number> },
  scripted: { udp: readonly number[]; tcp: readonly number[] } = { udp: [], tcp: [] },
  relayIp6?: string,
): SteeringSpec {
  const real = firstOfEach(config.real_ip);
  // Each family is steered only with a server and a relay address of its own.
  const ipv4 = relayIp !== undefined && real.v4 !== undefined ? { relayIp, realIp: real.v4 } : {};
  const ipv6 = relayIp6 !== undefined && real.v6 !== undefined
    ? { relayIp6, realIp6: real.v6 }
    : {};
  const union = (a: readonly number[], b: Iterable<number>) =>
    [...new Set([...a, ...b])].sort((x, y) => x - y);
  const udpPorts = union(config.udp_ports, live.udpPorts);
  const tcpPorts = union(config.tcp_ports, live.tcpPorts);
  return {
    queue: config.queue,
    ...ipv4,
    ...ipv6,
    gport: config.gport,
    udpPorts,
    tcpPorts,
    // A script on a port krelay does not relay sees nothing: nothing is queued for it.
    scriptedUdpPorts: scripted.udp.filter((p) => udpPorts.includes(p)),
    scriptedTcpPorts: scripted.tcp.filter((p) => tcpPorts.includes(p)),
    tcpConntrack: config.tcp_conntrack,
    udpTimeout: config.udp_timeout,
    natMaxEntries: config.nat_max_entries,
  };
}

/** How many relay threads a config asks for: relay_threads, or 0 for one per usable CPU. */
export function relayThreadCount(config: Config, cpus: () => number[] = relayCpus): number {
  if (config.relay_threads > 0) return config.relay_threads;
  return Math.max(1, Math.min(64, cpus().length));
}

/**
 * real_ip.ts's rule for each real server: the IPv4 ones against the relay's own IPv4 addresses
 * (`own`), the IPv6 ones against its IPv6 address. Throws `real_ip: <why>`.
 */
export function checkRealServers(realIp: string, own: readonly string[], relayIp6?: string): void {
  checkRealIp(realIp, relayIp6 === undefined ? own : [...own, relayIp6]);
}

/** The CPUs the relay threads keep to: the process's own (a cpuset or taskset narrows them). */
export function relayCpus(): number[] {
  try {
    return allowedCpus();
  } catch (e) {
    log.warning("relay threads run on any CPU: {error}", { error: (e as Error).message });
    return [];
  }
}
