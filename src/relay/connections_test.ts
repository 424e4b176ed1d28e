// Connections on loopback: a relay-side connect handed over in progress, then pumped or failed.
import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import net from "node:net";
import { type ConnectionEnd, Connections } from "./connections.ts";
import { PipePool } from "./pipe_pool.ts";
import { Poller, Ready } from "./poller.ts";
import { pythonBackend } from "./_python_backend.ts";
import {
  acceptFrom,
  bindTo,
  closeFd,
  listenOn,
  localEndpoint,
  startConnect,
  tcpSocket,
  upstreamSocket,
} from "./socket.ts";
import { segmentsOut } from "./_tcp_info.ts";

const LOOPBACK = 0x7f000001;

/** A client connection accepted by a relay-side listener: the node client and the fd. */
async function acceptedPair(): Promise<{ client: net.Socket; fd: number }> {
  const listener = tcpSocket();
  bindTo(listener, LOOPBACK, 0);
  listenOn(listener, 8);
  const client = net.connect({ host: "127.0.0.1", port: localEndpoint(listener).port });
  client.on("error", () => {});
  await new Promise((r) => client.once("connect", r));
  for (let i = 0; i < 200; i++) {
    const got = acceptFrom(listener);
    if (typeof got !== "number") {
      closeFd(listener);
      return { client, fd: got.fd };
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error("accept timed out");
}

/** How the client's connection ends: the error code, or "closed without error". */
function howItEnds(client: net.Socket): Promise<string> {
  return new Promise((resolve) => {
    client.once("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    client.once("close", () => resolve("closed without error"));
  });
}

function setUp(onConnected: (id: number) => void = () => {}) {
  const poller = new Poller();
  const pipes = new PipePool(64 * 1024);
  const events: string[] = [];
  const ends = new Map<number, ConnectionEnd>();
  const host = new Connections({ poller, pipes, scratch: new Uint8Array(64 * 1024) }, {
    connected: (id) => {
      events.push(`connected ${id}`);
      onConnected(id);
    },
    ended: (id, end) => {
      events.push(`ended ${id}`);
      ends.set(id, end);
    },
  });
  host.setTimeouts(2_000, 10_000);
  const ended = async (id: number) => {
    for (let i = 0; i < 400 && !ends.has(id); i++) await new Promise((r) => setTimeout(r, 5));
    return ends.get(id);
  };
  const stop = async () => {
    host.close();
    await poller.close();
    pipes.close();
  };
  return { host, events, ended, stop };
}

Deno.test("connections: a refused connect ends unreachable and resets the client", async () => {
  const { host, events, ended, stop } = setUp();
  // A port nobody listens on: bound, never listened.
  const closedPort = tcpSocket();
  bindTo(closedPort, LOOPBACK, 0);
  const { client, fd } = await acceptedPair();
  try {
    const reset = howItEnds(client);
    const server = tcpSocket();
    const started = startConnect(server, {
      address: LOOPBACK,
      port: localEndpoint(closedPort).port,
    });
    host.add(7, fd, server, started !== 0);
    const end = await ended(7);
    assertEquals(end, {
      reason: "unreachable",
      message: "ECONNREFUSED",
      bytesToServer: 0,
      bytesToClient: 0,
    });
    assertEquals(await reset, "ECONNRESET");
    assertEquals(events, ["ended 7"]);
    assertEquals(host.size, 0);
  } finally {
    client.destroy();
    closeFd(closedPort);
    await stop();
  }
});

Deno.test("connections: a connect in progress is pumped once up, and reported both times", async () => {
  const { host, events, ended, stop } = setUp();
  const backend = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on("data", (d) => s.write(d));
    s.on("end", () => s.end());
  });
  await new Promise<void>((r) => backend.listen(0, "127.0.0.1", r));
  const { client, fd } = await acceptedPair();
  try {
    const server = tcpSocket();
    const port = (backend.address() as net.AddressInfo).port;
    const started = startConnect(server, { address: LOOPBACK, port });
    host.add(3, fd, server, started !== 0);
    const reply = new Promise<string>((resolve) => {
      let got = "";
      client.on("data", (d) => (got += d));
      client.once("end", () => resolve(got));
    });
    client.end("hello");
    assertEquals(await reply, "hello");
    const end = await ended(3);
    assertEquals(end, { reason: "closed", bytesToServer: 5, bytesToClient: 5 });
    assertEquals(events, ["connected 3", "ended 3"]);
    ok(host.live().toServer === 0, "an ended connection is not live");
  } finally {
    client.destroy();
    await new Promise((r) => backend.close(r));
    await stop();
  }
});

Deno.test("connections: a server's first bytes that came with the connect reach the client", async () => {
  const { host, events, ended, stop } = setUp();
  // Speaks first (a banner), then waits for the client.
  const backend = await pythonBackend("c.sendall(b'banner')");
  const { client, fd } = await acceptedPair();
  try {
    const server = tcpSocket();
    const started = startConnect(server, { address: LOOPBACK, port: backend.port });
    host.add(5, fd, server, started !== 0);
    // Busy: the connect completes and the banner arrives before the poller looks, so one edge
    // carries both; the pump must not wait for another one.
    const until = performance.now() + 300;
    while (performance.now() < until) { /* hold the thread */ }
    const banner = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("no banner within 2 s")), 2_000);
      client.once("data", (d) => {
        clearTimeout(timer);
        resolve(String(d));
      });
    });
    assertEquals(banner, "banner");
    client.end();
    const end = await ended(5);
    assertEquals(end?.reason, "closed");
    assertEquals(events, ["connected 5", "ended 5"]);
  } finally {
    client.destroy();
    await backend.stop();
    await stop();
  }
});

