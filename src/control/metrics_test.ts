import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import {
  METRICS,
  METRICS_CONTENT_TYPE,
  metricsRenderer,
  NOT_EXPORTED,
  renderMetrics,
  serveMetrics,
} from "./metrics.ts";
import { expectedSeries, parseExposition, sampleKey, statusNumbers } from "./_exposition.ts";
import { sampleReport } from "./_report_fixture.ts";
import type { StatusReport } from "../daemon/reports.ts";

/** The sample report with two relay threads, every number still different. */
function report(): StatusReport {
  const r = sampleReport();
  r.relayThreads = [{ cpu: 1, active: 29, total: 30 }, { cpu: null, active: 31, total: 32 }];
  return r;
}

/** The metrics of the report not read from one status number. */
const DERIVED = ["krelay_up", "krelay_start_time_seconds", "krelay_build_info"];
const numbers = statusNumbers;

Deno.test("every number of the status report is a series or listed as not exported, never both", () => {
  const fields = new Set(METRICS.flatMap((m) => m.series.map((s) => s.field as string)));
  const all = [...numbers(report()).keys()];
  for (const path of all) {
    assert(
      fields.has(path) !== (path in NOT_EXPORTED),
      `${path}: ${
        fields.has(path) ? "both a series and not exported" : "neither a series nor listed"
      }`,
    );
  }
  for (const f of [...fields, ...Object.keys(NOT_EXPORTED)]) {
    assert(all.includes(f), `${f} is no number of the status report`);
  }
  // Each field is one series.
  const series = METRICS.flatMap((m) => m.series.map((s) => s.field));
  assertEquals(series.length, fields.size);
});

Deno.test("renderMetrics() gives every series exactly the value of its status field", async () => {
  const r = report();
  const scrape = parseExposition(await renderMetrics(r));
  for (const m of METRICS) {
    assertEquals(scrape.families.get(m.name), { type: m.type, help: m.help }, m.name);
  }
  const expected = expectedSeries(r, METRICS);
  const actual = Object.fromEntries(
    scrape.samples.filter((s) => !DERIVED.includes(s.name))
      .map((s) => [sampleKey(s.name, s.labels), s.value]),
  );
  assertEquals(actual, expected);
});

// Splits a name into words and takes plurals to the singular: "udpReplies" -> udp, reply.
const words = (s: string) =>
  s.replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase().split(/[_.\[\]]+/).filter((w) => w)
    .map((w) => w.replace(/ies$/, "y").replace(/s$/, ""));
/** The words a field's section stands for in metric names. */
const SECTION: Record<string, string[]> = {
  packets: ["packet"],
  datapath: ["queue"],
  tcp: ["tcp"],
  nat: ["nat"],
  queue: ["queue"],
  relayThreads: ["relay", "thread"],
  servers: ["server"],
};

/** Series named otherwise than their field: the words their names carry instead. */
const NAMED_OTHERWISE: Record<string, string[]> = {
  "packets.toKernel": ["udp", "first", "packet"],
  "packets.tcpSegments": ["tcp", "segment"],
  "queue.idSequence": ["queue", "kernel", "queued"],
  // "ipv6Active" is one word to the splitter (a digit before the capital).
  "tcp.ipv6Active": ["tcp", "ipv6", "active"],
  "tcp.ipv6Total": ["tcp", "ipv6", "total"],
};

Deno.test("each series is named after its status field (no counter wired to another's field)", () => {
  for (const m of METRICS) {
    for (const s of m.series) {
      const [section, ...rest] = s.field.includes(".") ? s.field.split(/\[\]\.|\./) : ["", s.field];
      const want = NAMED_OTHERWISE[s.field] ??
        [...(SECTION[section] ?? []), ...rest.flatMap(words)];
      const have = new Set([...words(m.name), ...Object.values(s.labels ?? {}).flatMap(words)]);
      const lacking = want.filter((w) => !have.has(w));
      assertEquals(lacking, [], `${sampleKey(m.name, s.labels ?? {})} shows ${s.field}`);
    }
  }
});

