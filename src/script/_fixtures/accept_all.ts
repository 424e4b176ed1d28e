/** Test fixture: accepts every packet. */
import type { Verdict } from "../api.ts";

/** Accepts. */
export function target(): Verdict {
  return "accept";
}
