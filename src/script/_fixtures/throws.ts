/** Test fixture: throws on every packet from port 6666, accepts the others. */
import type { Packet } from "../api.ts";

/** Throws for port 6666. */
export function target(packet: Packet): void {
  if (packet.srcPort === 6666) throw new Error("boom from the fixture");
}
