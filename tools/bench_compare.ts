/**
 * Combines passes of the shared harness (`../shared/bench/peers.sh`) run in opposite orders.
 *
 * The harness measures one relay after another, and this machine drifts within minutes: the
 * same pair of relays measured twice, once in each order, gave krelay 0.84x and 1.17x HAProxy's
 * HTTP rate. Each pass's figures are compared within that pass (a ratio to direct routing, or
 * to the peer a target names), and the passes are combined by geometric mean, so that a drift
 * that favours whoever runs first counts once each way.
 *
 * `deno run -A tools/bench_compare.ts pass1.tsv pass2.tsv ...` prints the combined table and
 * krelay's targets: against HAProxy for TCP and HTTP and the C NFQUEUE program for DNS and UDP
 * (issue 27, the one datapath); against the C splice relay for TCP bulk and kernel NAT for
 * connections and UDP (issue 35, the limit), where a pass measured those peers; and, when
 * measured, krelay against HAProxy with the same full transparency (`haproxy-transparent`,
 * tools/haproxy_transparent.sh).
 *
 * @module
 */

import Table from "cli-table3";

/** The harness's columns, in its .tsv order. */
export const METRICS = ["tcp1", "tcp8", "http", "dns", "udp64"] as const;
export type Metric = typeof METRICS[number];

const LABELS: Record<Metric, string> = {
  tcp1: "TCP 1 stream",
  tcp8: "TCP 8 streams",
  http: "HTTP req/s",
  dns: "DNS q/s",
  udp64: "UDP 64 B pps",
};

/** One pass: each relay's figure per metric; undefined where the harness wrote n/a. */
export type Pass = Map<string, Partial<Record<Metric, number>>>;

/** Parses a harness .tsv (relay, tcp1_gbps, tcp8_gbps, http_rps, dns_qps, udp64_rx_pps, loss). */
export function parsePass(tsv: string): Pass {
  const lines = tsv.trim().split("\n");
  if (!lines[0]?.startsWith("relay\ttcp1_gbps")) {
    throw new Error("not a peers.sh results .tsv (its header should start relay, tcp1_gbps)");
  }
  const pass: Pass = new Map();
  for (const line of lines.slice(1)) {
    const cells = line.split("\t");
    const row: Partial<Record<Metric, number>> = {};
    METRICS.forEach((m, i) => {
      const v = Number(cells[i + 1]);
      if (cells[i + 1] !== undefined && cells[i + 1] !== "n/a" && Number.isFinite(v) && v > 0) {
        row[m] = v;
      }
    });
    pass.set(cells[0], row);
  }
  return pass;
}

/** The geometric mean; undefined if any value is missing. */
export function geomean(values: readonly (number | undefined)[]): number | undefined {
  if (values.length === 0 || values.some((v) => v === undefined)) return undefined;
  return Math.exp(values.reduce<number>((s, v) => s + Math.log(v!), 0) / values.length);
}

/** `relay`'s figure over `baseline`'s in each pass; undefined where either is missing. */
export function pairedRatios(
  passes: readonly Pass[],
  relay: string,
  baseline: string,
  metric: Metric,
): (number | undefined)[] {
  return passes.map((p) => {
    const a = p.get(relay)?.[metric];
    const b = p.get(baseline)?.[metric];
    return a === undefined || b === undefined ? undefined : a / b;
  });
}

/** A target: krelay's figure at least `factor` times the peer's. */
export interface Target {
  metric: Metric;
  peer: string;
  factor: number;
  /** The issue that set it. */
  issue: number;
}

/** The targets, as the issues state them. */
export const TARGETS: readonly Target[] = [
  { metric: "tcp1", peer: "haproxy", factor: 1, issue: 27 },
  { metric: "tcp8", peer: "haproxy", factor: 1, issue: 27 },
  { metric: "http", peer: "haproxy", factor: 1, issue: 27 },
  { metric: "dns", peer: "nfq-c", factor: 1, issue: 27 },
  { metric: "udp64", peer: "nfq-c", factor: 1, issue: 27 },
  { metric: "tcp1", peer: "splice-c", factor: 1, issue: 35 },
  { metric: "tcp8", peer: "splice-c", factor: 1, issue: 35 },
  { metric: "http", peer: "kernel-nat", factor: 0.8, issue: 35 },
  { metric: "dns", peer: "kernel-nat", factor: 0.95, issue: 35 },
  { metric: "udp64", peer: "kernel-nat", factor: 0.95, issue: 35 },
];

/** Passes a verdict needs, and how far below its target a single pass may fall. */
export const MIN_PASSES = 3;
export const WORST_PASS = 0.9;

/**
 * A target's verdict, as the issues judge it on this noisy machine: met when the geometric mean
 * of at least {@link MIN_PASSES} passes reaches the target and no pass falls below
 * {@link WORST_PASS} of it.
 */
export type Verdict = "met" | "not met" | "too few passes" | "not measured";

