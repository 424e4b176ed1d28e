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

/** How the test tells the elements of each list apart: the labels each series should carry. */
const ELEMENT_LABELS: Record<string, (element: never, index: number) => Record<string, string>> = {
  relayThreads: (t: { cpu: number | null }, i: number) => ({
    thread: String(i + 1),
    cpu: t.cpu === null ? "any" : String(t.cpu),
  }),
  servers: (s: { address: string }) => ({ server: s.address }),
  checks: (c: { service: string }) => ({ service: c.service }),
};

/** What each series of `table` should show for `r`: sample key -> value. */
export function expectedSeries(
  r: StatusReport,
  table: readonly MetricSpec[],
): Record<string, number> {
  const expected: Record<string, number> = {};
  for (const m of table) {
    for (const s of m.series) {
      // Absent parts (the kernel's queue counters before a queue is bound) have no series.
      const walk = (at: unknown, parts: string[], labels: Record<string, string>): void => {
        if (at === undefined || at === null) return;
        const [part, ...rest] = parts;
        if (part.endsWith("[]")) {
          const name = part.slice(0, -2);
          const list = (at as Record<string, unknown[]>)[name];
          list.forEach((e, i) =>
            walk(e, rest, { ...labels, ...ELEMENT_LABELS[name](e as never, i) })
          );
        } else if (rest.length > 0) {
          walk((at as Record<string, unknown>)[part], rest, labels);
        } else if (typeof (at as Record<string, unknown>)[part] === "number") {
          expected[sampleKey(m.name, labels)] = (at as Record<string, number>)[part];
        }
      };
      walk(r, s.field.split("."), { ...s.labels });
    }
  }
  return expected;
}
