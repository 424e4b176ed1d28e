import {
  deepStrictEqual as assertEquals,
  ok as assert,
  rejects as assertRejects,
} from "node:assert/strict";
import { parseIpv4 } from "../packet/address.ts";
import { buildTcpPacket, buildUdpPacket, checksumsValid } from "../packet/build.ts";
import { C, fixture, R, S, testHost } from "./_host_fixture.ts";
import { fixChanged, ScriptHost, type ScriptJob } from "./host.ts";
import { parseServices } from "./services.ts";

const host = testHost;

function request(srcPort: number, dstPort = 53): Uint8Array {
  return buildUdpPacket({ src: C, dst: R, srcPort, dstPort, payload: new Uint8Array(12) });
}

function jobs(h: ScriptHost, ports: number[]): ScriptJob[] {
  return ports.map((p) => {
    const j = h.request(request(p));
    assert(j, `a job for port ${p}`);
    return j;
  });
}

Deno.test("a script decides a batch: drops, changes (checksums fixed), skips unmatched", async () => {
  const h = host();
  try {
    await h.load("t", fixture("ttl_and_drop"), parseServices("udp:53"));
    const js = jobs(h, [1111, 2222, 3333]);
    await h.run(js);
    assertEquals(js.map((j) => [j.drop, j.changed]), [[true, false], [false, false], [
      false,
      true,
    ]]);
    assertEquals(js[2].bytes[8], 7);
    assertEquals(checksumsValid(js[2].bytes), { ip: true, l4: true });
    const [info] = h.list();
    assertEquals(info.packets, 3);
    assertEquals(info.matched, 2);
    assertEquals(info.verdicts, { accepted: 1, changed: 1, dropped: 1, default: 0 });
    assertEquals([info.errors, info.state], [0, "enabled"]);
  } finally {
    await h.close();
  }
});

Deno.test("only packets of the script's services, to or from the relay, become jobs", async () => {
  const h = host();
  try {
    assertEquals(h.request(request(1000)), undefined, "no script yet");
    await h.load("t", fixture("accept_all"), parseServices("udp:53,tcp:80"));
    assertEquals(h.active, true);
    assert(h.request(request(1000)));
    assertEquals(h.request(request(1000, 5353)), undefined, "another port");
    const tcp = buildTcpPacket({ src: C, dst: R, srcPort: 1000, dstPort: 80, flags: 2 });
    assertEquals(h.request(tcp)?.key !== undefined, true);
    const reply = buildUdpPacket({ src: R, dst: C, srcPort: 53, dstPort: 1000 });
    assertEquals(h.reply(reply)?.hook, 1);
    assertEquals(h.request(reply), undefined, "a reply is no request");
    const toServer = buildUdpPacket({ src: C, dst: S, srcPort: 1000, dstPort: 53 });
    assertEquals(h.request(toServer), undefined);
    assertEquals(await h.unload("t"), true);
    assertEquals([h.active, h.list().length, await h.unload("t")], [false, 0, false]);
  } finally {
    await h.close();
  }
});

Deno.test("a throwing script: the default verdict, the error counted, then disabled", async () => {
  for (const defaultVerdict of ["accept", "drop"] as const) {
    const h = host({ maxErrors: 3, defaultVerdict });
    try {
      await h.load("boom", fixture("throws"), parseServices("udp:53"));
      const js = jobs(h, [6666, 1000]);
      await h.run(js);
      assertEquals(js.map((j) => j.drop), [defaultVerdict === "drop", false]);
      let info = h.list()[0];
      assertEquals([info.errors, info.verdicts.default, info.state], [1, 1, "enabled"]);
      assert(info.lastError?.includes("boom from the fixture"), String(info.lastError));
      await h.run(jobs(h, [6666, 6666]));
      info = h.list()[0];
      assertEquals([info.errors, info.state], [3, "disabled"]);
      // Disabled: every packet gets the default verdict, the worker is not asked.
      const after = jobs(h, [1000]);
      await h.run(after);
      assertEquals(after[0].drop, defaultVerdict === "drop");
      assertEquals(h.list()[0].verdicts.default, 4);
    } finally {
      await h.close();
    }
  }
});

