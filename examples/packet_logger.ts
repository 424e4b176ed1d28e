/**
 * Example packet script: logs a one-line summary of every packet it sees into krelay's log
 * (console lines of scripts are forwarded, tagged with the script's name), and accepts it.
 *
 * ```sh
 * krelay run --real-ip 203.0.113.10 --script examples/packet_logger.ts --on udp:53,tcp:80
 * ```
 * Lines look like:
 * `request udp 198.51.100.10:41000 -> 198.51.100.1:53 (server 203.0.113.10:53) 40 bytes ttl 64`
 * @module
 */

import type { Packet, ScriptContext, TcpFlagName } from "../src/script/api.ts";

const FLAGS: TcpFlagName[] = ["SYN", "ACK", "FIN", "RST", "PSH"];

/** The summary line of a packet. */
export function summary(packet: Packet, ctx: ScriptContext): string {
  const { flow } = ctx;
  const flags = packet.protocol === "tcp"
    ? ` [${FLAGS.filter((f) => packet.hasFlag(f)).join(",")}]`
    : "";
  return `${ctx.hook} ${packet.protocol} ${packet.src}:${packet.srcPort} -> ` +
    `${packet.dst}:${packet.dstPort} (server ${flow.server.address}:${flow.server.port}) ` +
    `${packet.totalLength} bytes ttl ${packet.ttl}${flags} payload ${packet.payload.length}`;
}

/** Logs the packet; accepts it unchanged. */
export function target(packet: Packet, ctx: ScriptContext): void {
  console.log(summary(packet, ctx));
}
