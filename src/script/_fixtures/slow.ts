/** Test fixture: takes as many milliseconds as the packet's source port, then drops it. */
import type { Packet, Verdict } from "../api.ts";

/** Busy for `srcPort` ms (a script that is slow, not stuck), then drops. */
export function target(packet: Packet): Verdict {
  const until = performance.now() + packet.srcPort;
  // deno-lint-ignore no-empty
  while (performance.now() < until) {}
  return "drop";
}
