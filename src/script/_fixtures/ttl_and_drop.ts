/** Test fixture: drops packets from port 1111, sets TTL 7 on the others, counts, logs. */
import type { Packet, ScriptContext, Verdict } from "../api.ts";

let count = 0;

/** Skips port 2222. */
export function match(packet: Packet): boolean {
  return packet.srcPort !== 2222;
}

/** Drops port 1111; TTL 7 and a log line for the others. */
export function target(packet: Packet, ctx: ScriptContext): Verdict {
  count++;
  if (packet.srcPort === 1111) return "drop";
  packet.ttl = 7;
  console.log(`#${count} ${ctx.hook} ${ctx.flow.client.address}:${ctx.flow.client.port}`);
  return "accept";
}
