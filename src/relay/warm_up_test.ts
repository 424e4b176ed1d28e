import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { kernelEphemeralRange } from "../system/ephemeral_ports.ts";
import { Poller } from "./poller.ts";
import { bindTo, closeFd, localEndpoint, tcpSocket } from "./socket.ts";
import { LOOPBACK, warmUp, warmUpClient, WarmUpOrigin } from "./warm_up.ts";
import { testOrSkip } from "../../tests/support/skip.ts";

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

/** Sockets in TIME_WAIT on 127.0.0.1:`port` (the side that closed first keeps them). */
async function timeWaits(port: number): Promise<number> {
  const ss = await new Deno.Command("ss", {
    args: ["-Htan", "state", "time-wait", "src", `127.0.0.1:${port}`],
  }).output();
  assert(ss.success, new TextDecoder().decode(ss.stderr));
  return new TextDecoder().decode(ss.stdout).split("\n").filter((l) => l.trim() !== "").length;
}

const ephemeral = kernelEphemeralRange();
const roomAbove = ephemeral !== undefined && ephemeral[1] < 65535;

Deno.test("warmUpClient() reads each answer of a WarmUpOrigin to its end and closes every socket", async () => {
  const before = openFds();
  const poller = new Poller();
  const origin = new WarmUpOrigin(poller);
  const r = await warmUpClient(poller, origin.port, {
    connections: 300,
    concurrency: 8,
    budgetMs: 5_000,
  }, origin.closesFirst);
  // One in 32 reset by the client, one in 16 bulk; of the rest, every other one is left to
  // the origin to close.
  assertEquals(
    [r.answered, r.originClosed, r.bulk, r.reset, r.failed],
    [291, origin.closesFirst ? 150 : 0, 19, 9, 0],
  );
  origin.close();
  await poller.close();
  assertEquals(openFds(), before);
});

testOrSkip(roomAbove ? undefined : `no port above the ephemeral range (${ephemeral?.join("-")})`, {
  name: "WarmUpOrigin listens above the ephemeral range and closes first only when asked",
  fn: async () => {
    const poller = new Poller();
    const origin = new WarmUpOrigin(poller);
    assert(origin.closesFirst);
    assert(origin.port > ephemeral![1], `port ${origin.port}, range ${ephemeral}`);
    const limits = { connections: 40, concurrency: 4, budgetMs: 5_000 };
    // The client closes first: the TIME_WAIT entries are its own, none on the origin's port.
    const clientFirst = await warmUpClient(poller, origin.port, limits, false);
    assertEquals([clientFirst.answered, clientFirst.originClosed], [39, 0]);
    assertEquals(await timeWaits(origin.port), 0);
    const originFirst = await warmUpClient(poller, origin.port, limits, true);
    assertEquals([originFirst.answered, originFirst.originClosed], [39, 20]);
    assertEquals(await timeWaits(origin.port), 20);
    origin.close();
    await poller.close();
  },
});

Deno.test("warmUpClient() counts refused connections as failed and stops at its count", async () => {
  const before = openFds();
  const poller = new Poller();
  const r = await warmUpClient(poller, closedPort(), {
    connections: 40,
    concurrency: 4,
    budgetMs: 5_000,
  });
  assertEquals([r.answered, r.reset, r.failed], [0, 0, 40]);
  await poller.close();
  assertEquals(openFds(), before);
});

Deno.test("warmUpClient() opens no connection after its budget", async () => {
  const poller = new Poller();
  const origin = new WarmUpOrigin(poller);
  const budgetMs = 100;
  // A timer of the test's own for the client's deadline (twice the budget), started with it:
  // the client is done by then at the latest, however late the machine runs timers.
  const own = new Promise<number>((r) => setTimeout(() => r(performance.now()), 2 * budgetMs));
  const r = await warmUpClient(poller, origin.port, {
    connections: 1_000_000,
    concurrency: 4,
    budgetMs,
  });
  const ended = performance.now();
  const ownFired = await own;
  assert(r.answered > 0 && r.answered < 1_000_000, `answered ${r.answered}`);
  // It kept opening until the budget was spent, and stopped then.
  assert(r.elapsedMs >= budgetMs, `stopped after ${r.elapsedMs} ms`);
  assert(ended < ownFired + 250, `ended ${ended - ownFired} ms after its deadline`);
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
