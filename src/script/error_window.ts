/**
 * Counts a script's errors over a sliding window of time, to tell a script that keeps failing
 * (at least `max` errors within `windowMs`) from one that failed once.
 *
 * @example
 * ```ts
 * import { ErrorWindow } from "./error_window.ts";
 * const w = new ErrorWindow(3, 60_000);
 * w.add(0); w.add(10);
 * w.add(20); // true: 3 errors within a minute
 * ```
 * @module
 */

/** The times of the last `max` errors. */
export class ErrorWindow {
  readonly #times: number[] = [];

  constructor(readonly max: number, readonly windowMs: number) {}

  /** Records an error at `now` (ms); true when `max` errors fell within the window. */
  add(now: number): boolean {
    this.#times.push(now);
    if (this.#times.length > this.max) this.#times.shift();
    return this.#times.length >= this.max && now - this.#times[0] <= this.windowMs;
  }

  /** Errors recorded within the window ending at `now`. */
  recent(now: number): number {
    return this.#times.filter((t) => now - t <= this.windowMs).length;
  }
}
