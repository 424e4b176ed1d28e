import { deepStrictEqual as assertEquals } from "node:assert/strict";
import dgram from "node:dgram";
import { dnsQuery, isDnsAnswer, probeTcp, probeUdp, udpProbe } from "./checker.ts";

Deno.test("dnsQuery asks NS for the root and A for a name, with recursion desired", () => {
  assertEquals(
    [...dnsQuery(0x1234, ".")],
    [0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1],
  );
  const q = dnsQuery(7, "lab.example");
  assertEquals([...q.slice(12)], [
    3,
    ...new TextEncoder().encode("lab"),
    7,
    ...new TextEncoder().encode("example"),
    0,
    0,
    1,
    0,
    1,
  ]);
  const answer = Uint8Array.from(q);
  answer[2] |= 0x80;
  assertEquals([isDnsAnswer(answer, 7), isDnsAnswer(answer, 8), isDnsAnswer(q, 7)], [
    true,
    false,
    false,
  ]);
});

Deno.test("udpProbe reads health_udp_probe", () => {
  assertEquals(udpProbe("dns", "."), { dns: "." });
  assertEquals(udpProbe("none", "."), "none");
  assertEquals(udpProbe("hex:0aff", "."), { bytes: Uint8Array.from([10, 255]) });
});

Deno.test("probeTcp: accepted is up; refused says so at once", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  const accepting = listener.accept().then((c) => c.close());
  assertEquals(await probeTcp("127.0.0.1", port, 1000), undefined);
  await accepting;
  listener.close();
  const started = performance.now();
  assertEquals(await probeTcp("127.0.0.1", port, 1000), "connection refused");
  assertEquals(performance.now() - started < 500, true);
});

Deno.test("probeUdp: a DNS answer is up; silence is a failure after the timeout", async () => {
  const server = dgram.createSocket("udp4");
  let answer = true;
  server.on("message", (m, from) => {
    if (!answer) return;
    const reply = new Uint8Array(m);
    reply[2] |= 0x80;
    reply[3] = 5; // REFUSED: still an answer
    server.send(reply, from.port, from.address);
  });
  await new Promise<void>((r) => server.bind(0, "127.0.0.1", r));
  const { port } = server.address();
  try {
    assertEquals(await probeUdp("127.0.0.1", port, { dns: "." }, 1000), undefined);
    assertEquals(
      await probeUdp("127.0.0.1", port, {
        bytes: Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]),
      }, 1000),
      undefined,
    );
    answer = false;
    assertEquals(await probeUdp("127.0.0.1", port, { dns: "." }, 200), "no answer in 200 ms");
  } finally {
    server.close();
  }
});
