/**
 * Test helper: parses Prometheus' text exposition into families and samples, so tests compare
 * values exactly instead of searching the text.
 *
 * @module
 */

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
