/**
 * The rules that keep V8's optimised code for the relay's hot paths valid, in one place. V8
 * compiles a function for the kinds of values and object shapes it has seen; a value of another
 * kind later (a number that is no longer a small integer, an object of another shape, a string
 * built instead of a constant) throws that code away ("deoptimises") and compiles it again, at
 * the moment a client is waiting. The relay's warm-up (relay/warm_up.ts) runs its code before
 * clients come; these rules make sure clients then meet the kinds the warm-up taught:
 *
 * 1. **Counters that pass 2^31 are doubles from the start**: initialise with {@link DOUBLE_ZERO}
 *    (-0 is no small integer) and read as `x + 0` (never -0). A byte count starting at 0 would
 *    change its field's kind at the first 2 GiB transfer (relay/pump.ts, relay/tcp_relay.ts).
 * 2. **IPv4 addresses are signed 32-bit integers** ({@link signed32}): 128.0.0.0 and above read
 *    unsigned are doubles, while the warm-up's 127.0.0.1 is a small integer (relay/socket.ts
 *    reads them signed; nat/tcp_targets.ts stores them signed). Listed, they are unsigned again.
 * 3. **Objects the warm-up touched are restored in place** ({@link restoreInPlace}), never
 *    replaced by a copy, whose shape V8 would see as new (relay/tcp_relay.ts's counters).
 * 4. **Strings compared on hot paths are constants**, never built from templates (pump.ts's
 *    reset reasons).
 *
 * v8_shapes_test.ts guards rules 1 and 2: it has V8 optimise the hot functions on warm-up
 * values, then gives them a client's, and checks the code survives; and that breaking the rule
 * does throw it away, so the check can fail.
 *
 * @example
 * ```ts
 * import { DOUBLE_ZERO, signed32 } from "./v8_shapes.ts";
 * const counters = { bytes: DOUBLE_ZERO };
 * counters.bytes += 3 * 2 ** 30; // stays a double field
 * signed32(0xcb007101); // -889163519: 203.0.113.1 as a small integer
 * ```
 * @module
 */

/** A double zero for counters that may pass 2^31 (rule 1); read counters as `x + 0`. */
export const DOUBLE_ZERO = -0;

/** An IPv4 address (either form) as the signed 32-bit integer the hot paths use (rule 2). */
export function signed32(address: number): number {
  return address | 0;
}

/** Puts `saved`'s values back into `target` without making a new object (rule 3). */
export function restoreInPlace<T extends object>(target: T, saved: Readonly<T>): void {
  Object.assign(target, saved);
}
