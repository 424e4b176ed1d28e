import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { renderMetrics, serveMetrics } from "./metrics.ts";
import { sampleReport } from "./_report_fixture.ts";

Deno.test("renderMetrics() gives every counter of the status report its sample", () => {
  const r = sampleReport();
  const text = renderMetrics(r);
  const sample = (line: string) => assert(text.split("\n").includes(line), `missing: ${line}`);
  sample(`krelay_packets_seen_total ${r.packets.seen}`);
  sample(`krelay_packets_rewritten_total{flow="udp_request"} ${r.packets.udpRequests}`);
  sample(`krelay_udp_first_packets_total ${r.packets.toKernel}`);
  sample(`krelay_packets_passed_total{reason="malformed"} ${r.packets.passedMalformed}`);
  sample(`krelay_packets_dropped_total{reason="nat_full"} ${r.packets.droppedNatFull}`);
  sample(`krelay_queue_enobufs_total ${r.datapath.enobufs}`);
  sample(`krelay_tcp_connections_active ${r.tcp.active}`);
  sample(`krelay_tcp_bytes_total{direction="to_client"} ${r.tcp.bytesToClient}`);
  sample(`krelay_nat_entries ${r.nat.entries}`);
  sample(`krelay_up ${r.state === "started" ? 1 : 0}`);
});

Deno.test("renderMetrics() counts each relay thread's connections, labelled with its CPU", () => {
  const r = sampleReport();
  r.relayThreads = [{ cpu: 1, active: 2, total: 30 }, { cpu: null, active: 0, total: 4 }];
  const lines = renderMetrics(r).split("\n")
    .filter((l) => l.startsWith("krelay_relay_thread_connections_total"));
  assertEquals(lines, [
    'krelay_relay_thread_connections_total{thread="1",cpu="1"} 30',
    'krelay_relay_thread_connections_total{thread="2",cpu="any"} 4',
  ]);
});

Deno.test("renderMetrics() declares HELP and TYPE once per family", () => {
  const text = renderMetrics(sampleReport());
  const types = text.split("\n").filter((l) => l.startsWith("# TYPE "));
  const names = types.map((l) => l.split(" ")[2]);
  assertEquals(new Set(names).size, names.length);
  assertEquals(text.split("\n").filter((l) => l.startsWith("# HELP ")).length, types.length);
});

Deno.test("serveMetrics() serves /metrics and refuses a port in use", async () => {
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (probe.addr as Deno.NetAddr).port;
  probe.close();
  const server = serveMetrics(`127.0.0.1:${port}`, sampleReport);
  try {
    const res = await fetch(`http://127.0.0.1:${port}/metrics`);
    assert((await res.text()).includes("krelay_packets_seen_total"));
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
