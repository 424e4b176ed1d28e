import assert from "node:assert/strict";
import {
  checkTargets,
  compareWith,
  geomean,
  pairedRatios,
  parsePass,
  relaysOf,
  SAME_TRANSPARENCY,
} from "./bench_compare.ts";

const close = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-12, `${a} != ${b}`);

const HEADER = "relay\ttcp1_gbps\ttcp8_gbps\thttp_rps\tdns_qps\tudp64_rx_pps\tudp64_loss_pct";

// Two passes in opposite orders, as in the runs that motivated the tool: krelay ahead in one
// and behind in the other.
const first = parsePass(
  [
    HEADER,
    "direct\t30\t28\t20000\t96000\t250000\t0.3",
    "nfq-c\t12\t10\t11000\t50000\t150000\t12",
    "haproxy\t11\t11\t11000\tn/a\tn/a\tn/a",
    "krelay-kernel\t19\t21\t9200\t99000\t200000\t0.6",
  ].join("\n"),
);
const second = parsePass(
  [
    HEADER,
    "direct\t29\t27\t19000\t90000\t240000\t0.3",
    "krelay-kernel\t20\t21\t11000\t100000\t210000\t0.6",
    "haproxy\t9\t10\t9000\tn/a\tn/a\tn/a",
    "nfq-c\t10\t9\t10000\t60000\t130000\t10",
  ].join("\n"),
);

Deno.test("parsePass() reads each relay's figures and leaves n/a out", () => {
  assert.deepEqual(first.get("krelay-kernel"), {
    tcp1: 19,
    tcp8: 21,
    http: 9200,
    dns: 99000,
    udp64: 200000,
  });
  assert.deepEqual(first.get("haproxy"), { tcp1: 11, tcp8: 11, http: 11000 });
});

Deno.test("parsePass() refuses what is not a harness .tsv", () => {
  assert.throws(() => parsePass("relay,tcp1\nx,1"), /not a peers.sh results .tsv/);
});

Deno.test("geomean() of ratios, undefined when one is missing", () => {
  close(geomean([0.84, 1.17])!, Math.sqrt(0.84 * 1.17));
  assert.deepEqual(geomean([1.2, undefined]), undefined);
  assert.deepEqual(geomean([]), undefined);
});

Deno.test("pairedRatios() compares within each pass, whatever the order of the relays", () => {
  const http = pairedRatios([first, second], "krelay-kernel", "haproxy", "http");
  close(http[0]!, 9200 / 11000);
  close(http[1]!, 11000 / 9000);
  assert.deepEqual(pairedRatios([first], "krelay-kernel", "haproxy", "dns"), [undefined]);
});

const target = (results: ReturnType<typeof checkTargets>, metric: string, peer: string) =>
  results.find((t) => t.metric === metric && t.peer === peer)!;

Deno.test("checkTargets() meets a target on the mean of 3 passes with none below 0.9 of it", () => {
  // HTTP against HAProxy: 0.84 and 1.22, mean 1.01, but one pass below 0.9.
  const two = checkTargets([first, second], "krelay-kernel");
  const http = target(two, "http", "haproxy");
  close(http.combined!, Math.sqrt((9200 / 11000) * (11000 / 9000)));
  assert.deepEqual(http.verdict, "not met");
  // DNS against the C program: ahead in both, but two passes are too few to call it met.
  assert.deepEqual(target(two, "dns", "nfq-c").verdict, "too few passes");
  assert.deepEqual(
    target(checkTargets([second], "krelay-kernel"), "http", "haproxy").verdict,
    "too few passes",
  );
  const three = checkTargets([first, second, second], "krelay-kernel");
  assert.deepEqual(target(three, "dns", "nfq-c").verdict, "met");
  assert.deepEqual(target(three, "http", "haproxy").verdict, "not met");
});

Deno.test("checkTargets() judges a target of less than parity against its own factor", () => {
  const pass = (krelay: number) =>
    parsePass(
      [
        HEADER,
        "direct\t1\t1\t100\t1\t1\t0",
        "kernel-nat\t1\t1\t100\t1\t1\t0",
        `krelay-kernel\t1\t1\t${krelay}\t1\t1\t0`,
      ]
        .join("\n"),
    );
  // HTTP at least 0.8 of kernel NAT's, no pass below 0.72: 0.82, 0.85, 0.74 is met.
  const ok = checkTargets([pass(82), pass(85), pass(74)], "krelay-kernel");
  assert.deepEqual(target(ok, "http", "kernel-nat").verdict, "met");
  // 0.90, 0.90, 0.71: a mean of 0.83, but one pass below 0.72.
  const low = checkTargets([pass(90), pass(90), pass(71)], "krelay-kernel");
  close(target(low, "http", "kernel-nat").combined!, Math.cbrt(0.9 * 0.9 * 0.71));
  assert.deepEqual(target(low, "http", "kernel-nat").verdict, "not met");
});

Deno.test("checkTargets() does not call an unmeasured target met", () => {
  const noPeer = parsePass([HEADER, "direct\t1\t1\t1\t1\t1\t0", "krelay-kernel\t2\t2\t2\t2\t2\t0"]
    .join("\n"));
  for (const t of checkTargets([noPeer], "krelay-kernel")) {
    assert.deepEqual(t.combined, undefined);
    assert.deepEqual(t.verdict, "not measured");
  }
});

Deno.test("relaysOf() keeps the first pass's order", () => {
  assert.deepEqual(relaysOf([first, second]), ["direct", "nfq-c", "haproxy", "krelay-kernel"]);
});

Deno.test("compareWith() pairs krelay with the transparent peer where a pass measured it", () => {
  const withPeer = parsePass(
    [
      HEADER,
      "direct\t30\t28\t20000\t96000\t250000\t0.3",
      "haproxy-transparent\t10\t10\t10000\tn/a\tn/a\tn/a",
      "krelay-kernel\t20\t25\t9000\t99000\t200000\t0.6",
    ].join("\n"),
  );
  const rows = compareWith([withPeer, second], "krelay-kernel", SAME_TRANSPARENCY);
  assert.deepEqual(rows.map((r) => r.metric), ["tcp1", "tcp8", "http"]);
  const http = rows.find((r) => r.metric === "http")!;
  // The second pass has no such peer: no ratio, and no combined figure from one pass alone.
  assert.deepEqual(http.perPass.length, 2);
  close(http.perPass[0]!, 0.9);
  assert.deepEqual(http.perPass[1], undefined);
  assert.deepEqual(http.combined, undefined);
  close(compareWith([withPeer], "krelay-kernel", SAME_TRANSPARENCY)[1].combined!, 2.5);
});

Deno.test("compareWith() shows nothing when no pass measured the peer", () => {
  assert.deepEqual(compareWith([first, second], "krelay-kernel", SAME_TRANSPARENCY), []);
});
