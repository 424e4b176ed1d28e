import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { Poller } from "./poller.ts";
import { bindTo, closeFd, localEndpoint, tcpSocket } from "./socket.ts";
import { LOOPBACK, warmUp, warmUpClient, WarmUpOrigin } from "./warm_up.ts";

function openFds(): number {
  return [...Deno.readDirSync("/proc/self/fd")].length;
}

/** A loopback port nothing listens on. */
function closedPort(): number {
  const fd = tcpSocket();
  bindTo(fd, LOOPBACK, 0);
  const port = localEndpoint(fd).port;
  closeFd(fd);
  return port;
}

Deno.test("warmUpClient() reads each answer of a WarmUpOrigin to its end and closes every socket", async () => {
  const before = openFds();
  const poller = new Poller();
  const origin = new WarmUpOrigin(poller);
  const r = await warmUpClient(poller, origin.port, {
    connections: 300,
    concurrency: 8,
    budgetMs: 5_000,
  });
  assertEquals([r.answered, r.failed], [300, 0]);
  origin.close();
  await poller.close();
  assertEquals(openFds(), before);
});

Deno.test("warmUpClient() counts refused connections as failed and stops at its count", async () => {
  const before = openFds();
  const poller = new Poller();
  const r = await warmUpClient(poller, closedPort(), {
    connections: 40,
    concurrency: 4,
    budgetMs: 5_000,
  });
  assertEquals([r.answered, r.failed], [0, 40]);
  await poller.close();
  assertEquals(openFds(), before);
});

Deno.test("warmUpClient() opens no connection after its budget", async () => {
  const poller = new Poller();
  const origin = new WarmUpOrigin(poller);
  const r = await warmUpClient(poller, origin.port, {
    connections: 1_000_000,
    concurrency: 4,
    budgetMs: 100,
  });
  assert(r.answered > 0 && r.answered < 1_000_000, `answered ${r.answered}`);
  assert(r.elapsedMs < 1_000, `took ${r.elapsedMs} ms`);
  origin.close();
  await poller.close();
});

Deno.test("warmUp() asks for nothing when no connections are configured, and survives a failure", async () => {
  const asked: number[] = [];
  const relay = {
    warmUp: (limits: { connections: number }) => {
      asked.push(limits.connections);
      return Promise.reject(new Error("no loopback"));
    },
  };
  await warmUp(relay, 0);
  await warmUp(relay, 500);
  assertEquals(asked, [500]);
});
