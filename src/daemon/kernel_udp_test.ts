import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { KernelUdp, type PendingFlow, tally, watermarks } from "./kernel_udp.ts";
import type { CommandRunner } from "../system/command.ts";
import { parseIpv4 } from "../packet/address.ts";

const CLIENT = parseIpv4("198.51.100.10") >>> 0;
const SRV1 = parseIpv4("203.0.113.10") >>> 0;
const SRV2 = parseIpv4("203.0.113.11") >>> 0;

/** The kernel's two maps, as nft lists them; and the scripts krelay feeds it. */
class FakeNft {
  flows = new Map<number, { expires: number; server: string }>();
  answered = new Set<number>();
  scripts: string[] = [];
  run: CommandRunner = (_cmd, args, stdin) => {
    if (args[0] === "-f") {
      this.scripts.push(stdin!);
      for (const m of stdin!.matchAll(/198\.51\.100\.10 \. (\d+) \. 53(?:,|\s})/g)) {
        if (stdin!.includes(`delete element ip krelay udp_flows`)) this.flows.delete(Number(m[1]));
      }
      return Promise.resolve({ code: 0, stdout: "", stderr: "" });
    }
    const name = args.at(-1)!;
    const elems = [...this.flows].filter(([p]) => name === "udp_flows" || this.answered.has(p))
      .map(([p, f]) =>
        `[{"elem": {"val": {"concat": ["198.51.100.10", ${p}, 53]}, "expires": ${f.expires}}}, "${f.server}"]`
      );
    const stdout = `{"nftables": [{"map": {"name": "${name}", "elem": [${elems.join(",")}]}}]}`;
    return Promise.resolve({ code: 0, stdout, stderr: "" });
  };
}

Deno.test("watermarks() evict at seven eighths of the table, down to three quarters", () => {
  assertEquals(watermarks(256), { high: 224, low: 192 });
  assertEquals(watermarks(16), { high: 14, low: 12 });
});

Deno.test("tally() counts unanswered flows against a server only when none of its flows was answered", () => {
  const f = (port: number, server: number): PendingFlow => ({
    key: `198.51.100.10:${port}:53`,
    port: 53,
    server,
    at: 0,
  });
  const answered = new Set(["198.51.100.10:1:53"]);
  const t = tally([f(1, SRV1), f(2, SRV1), f(3, SRV2), f(4, SRV2)], answered);
  assertEquals([...t.values()], [
    { port: 53, server: SRV1, failures: 0, successes: 1 },
    { port: 53, server: SRV2, failures: 2, successes: 0 },
  ]);
});

Deno.test("KernelUdp evicts the idlest unanswered flows down to the low mark once the count reaches the high one", async () => {
  const nft = new FakeNft();
  const now = 0;
  const k = new KernelUdp({
    run: nft.run,
    now: () => now,
    limits: () => ({ max: 16, timeoutMs: 4000 }),
    judged: () => false,
    onJudged: () => {},
    onEvicted: (flows) => forgotten.push(...flows.map((f) => f.clientPort)),
  });
  const forgotten: number[] = [];
  // 14 flows (the high mark): port 1 answered and the idlest; the others by age.
  nft.answered.add(1);
  for (let p = 1; p <= 13; p++) {
    nft.flows.set(p, { expires: p, server: "203.0.113.10" });
    k.created(CLIENT, p, 53, SRV1);
  }
  assertEquals(k.check(), undefined);
  nft.flows.set(14, { expires: 14, server: "203.0.113.10" });
  k.created(CLIENT, 14, 53, SRV1);
  // The fourteenth started it.
  await k.check();
  assertEquals([...nft.flows.keys()], [1, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
  assertEquals(k.stats, { evicted: 2, evictionErrors: 0 });
  // Handed on, for the flowtable to forget.
  assertEquals(forgotten, [2, 3]);
  assertEquals(k.count, 12);
  assertEquals(nft.scripts.length, 1);
});

Deno.test("KernelUdp judges each flow half of udp_timeout after its first packet, by udp_answered", async () => {
  const nft = new FakeNft();
  let now = 0;
  const judged: number[][] = [];
  const k = new KernelUdp({
    run: nft.run,
    now: () => now,
    limits: () => ({ max: 1024, timeoutMs: 4000 }),
    judged: (port) => port === 53,
    onJudged: (port, server, failures, successes) =>
      judged.push([port, server === SRV1 ? 1 : 2, failures, successes]),
  });
  for (const [p, server] of [[1, SRV1], [2, SRV2], [3, SRV2]]) {
    nft.flows.set(p, { expires: 4, server: "x" });
    k.created(CLIENT, p, 53, server);
  }
  k.created(CLIENT, 9, 5353, SRV1); // not a checked service: never judged
  nft.answered.add(1);
  now = 1999;
  await k.tick();
  assertEquals(judged, []);
  now = 2000;
  await k.tick();
  assertEquals(judged, [[53, 1, 0, 1], [53, 2, 2, 0]]);
  await k.tick();
  assertEquals(judged.length, 2);
});

Deno.test("KernelUdp reads a large udp_answered less often than every tick", async () => {
  const nft = new FakeNft();
  for (let p = 1000; p < 1000 + 16384; p++) {
    nft.flows.set(p, { expires: 60, server: "203.0.113.10" });
    nft.answered.add(p);
  }
  let listed = 0;
  const run: CommandRunner = (cmd, args, stdin) => {
    if (args.at(-1) === "udp_answered") listed++;
    return nft.run(cmd, args, stdin);
  };
  let now = 0;
  const k = new KernelUdp({
    run,
    now: () => now,
    limits: () => ({ max: 65536, timeoutMs: 60_000 }),
    judged: () => true,
    onJudged: () => {},
  });
  k.created(CLIENT, 1, 53, SRV1);
  now = 1000;
  k.created(CLIENT, 2, 53, SRV1);
  now = 30_000;
  await k.tick();
  assertEquals(listed, 1);
  // 16384 answered flows: two seconds between readings.
  now = 31_000;
  await k.tick();
  assertEquals(listed, 1);
  now = 32_000;
  await k.tick();
  assertEquals(listed, 2);
});
