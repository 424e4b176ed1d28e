/** Test fixture: never returns on packets from port 7777. */
import type { Packet } from "../api.ts";

/** Loops forever for port 7777. */
export function target(packet: Packet): void {
  // deno-lint-ignore no-empty
  while (packet.srcPort === 7777) {}
}
