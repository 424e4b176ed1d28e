/**
 * Test helper: parses Prometheus' text exposition into families and samples, so tests compare
 * values exactly instead of searching the text, and says what each series of the metrics
 * table should show, from the status report walked without the production code.
 *
 * @module
 */

import type { StatusReport } from "../daemon/reports.ts";
import type { MetricSpec } from "./metrics.ts";

/** One sample line. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** What a scrape said. */
export interface Exposition {
  /** Family name -> its TYPE and HELP. */
  families: Map<string, { type: string; help: string }>;
  samples: Sample[];
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/** Parses `text`; throws on a line it cannot read, or on a TYPE or HELP given twice. */
export function parseExposition(text: string): Exposition {
  const families = new Map<string, { type: string; help: string }>();
  const samples: Sample[] = [];
  const family = (name: string) => {
    if (!families.has(name)) families.set(name, { type: "", help: "" });
    return families.get(name)!;
  };
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    const meta = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
    if (meta) {
      const f = family(meta[2]);
      const key = meta[1] === "HELP" ? "help" : "type";
      if (f[key] !== "") throw new Error(`${meta[1]} given twice for ${meta[2]}`);
      f[key] = meta[3];
      continue;
    }
    if (line.startsWith("#")) continue;
    const m = SAMPLE.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, k, v] of (m[2] ?? "").matchAll(LABEL)) {
      labels[k] = v.replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    }
    const value = m[3] === "+Inf" ? Infinity : m[3] === "-Inf" ? -Infinity : Number(m[3]);
    if (Number.isNaN(value) && m[3] !== "NaN") throw new Error(`not a value: ${line}`);
    samples.push({ name: m[1], labels, value });
  }
  return { families, samples };
}

/** The key of a sample: its name and labels, sorted: `name{a="1",b="2"}`. */
export function sampleKey(name: string, labels: Record<string, string>): string {
  const l = Object.keys(labels).sort().map((k) => `${k}="${labels[k]}"`).join(",");
  return l ? `${name}{${l}}` : name;
}

/**
 * Every number of a report: path -> value; a relay thread's number under "relayThreads[].x",
 * one value per thread (none for a null). The configuration is no metric.
 */
export function statusNumbers(r: StatusReport): Map<string, number[]> {
  const out = new Map<string, number[]>();
  const walk = (v: unknown, path: string) => {
    if (typeof v === "number") out.set(path, [...(out.get(path) ?? []), v]);
    else if (Array.isArray(v)) { for (const x of v) walk(x, `${path}[]`); }
    else if (v !== null && typeof v === "object") {
      for (const [k, x] of Object.entries(v)) walk(x, path ? `${path}.${k}` : k);
    }
  };
  walk({ ...r, config: undefined }, "");
  return out;
}

/** What each series of `table` should show for `r`: sample key -> value. */
export function expectedSeries(
  r: StatusReport,
  table: readonly MetricSpec[],
): Record<string, number> {
  const values = statusNumbers(r);
  const expected: Record<string, number> = {};
  for (const m of table) {
    for (const s of m.series) {
      const v = values.get(s.field);
      if (s.field.startsWith("relayThreads[].")) {
        r.relayThreads.forEach((t, i) => {
          const labels = { thread: String(i + 1), cpu: t.cpu === null ? "any" : String(t.cpu) };
          expected[sampleKey(m.name, { ...s.labels, ...labels })] = v![i];
        });
      } else {
        // Absent from this report (the kernel's queue counters before a queue is bound).
        if (v !== undefined) expected[sampleKey(m.name, s.labels ?? {})] = v[0];
      }
    }
  }
  return expected;
}