Deno.test("a runaway script is stopped at the budget, restarted, and relays again", async () => {
  const budgetMs = 100;
  const h = host({ budgetMs });
  try {
    await h.load("loop", fixture("runaway"), parseServices("udp:53"));
    const js = jobs(h, [7777, 1000]);
    // A timer of the budget's length started with the batch: the host's own budget timer
    // fires with it, so the batch ends soon after, however late the machine runs timers.
    const started = performance.now();
    const own = new Promise<number>((r) => setTimeout(() => r(performance.now()), budgetMs));
    await h.run(js);
    const ended = performance.now();
    const ownFired = await own;
    assert(
      ended - started >= budgetMs - 1,
      `stopped after ${ended - started} ms, before the budget`,
    );
    assert(
      ended - ownFired < 250,
      `stopped ${ended - ownFired} ms after a ${budgetMs} ms timer started with it fired`,
    );
    assertEquals(js.map((j) => j.drop), [false, false], "fail-open");
    const info = h.list()[0];
    assertEquals([info.errors, info.timeouts], [1, 1]);
    // The worker restarts; once it has, packets are decided by the script again.
    for (let i = 0; i < 100 && h.list()[0].restarts === 0; i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assertEquals(h.list()[0].restarts, 1);
    await h.run(jobs(h, [1000]));
    assertEquals(h.list()[0].verdicts.accepted, 1);
  } finally {
    await h.close();
  }
});

Deno.test("a slow script that decides within its budget is waited for", async () => {
  // Half the budget: far enough from it that a loaded machine does not push it over.
  const h = host({ budgetMs: 1000 });
  try {
    await h.load("slow", fixture("slow"), parseServices("udp:53"));
    await h.run(jobs(h, [1])); // a fresh worker's first batch is slower
    const js = jobs(h, [500]);
    await h.run(js);
    assertEquals(js.map((j) => j.drop), [true], "the script's verdict");
    assertEquals([h.list()[0].timeouts, h.list()[0].errors], [0, 0]);
  } finally {
    await h.close();
  }
});

Deno.test("a script whose timer throws is restarted and counted", async () => {
  const h = host();
  try {
    await h.load("timer", fixture("broken_timer"), parseServices("udp:53"));
    for (let i = 0; i < 100 && h.list()[0].restarts === 0; i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const info = h.list()[0];
    assertEquals([info.errors >= 1, info.restarts >= 1], [true, true]);
    assert(info.lastError?.includes("timer boom"), String(info.lastError));
  } finally {
    await h.close();
  }
});

Deno.test("reloading replaces a script; the batch in flight is finished by the old one", async () => {
  const h = host();
  try {
    await h.load("t", fixture("accept_all"), parseServices("udp:53"));
    const js = jobs(h, [1111]);
    const inFlight = h.run(js);
    await h.load("t", fixture("ttl_and_drop"), parseServices("udp:53"));
    await inFlight;
    assertEquals(js[0].drop, false, "decided by accept_all");
    const next = jobs(h, [1111]);
    await h.run(next);
    assertEquals(next[0].drop, true, "decided by ttl_and_drop");
    assertEquals(h.list().map((s) => s.name), ["t"]);
  } finally {
    await h.close();
  }
});

Deno.test("two scripts on one service run in load order; a drop stops the chain", async () => {
  const h = host();
  try {
    await h.load("a", fixture("ttl_and_drop"), parseServices("udp:53"));
    await h.load("b", fixture("accept_all"), parseServices("udp:53"));
    const js = jobs(h, [1111, 3333]);
    await h.run(js);
    assertEquals(h.list().map((s) => s.packets), [2, 1]);
  } finally {
    await h.close();
  }
});

Deno.test("loading refuses a script that fails to type-check, with the compiler's message", async () => {
  const h = host({}, true);
  const dir = await Deno.makeTempDir();
  try {
    const bad = `${dir}/bad.ts`;
    const api = new URL("./api.ts", import.meta.url).href;
    await Deno.writeTextFile(
      bad,
      `import type { Packet } from "${api}";\nexport function target(p: Packet): number {\n` +
        `  return p.ttl;\n}\n`,
    );
    await assertRejects(h.load("bad", bad, parseServices("udp:53")), (e: Error) => {
      assert(/TS2322|not assignable/.test(e.message), e.message);
      return true;
    });
    const none = `${dir}/none.ts`;
    await Deno.writeTextFile(none, "export const x = 1;\n");
    await assertRejects(h.load("none", none, parseServices("udp:53")), /no properties in common/);
    await assertRejects(h.load("missing", `${dir}/nope.ts`, parseServices("udp:53")), /cannot/);
    assertEquals(h.list(), []);
    await h.load("good", fixture("accept_all"), parseServices("udp:53"));
    assertEquals(h.list().length, 1);
  } finally {
    await h.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a script that throws while loading is refused with its error", async () => {
  const h = host();
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/throws_at_load.ts`;
    await Deno.writeTextFile(file, 'throw new Error("load boom");\nexport function target() {}\n');
    await assertRejects(h.load("x", file, parseServices("udp:53")), /load boom/);
    assertEquals(h.list(), []);
  } finally {
    await h.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fixChanged refuses a changed packet sent to loopback, broadcast, multicast or 0/8", async () => {
  const h = host();
  try {
    await h.load("t", fixture("accept_all"), parseServices("udp:53"));
    for (
      const [dst, why] of [
        ["127.0.0.1", /destination 127\.0\.0\.1 is a loopback address/],
        ["255.255.255.255", /destination 255\.255\.255\.255 is the broadcast address/],
        ["224.0.0.251", /destination 224\.0\.0\.251 is a multicast address/],
        ["0.0.0.0", /destination 0\.0\.0\.0 is an unspecified address/],
      ] as const
    ) {
      const j = h.request(request(1000))!;
      const changed = buildUdpPacket({ src: C, dst: parseIpv4(dst), srcPort: 1000, dstPort: 53 });
      assert(why.test(fixChanged(j, changed) ?? ""), `${dst}: ${fixChanged(j, changed)}`);
      assertEquals(j.changed, false);
    }
    const j = h.request(request(1000))!;
    const ok = buildUdpPacket({ src: C, dst: S, srcPort: 1000, dstPort: 53 });
    assertEquals(fixChanged(j, ok), undefined);
    assertEquals(j.changed, true);
  } finally {
    await h.close();
  }
});