Deno.test("krelay_up, krelay_start_time_seconds and krelay_build_info", async () => {
  const r = report();
  const pkg = JSON.parse(await Deno.readTextFile(new URL("../../package.json", import.meta.url)));
  const values = (text: string) =>
    Object.fromEntries(
      parseExposition(text).samples.filter((s) => DERIVED.includes(s.name))
        .map((s) => [sampleKey(s.name, s.labels), s.value]),
    );
  assertEquals(values(await renderMetrics(r)), {
    krelay_up: 1,
    krelay_start_time_seconds: Date.UTC(2026, 10, 21, 1, 22, 11) / 1000,
    [`krelay_build_info{deno="${Deno.version.deno}",version="${pkg.version}"}`]: 1,
  });
  r.state = "stopped";
  assertEquals(values(await renderMetrics(r)).krelay_up, 0);
});

Deno.test("the metrics follow Prometheus' naming conventions, process metrics included", async () => {
  const scrape = parseExposition(await metricsRenderer({ process: true })(report()));
  const types = new Map([...scrape.families].map(([name, f]) => [name, f.type]));
  for (const [name, type] of types) {
    assert(type === "counter" || type === "gauge", `${name}: ${type}`);
    assert(name.endsWith("_total") === (type === "counter"), `${name} is a ${type}`);
    if (type === "counter") {
      const stem = name.slice(0, -"_total".length);
      assert(!types.has(stem), `${name} and ${stem} share a stem`);
    }
    assert(scrape.families.get(name)!.help !== "", `${name} has no HELP`);
  }
  // Every sample belongs to a declared family.
  for (const s of scrape.samples) assert(types.has(s.name), `${s.name} has no TYPE`);
  for (
    const name of [
      "process_cpu_seconds_total",
      "process_resident_memory_bytes",
      "process_start_time_seconds",
      "process_open_fds",
    ]
  ) {
    const sample = scrape.samples.find((s) => s.name === name);
    assert(sample !== undefined && sample.value > 0, `${name}: ${JSON.stringify(sample)}`);
  }
  assert(!types.has("krelay_uptime_seconds"), "an uptime gauge");
});

Deno.test("serveMetrics() serves /metrics and refuses a port in use", async () => {
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (probe.addr as Deno.NetAddr).port;
  probe.close();
  const r = report();
  const server = serveMetrics(`127.0.0.1:${port}`, () => r);
  try {
    const res = await fetch(`http://127.0.0.1:${port}/metrics`);
    assertEquals(res.headers.get("content-type"), METRICS_CONTENT_TYPE);
    const scrape = parseExposition(await res.text());
    const seen = scrape.samples.find((s) => s.name === "krelay_packets_seen_total");
    assertEquals(seen?.value, r.packets.seen);
    assert(scrape.families.has("process_cpu_seconds_total"));
    assertEquals(
      await fetch(`http://127.0.0.1:${port}/other`).then(async (r) => {
        await r.body?.cancel();
        return r.status;
      }),
      404,
    );
    let refused = "";
    try {
      serveMetrics(`127.0.0.1:${port}`, sampleReport);
    } catch (e) {
      refused = (e as Error).message;
    }
    assert(refused.startsWith(`cannot serve metrics on 127.0.0.1:${port}`), refused);
  } finally {
    await server.close();
  }
});

Deno.test("without a bound queue, the kernel's queue series are left out, the rest kept", async () => {
  const r = report();
  delete r.queue;
  const names = new Set(parseExposition(await renderMetrics(r)).samples.map((s) => s.name));
  for (const m of METRICS) {
    const fromQueue = m.series.every((s) => s.field.startsWith("queue."));
    assertEquals(names.has(m.name), !fromQueue, m.name);
  }
});
