/**
 * The edges of a relayed TCP connection, checked with tests/fixtures/tcp_edges.py: its server
 * in the lab's server namespace, its client cases from the client's. Used by the path tests
 * and, inside the VM, by the module's end-to-end guest.
 *
 * @module
 */

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { LAB_ADDR } from "../../src/lab/addresses.ts";
import type { Lab } from "../../src/lab/topology.ts";

const R = LAB_ADDR.relay;
/** The service port the edges' server listens on (give it to krelay's --tcp-ports). */
export const EDGES_PORT = 9000;
const PEER = new URL("../fixtures/tcp_edges.py", import.meta.url).pathname;

/** A running edges' server and where it records what it saw. */
export interface EdgesPeer {
  results: string;
  stop(): Promise<unknown>;
}

/** Starts the edges' server in the server namespace (`listenMs`: its start, longer in a VM). */
export async function startEdgesPeer(lab: Lab, listenMs = 5_000): Promise<EdgesPeer> {
  const results = `${lab.runDir}/tcp_edges.jsonl`;
  const server = lab.spawn("server", "tcp-edges", [
    "python3",
    PEER,
    "server",
    LAB_ADDR.server,
    String(EDGES_PORT),
    results,
  ]);
  await lab.waitForListen("server", "tcp", EDGES_PORT, { timeoutMs: listenMs });
  return { results, stop: () => server.stop() };
}

/** One case of the fixture's client, through relay:EDGES_PORT; what the client saw. */
export async function edgesClient(
  lab: Lab,
  kase: string,
  arg = "",
): Promise<Record<string, unknown>> {
  const argv = ["python3", PEER, "client", R, String(EDGES_PORT), kase, arg];
  const r = await lab.exec("client", argv, { timeoutMs: 120_000 });
  if (!r.success) throw new Error(`${kase}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").at(-1)!);
}

/** The server's record of the connection with this case and tag, once it has ended. */
async function serverSaw(results: string, kase: string, tag = "") {
  for (let i = 0; i < 100; i++) {
    const text = await Deno.readTextFile(results).catch(() => "");
    const hit = text.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l))
      .find((r) => r.case === kase && r.tag === tag);
    if (hit) return hit;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the server has no record of ${kase} ${tag}`);
}

/**
 * Every edge of a connection through a krelay already relaying EDGES_PORT: half-close both
 * ways, a reset from either side, and with `idleS` (krelay's --tcp-idle-timeout) the idle end.
 * Throws at the first that fails.
 */
export async function checkEdges(lab: Lab, peer: EdgesPeer, idleS?: number): Promise<void> {
  // The client half-closes: the server still answers after the client's FIN, in full.
  const half = await edgesClient(lab, "halfclose");
  assertEquals(half.server_saw, half.expected, "the server read all the client sent");
  assertEquals(half.body_ok, true, "the answer after the client's FIN arrived whole");
  // The server half-closes: the client still sends, and the server reads it all.
  const fin = await edgesClient(lab, "serverfin");
  assertEquals(fin.received, 1 << 20);
  assertEquals(fin.after, "eof");
  assertEquals((await serverSaw(peer.results, "serverfin")).sha256, fin.sent_sha256);
  // A reset from the server reaches the client as a reset, not an orderly end.
  assertEquals((await edgesClient(lab, "rst")).end, "reset");
  // A reset from the client reaches the server as a reset.
  await edgesClient(lab, "clientrst");
  assertEquals((await serverSaw(peer.results, "wait", "clientrst")).end, "reset");
  if (idleS === undefined) return;
  // A silent connection is ended after the idle timeout, not before, on both sides.
  const idle = await edgesClient(lab, "idle", String(idleS));
  assert(idle.end === "eof" || idle.end === "reset", `idle connection: ${JSON.stringify(idle)}`);
  assert((idle.after_s as number) >= idleS - 0.5, `ended before the timeout: ${idle.after_s}`);
  assert((await serverSaw(peer.results, "wait", "idle")).end !== undefined);
}