/** A target's ratios in each pass, their geometric mean, and its verdict. */
export interface TargetResult extends Target {
  perPass: (number | undefined)[];
  combined: number | undefined;
  verdict: Verdict;
}

function verdictOf(
  t: Target,
  perPass: readonly (number | undefined)[],
  combined?: number,
): Verdict {
  if (combined === undefined) return "not measured";
  const met = combined >= t.factor && perPass.every((r) => r! >= WORST_PASS * t.factor);
  if (!met) return "not met";
  return perPass.length >= MIN_PASSES ? "met" : "too few passes";
}

/** `relay` against a target's peer: its ratio in each pass and their geometric mean. */
function compared(
  passes: readonly Pass[],
  relay: string,
  t: Target,
): Omit<TargetResult, "verdict"> {
  const perPass = pairedRatios(passes, relay, t.peer, t.metric);
  return { ...t, perPass, combined: geomean(perPass) };
}

/** Each measured target's ratios, combined ratio and verdict for `relay`. */
export function checkTargets(passes: readonly Pass[], relay: string): TargetResult[] {
  return TARGETS.map((t) => {
    const c = compared(passes, relay, t);
    return { ...c, verdict: verdictOf(t, c.perPass, c.combined) };
  });
}

/**
 * Peers that pay what krelay's targets ask of krelay, full transparency, which the targets'
 * own peers do not (the harness's HAProxy connects from the relay's address): shown beside the
 * targets, when a pass measured them, to tell the price of transparency from krelay's own.
 */
export const SAME_TRANSPARENCY: readonly Target[] = [
  { metric: "tcp1", peer: "haproxy-transparent", factor: 1, issue: 0 },
  { metric: "tcp8", peer: "haproxy-transparent", factor: 1, issue: 0 },
  { metric: "http", peer: "haproxy-transparent", factor: 1, issue: 0 },
];

/** `relay` against the peers of `targets` that some pass measured (no verdict: context). */
export function compareWith(
  passes: readonly Pass[],
  relay: string,
  targets: readonly Target[],
): Omit<TargetResult, "verdict">[] {
  return targets
    .filter((t) => passes.some((p) => p.has(t.peer)))
    .map((t) => compared(passes, relay, t));
}

/** The relays of the passes, in the first pass's order, then any others. */
export function relaysOf(passes: readonly Pass[]): string[] {
  const seen: string[] = [];
  for (const p of passes) for (const r of p.keys()) if (!seen.includes(r)) seen.push(r);
  return seen;
}

const fmt = (v: number | undefined) => v === undefined ? "-" : v.toFixed(2);

function render(passes: readonly Pass[], relay: string): string {
  const ratios = new Table({
    head: ["relay", ...METRICS.map((m) => LABELS[m])],
    style: { head: [], border: [], compact: true },
  });
  for (const r of relaysOf(passes)) {
    ratios.push([
      r,
      ...METRICS.map((m) => {
        const each = pairedRatios(passes, r, "direct", m);
        return `${fmt(geomean(each))} (${each.map(fmt).join(", ")})`;
      }),
    ]);
  }
  const targets = new Table({
    head: ["issue", "target", "peer", "at least", `${relay} / peer`, "per pass", "verdict"],
    style: { head: [], border: [], compact: true },
  });
  for (const t of checkTargets(passes, relay)) {
    if (t.verdict === "not measured") continue;
    targets.push([
      `#${t.issue}`,
      LABELS[t.metric],
      t.peer,
      fmt(t.factor),
      fmt(t.combined),
      t.perPass.map(fmt).join(", "),
      t.verdict,
    ]);
  }
  const lines = [
    `Ratio to direct routing, geometric mean of ${passes.length} passes (each pass in brackets):`,
    ratios.toString(),
    `${relay} against the peers its targets name, paired within each pass (met: the mean of ` +
    `${MIN_PASSES}+ passes at the target, no pass below ${WORST_PASS} of it):`,
    targets.toString(),
  ];
  const same = compareWith(passes, relay, SAME_TRANSPARENCY);
  if (same.length > 0) {
    const context = new Table({
      head: ["metric", "peer", `${relay} / peer`, "per pass"],
      style: { head: [], border: [], compact: true },
    });
    for (const c of same) {
      context.push([LABELS[c.metric], c.peer, fmt(c.combined), c.perPass.map(fmt).join(", ")]);
    }
    lines.push(`${relay} against peers with the same transparency (context, no target):`);
    lines.push(context.toString());
  }
  return lines.join("\n");
}

if (import.meta.main) {
  const files = Deno.args.filter((a) => !a.startsWith("--"));
  const relay = Deno.args.find((a) => a.startsWith("--relay="))?.slice(8) ?? "krelay";
  if (files.length === 0) {
    console.error("usage: bench_compare.ts [--relay=NAME] pass1.tsv [pass2.tsv ...]");
    Deno.exit(2);
  }
  const passes = files.map((f) => parsePass(Deno.readTextFileSync(f)));
  console.log(render(passes, relay));
}
