/**
 * Table pressure, told once in a while: when the NAT table evicted or refused flows since
 * the last note, a summary at most every {@link PRESSURE_NOTE_MS}, so that a flood of new
 * flows yields a few log lines, not one per flow. Pure: the caller logs and gives the clock.
 *
 * @module
 */

import type { NatTableStats } from "./nat_table.ts";

/** Least time between two notes. */
export const PRESSURE_NOTE_MS = 10_000;

/** What happened since the last note. */
export interface PressureNote {
  evicted: number;
  evictedUnanswered: number;
  refused: number;
  entries: number;
  /** Seconds the note covers. */
  seconds: number;
}

/** Compares the table's counters with those of the last note. */
export class TablePressure {
  #last = { evicted: 0, evictedUnanswered: 0, refused: 0 };
  #lastAt = -Infinity;
  #since = 0;

  constructor(private readonly intervalMs = PRESSURE_NOTE_MS) {}

  /** A note when flows were evicted or refused since the last one and one is due. */
  check(stats: NatTableStats, now: number): PressureNote | undefined {
    const evicted = stats.evicted - this.#last.evicted;
    const refused = stats.refused - this.#last.refused;
    if (evicted === 0 && refused === 0) {
      this.#since = now;
      return undefined;
    }
    if (now - this.#lastAt < this.intervalMs) return undefined;
    const note = {
      evicted,
      evictedUnanswered: stats.evictedUnanswered - this.#last.evictedUnanswered,
      refused,
      entries: stats.entries,
      seconds: Math.max(0, Math.round((now - Math.max(this.#since, this.#lastAt)) / 1000)),
    };
    this.#last = {
      evicted: stats.evicted,
      evictedUnanswered: stats.evictedUnanswered,
      refused: stats.refused,
    };
    this.#lastAt = now;
    this.#since = now;
    return note;
  }
}