Deno.test("connections: abortAll ends a connection still connecting as aborted and resets its client", async () => {
  const { host, events, ended, stop } = setUp();
  // A listener whose accept queue is full drops further SYNs: the connect stays in progress.
  const full = tcpSocket();
  bindTo(full, LOOPBACK, 0);
  listenOn(full, 0);
  const port = localEndpoint(full).port;
  const filler = tcpSocket();
  startConnect(filler, { address: LOOPBACK, port });
  await new Promise((r) => setTimeout(r, 50));
  const { client, fd } = await acceptedPair();
  try {
    const reset = howItEnds(client);
    const server = tcpSocket();
    ok(startConnect(server, { address: LOOPBACK, port }) !== 0, "the connect is in progress");
    host.add(9, fd, server, true);
    await new Promise((r) => setTimeout(r, 50));
    assertEquals(events, [], "still connecting");
    host.abortAll();
    assertEquals(await ended(9), { reason: "aborted", bytesToServer: 0, bytesToClient: 0 });
    assertEquals(await reset, "ECONNRESET");
    assertEquals(events, ["ended 9"]);
  } finally {
    client.destroy();
    closeFd(filler);
    closeFd(full);
    await stop();
  }
});

/** A connect to `port` from a socket made as the relay's are. */
function relayConnect(port: number): { server: number; connecting: boolean } {
  const server = upstreamSocket(0, 0);
  const started = startConnect(server, { address: LOOPBACK, port });
  return { server, connecting: started !== 0 };
}

Deno.test("connections: the handshake's last ACK rides in the client's first bytes", async () => {
  const sentAtConnect: number[] = [];
  let server = -1;
  const { host, ended, stop } = setUp(() => sentAtConnect.push(segmentsOut(server)));
  // Reads the request, answers with the segments its socket got: SYN, then the request.
  const backend = await pythonBackend(
    "c.recv(100); import struct; " +
      "c.sendall(b'%d' % struct.unpack_from('I', c.getsockopt(6, 11, 232), 140)[0])",
  );
  const { client, fd } = await acceptedPair();
  try {
    // The client's request is in before the relay's connect completes.
    await new Promise((r) => client.write("GET /", r));
    const made = relayConnect(backend.port);
    server = made.server;
    host.add(4, fd, server, made.connecting);
    const reply = new Promise<string>((resolve) => {
      let got = "";
      client.on("data", (d) => (got += d));
      client.once("end", () => resolve(got));
    });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("no answer within 2 s")), 2_000);
      client.once("data", () => {
        clearTimeout(timer);
        resolve();
      });
    });
    client.end();
    await backend.stop();
    assertEquals(sentAtConnect, [1], "only the SYN went out when the connect completed");
    assertEquals(await reply, "2", "the server got the SYN and the request, no ACK of its own");
    assertEquals((await ended(4))?.bytesToServer, 5);
  } finally {
    client.destroy();
    await backend.stop();
    await stop();
  }
});

Deno.test("connections: a server that speaks first gets the handshake's last ACK at once", async () => {
  const sentAtConnect: number[] = [];
  let server = -1;
  const { host, ended, stop } = setUp(() => sentAtConnect.push(segmentsOut(server)));
  const backend = await pythonBackend("c.sendall(b'banner')");
  const { client, fd } = await acceptedPair();
  try {
    const made = relayConnect(backend.port);
    server = made.server;
    const banner = new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("no banner within 2 s")), 2_000);
      client.once("data", (d) => {
        clearTimeout(timer);
        resolve(String(d));
      });
    });
    // The client sends nothing: the server accepts only once the ACK comes, which the kernel
    // would otherwise hold for 200 ms.
    host.add(6, fd, server, made.connecting);
    assertEquals(await banner, "banner");
    // The SYN and the ACK (and an ACK of the banner, if it came already): without the ACK
    // the server could not have answered.
    ok(sentAtConnect[0] >= 2, `segments sent when connected: ${sentAtConnect}`);
    client.end();
    assertEquals((await ended(6))?.reason, "closed");
  } finally {
    client.destroy();
    await backend.stop();
    await stop();
  }
});

Deno.test("connections: a server socket handed over connected has its held ACK sent", async () => {
  const { host, ended, stop } = setUp();
  const backend = await pythonBackend("pass");
  const { client, fd } = await acceptedPair();
  try {
    const made = relayConnect(backend.port);
    // Connected, its handshake's last ACK held back (the kernel's timer: 200 ms).
    const writable = new Poller();
    await new Promise<void>((resolve) => writable.watch(made.server, Ready.Out, () => resolve()));
    await writable.close();
    assertEquals(segmentsOut(made.server), 1, "only the SYN so far");
    host.add(8, fd, made.server, false);
    assertEquals(segmentsOut(made.server), 2, "the ACK went out on the hand-over");
    client.end();
    await backend.stop();
    ok((await ended(8)) !== undefined, "the connection ended");
  } finally {
    client.destroy();
    await backend.stop();
    await stop();
  }
});
