/**
 * Finds the relay's client-facing address when it is not configured: the local IPv4 address
 * that is not the one used to reach the real server.
 *
 * @module
 */

import type { CommandRunner } from "../system/command.ts";
import { canonicalIpv6 } from "../packet/ipv6_address.ts";

/** Picks the relay address from the local addresses and the source used toward the server. */
export function chooseRelayIp(
  local: string[],
  towardServer: string | undefined,
  family = "IPv4",
): string {
  const global = local.filter((a) => !a.startsWith("127.") && a !== "::1");
  if (global.length === 1) return global[0];
  const candidates = global.filter((a) => a !== towardServer);
  if (candidates.length === 1) return candidates[0];
  if (candidates.length === 0) {
    throw new Error(`relay_ip: no ${family} address found; set --relay-ip`);
  }
  throw new Error(
    `relay_ip: several candidate addresses (${candidates.join(", ")}); choose one with --relay-ip`,
  );
}

/** The IPv4 addresses in `ip -4 -o addr show` output. */
function parseAddrs(stdout: string): string[] {
  return [...stdout.matchAll(/\sinet (\d+\.\d+\.\d+\.\d+)\//g)].map((m) => m[1]);
}

/** The relay's own IPv4 addresses (what real_ip must not be); none when `ip` fails. */
export async function ownAddresses(run: CommandRunner): Promise<string[]> {
  try {
    const addrs = await run("ip", ["-4", "-o", "addr", "show"]);
    return addrs.code === 0 ? parseAddrs(addrs.stdout) : [];
  } catch {
    return [];
  }
}

/** Reads the addresses with `ip` and applies {@link chooseRelayIp}. */
export async function detectRelayIp(run: CommandRunner, realIp: string): Promise<string> {
  const addrs = await run("ip", ["-4", "-o", "addr", "show"]);
  if (addrs.code !== 0) throw new Error(`relay_ip: ip addr failed: ${addrs.stderr.trim()}`);
  const local = parseAddrs(addrs.stdout);
  const route = await run("ip", ["-4", "-o", "route", "get", realIp]);
  const src = /\ssrc (\d+\.\d+\.\d+\.\d+)/.exec(route.stdout)?.[1];
  return chooseRelayIp(local, src);
}

/** {@link detectRelayIp} for IPv6: the global addresses, less the one used toward the server. */
export async function detectRelayIp6(run: CommandRunner, realIp6: string): Promise<string> {
  const addrs = await run("ip", ["-6", "-o", "addr", "show", "scope", "global"]);
  if (addrs.code !== 0) throw new Error(`relay_ip: ip -6 addr failed: ${addrs.stderr.trim()}`);
  const local = [...addrs.stdout.matchAll(/\sinet6 ([0-9a-fA-F:]+)\//g)].map((m) =>
    canonicalIpv6(m[1])
  );
  const route = await run("ip", ["-6", "-o", "route", "get", realIp6]);
  const src = /\ssrc ([0-9a-fA-F:]+)/.exec(route.stdout)?.[1];
  return chooseRelayIp(local, src === undefined ? undefined : canonicalIpv6(src), "IPv6");
}
