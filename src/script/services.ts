/**
 * Services a script is attached to, written `udp:53,tcp:80` (`--on`): a protocol and a port
 * each. Parsing refuses anything else with the reason.
 *
 * @example
 * ```ts
 * import { formatServices, parseServices } from "./services.ts";
 * const services = parseServices("udp:53,tcp:80"); // [{ protocol: "udp", port: 53 }, ...]
 * formatServices(services); // "udp:53,tcp:80"
 * ```
 * @module
 */

import type { Protocol } from "./api.ts";

/** A protocol and a service port. */
export interface Service {
  protocol: Protocol;
  port: number;
}

/** IP protocol numbers. */
const PROTOCOL_NUMBER: Record<Protocol, number> = { tcp: 6, udp: 17 };

/** A number for the service with IP protocol `protocol` and `port`, for fast lookups. */
export function serviceKey(protocol: number, port: number): number {
  return protocol * 65536 + port;
}

/** The lookup number of a {@link Service}. */
export function keyOf(service: Service): number {
  return serviceKey(PROTOCOL_NUMBER[service.protocol], service.port);
}

/**
 * Parses `udp:53,tcp:80` (also separated by `|` or spaces). Throws a RangeError naming the bad
 * part. Duplicates are kept once.
 */
export function parseServices(text: string): Service[] {
  const parts = text.split(/[,|\s]+/).filter((p) => p !== "");
  if (parts.length === 0) throw new RangeError("no service given (expected like udp:53,tcp:80)");
  const out: Service[] = [];
  for (const part of parts) {
    const m = /^(udp|tcp):(\d{1,5})$/i.exec(part);
    const port = m ? Number(m[2]) : NaN;
    if (!m || port < 1 || port > 65535) {
      throw new RangeError(`bad service "${part}": expected udp:PORT or tcp:PORT, port 1-65535`);
    }
    const service = { protocol: m[1].toLowerCase() as Protocol, port };
    if (!out.some((s) => keyOf(s) === keyOf(service))) out.push(service);
  }
  return out;
}

/** `udp:53,tcp:80`. */
export function formatServices(services: readonly Service[]): string {
  return services.map((s) => `${s.protocol}:${s.port}`).join(",");
}

/** Every configured service: the UDP ports, then the TCP ports (the default of `--on`). */
export function configuredServices(udpPorts: readonly number[], tcpPorts: readonly number[]) {
  return [
    ...udpPorts.map((port): Service => ({ protocol: "udp", port })),
    ...tcpPorts.map((port): Service => ({ protocol: "tcp", port })),
  ];
}
