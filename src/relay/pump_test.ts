// Real sockets on 127.0.0.1: test client -> relay listener -> pump -> backend server.
// The relay side is plain fds (socket.ts) served by a Poller, as in the TCP relay.
import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createHash, randomBytes } from "node:crypto";
import net from "node:net";
import { PipePool } from "./pipe_pool.ts";
import { Poller, Ready } from "./poller.ts";
import {
  acceptFrom,
  bindTo,
  closeFd,
  listenOn,
  localEndpoint,
  noDelay,
  pendingError,
  resetFd,
  startConnect,
  tcpSocket,
} from "./socket.ts";
import { Pump, PUMP_EVENTS, type PumpCounters, type PumpResult } from "./pump.ts";
import { libc } from "../../ffi/libc.ts";
import { pythonBackend } from "./_python_backend.ts";
import { segmentsIn } from "./_tcp_info.ts";

const HOST = "127.0.0.1";
const MiB = 1024 * 1024;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const sha256 = (data: Uint8Array) => createHash("sha256").update(data).digest("hex");

/** Rejects when `promise` takes longer than `ms`, so no test can hang. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `cond` every 5 ms, at most `ms` long. */
async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${ms} ms: ${what}`);
    await sleep(5);
  }
}

/** A server on an ephemeral loopback port that tracks its sockets so close() ends them all. */
class TestServer {
  readonly server: net.Server;
  readonly sockets = new Set<net.Socket>();
  port = 0;

  constructor(opts: net.ServerOpts, onSocket: (socket: net.Socket) => void) {
    this.server = net.createServer(opts, (socket) => {
      this.sockets.add(socket);
      socket.on("close", () => this.sockets.delete(socket));
      onSocket(socket);
    });
  }

  async listen(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, HOST, resolve));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this;
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await until(() => this.sockets.size === 0, 2000, "server sockets closed");
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** One pumped connection as the relay sees it. */
interface Pumped {
  pump: Pump;
  readonly counters: PumpCounters;
  result: Promise<PumpResult>;
}

/** What the test relay does with each pump: end it after idleness, abort it on a signal. */
interface PumpOptions {
  idleTimeoutMs?: number;
  signal?: AbortSignal;
}

const LOOPBACK = 0x7f000001;

/** The relay under test: per accepted client, connects to the backend and pumps between them. */
class Relay {
  readonly poller = new Poller();
  readonly pipes = new PipePool(64 * 1024);
  readonly pumped: Pumped[] = [];
  readonly #listener: number;
  readonly #idleChecks: ReturnType<typeof setInterval>[] = [];
  readonly port: number;

  constructor(
    backendPort: number,
    options: () => PumpOptions = () => ({}),
    readonly scratchSize = 4096,
  ) {
    this.#listener = tcpSocket();
    bindTo(this.#listener, LOOPBACK, 0);
    listenOn(this.#listener, 512);
    this.port = localEndpoint(this.#listener).port;
    this.poller.watch(this.#listener, Ready.In, () => {
      for (;;) {
        const got = acceptFrom(this.#listener);
        if (typeof got === "number") return;
        const server = tcpSocket();
        const started = startConnect(server, { address: LOOPBACK, port: backendPort });
        const go = (serverEvents = 0) => {
          if (pendingError(server) !== 0) {
            resetFd(got.fd);
            this.poller.forget(server);
            closeFd(server);
            return;
          }
          const { idleTimeoutMs, signal } = options();
          let resolve!: (r: PumpResult) => void;
          const result = new Promise<PumpResult>((r) => (resolve = r));
          const scratch = new Uint8Array(this.scratchSize);
          const shared = { poller: this.poller, pipes: this.pipes, scratch };
          const pump = new Pump(shared, got.fd, server, resolve);
          this.pumped.push({
            pump,
            get counters() {
              return pump.counters;
            },
            result,
          });
          pump.start(started !== 0, serverEvents);
          if (signal?.aborted) pump.abort();
          signal?.addEventListener("abort", () => pump.abort(), { once: true });
          if (idleTimeoutMs !== undefined) {
            const check = () => pump.checkIdle(performance.now(), idleTimeoutMs);
            this.#idleChecks.push(setInterval(check, idleTimeoutMs / 4));
          }
        };
        if (started === 0) go();
        else {
          this.poller.watch(server, PUMP_EVENTS, (events) => {
            if (events & (Ready.Out | Ready.Err | Ready.Hup)) go(events);
          });
        }
      }
    });
  }

  /** The results of the first `n` pumps, once they have all started and ended. */
  async results(n: number, ms = 5000): Promise<PumpResult[]> {
    await until(() => this.pumped.length >= n, ms, `${n} pumps started`);
    return await within(Promise.all(this.pumped.map((p) => p.result)), ms, `${n} pumps ended`);
  }

  async close(): Promise<void> {
    this.poller.unwatch(this.#listener);
    closeFd(this.#listener);
    // Pumps still running are ended by their clients' and backends' closing.
    await within(Promise.all(this.pumped.map((p) => p.result)), 5000, "pumps ended");
    for (const check of this.#idleChecks) clearInterval(check);
    await this.poller.close();
    this.pipes.close();
    assertEquals(this.pipes.open, 0);
  }
}

/** Backend + relay for one test; `stop()` closes both. */
async function setUp(
  onBackendSocket: (socket: net.Socket) => void,
  options?: () => PumpOptions,
  scratchSize?: number,
): Promise<{ backend: TestServer; relay: Relay; stop: () => Promise<void> }> {
  const backend = await new TestServer({ allowHalfOpen: true }, onBackendSocket).listen();
  const relay = new Relay(backend.port, options, scratchSize);
  return {
    backend,
    relay,
    stop: async () => {
      for (const client of clients) client.destroy();
      await until(() => clients.size === 0, 2000, "test clients closed");
      await backend.close();
      await relay.close();
    },
  };
}

/** Test clients, destroyed by each test's stop() whatever happened. */
const clients = new Set<net.Socket>();

function connect(port: number): Promise<net.Socket> {
  return within(
    new Promise((resolve, reject) => {
      const socket = net.connect({ host: HOST, port, allowHalfOpen: true });
      clients.add(socket);
      socket.once("close", () => clients.delete(socket));
      socket.once("error", reject);
      socket.once("connect", () => {
        socket.off("error", reject);
        resolve(socket);
      });
    }),
    2000,
    "connect",
  );
}

/** Everything the socket receives until its peer's FIN; rejects on error or beyond `limit`. */
function readAll(socket: net.Socket, limit = 256 * MiB): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let length = 0;
    socket.on("data", (chunk: Buffer) => {
      chunks.push(chunk);
      length += chunk.length;
      if (length > limit) reject(new Error(`more than ${limit} bytes`));
    });
    socket.once("end", () => resolve(Buffer.concat(chunks)));
    socket.once("error", reject);
    socket.resume(); // a 'data' listener alone does not restart an explicitly paused socket
  });
}

/** The code of the next 'error' on the socket ("none" if it closes without one). */
function errorCode(socket: net.Socket): Promise<string> {
  return new Promise((resolve) => {
    socket.once("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    socket.once("close", () => resolve("none"));
  });
}

/** Writes `chunk` repeated up to `total` bytes, honouring backpressure, then ends. */
async function writeAll(
  socket: net.Socket,
  chunk: Uint8Array,
  total: number,
  progress = { sent: 0 },
): Promise<number> {
  while (progress.sent < total && !socket.destroyed) {
    progress.sent += chunk.length;
    if (!socket.write(chunk)) {
      await within(new Promise((r) => socket.once("drain", r)), 10_000, "drain");
    }
  }
  socket.end();
  return progress.sent;
}

function echo(socket: net.Socket): void {
  socket.on("data", (chunk) => socket.write(chunk));
  socket.on("end", () => socket.end());
  socket.on("error", () => {});
}

/** The pump released what it held: no pipe is lent out any more. */
function assertReleased(relay: Relay): void {
  assertEquals(relay.pipes.lent, 0);
}

Deno.test("pump relays both ways and closes gracefully when both sides end", async () => {
  let backendError: Promise<string> = Promise.resolve("no connection");
  const { relay, stop } = await setUp((socket) => {
    backendError = errorCode(socket);
    echo(socket);
  });
  try {
    const client = await connect(relay.port);
    const clientError = errorCode(client);
    const reply = readAll(client);
    client.end("ping");
    assertEquals((await within(reply, 2000, "reply")).toString(), "ping");
    // FIN both ways, no RST on either side.
    assertEquals(await within(clientError, 2000, "client close"), "none");
    assertEquals(await within(backendError, 2000, "backend close"), "none");
    const [result] = await relay.results(1);
    assertEquals(result, { reason: "closed", bytesToServer: 4, bytesToClient: 4 });
    assertReleased(relay);
    assertEquals(relay.pumped[0].counters, { toServer: 4, toClient: 4 });
  } finally {
    await stop();
  }
});

Deno.test("pump: the last bytes and the FIN reach the client in one segment, as they came", async () => {
  // The backend sends its answer and its FIN in one segment (MSG_MORE, then shutdown).
  const backend = await pythonBackend(
    "c.send(b'x' * 100, socket.MSG_MORE); c.shutdown(socket.SHUT_WR)",
  );
  const relay = new Relay(backend.port);
  const client = tcpSocket();
  try {
    const started = startConnect(client, { address: LOOPBACK, port: relay.port });
    ok(started === 0 || started === 115, /* EINPROGRESS */ `connect: ${started}`);
    const buf = new Uint8Array(4096);
    let got = 0;
    await until(
      () => {
        const n = libc().read(client, buf, BigInt(buf.length));
        if (n > 0) got += n;
        return n === 0;
      },
      3000,
      "EOF from the relay",
    );
    assertEquals(got, 100);
    // SYN-ACK, then bytes and FIN together: a FIN of its own would be a third.
    assertEquals(segmentsIn(client), 2);
  } finally {
    closeFd(client);
    await backend.stop();
    await relay.close();
  }
});

Deno.test("pump: Nagle stays on the server's socket for one write, off before a second", async () => {
  const { relay, stop } = await setUp(echo);
  try {
    const client = await connect(relay.port);
    client.write("a");
    await within(new Promise((r) => client.once("data", r)), 2000, "first echo");
    await until(() => relay.pumped.length === 1, 2000, "the pump");
    const { pump } = relay.pumped[0];
    // One write (a request): no setsockopt spent; the first write is never held by Nagle.
    assertEquals(noDelay(pump.server), false);
    client.write("b");
    await within(new Promise((r) => client.once("data", r)), 2000, "second echo");
    // A second short write could wait for the first one's ACK: Nagle is off by now.
    assertEquals(noDelay(pump.server), true);
    client.end();
    assertEquals((await relay.results(1))[0].reason, "closed");
  } finally {
    await stop();
  }
});

Deno.test("pump carries 8 MiB each way at once without loss or reordering", async () => {
  const size = 8 * MiB;
  const up = randomBytes(size);
  const down = randomBytes(size);
  let received: Promise<Buffer> = Promise.resolve(Buffer.alloc(0));
  const { relay, stop } = await setUp((socket) => {
    received = readAll(socket);
    socket.end(down);
  });
  try {
    const client = await connect(relay.port);
    const reply = readAll(client);
    client.end(up);
    assertEquals(sha256(await within(reply, 10_000, "download")), sha256(down));
    assertEquals(sha256(await within(received, 10_000, "upload")), sha256(up));
    const [result] = await relay.results(1);
    assertEquals(result, { reason: "closed", bytesToServer: size, bytesToClient: size });
    // Reads filled the (4 KiB) copy buffer: the bulk went through pipes.
    ok(relay.pipes.open > 0, "no pipe was used");
    assertReleased(relay);
  } finally {
    await stop();
  }
});

Deno.test("pump: the copy path keeps what the server's socket refuses and sends it in order", async () => {
  // More than the socket buffers on the way hold, so that the relay's sends fall short.
  const size = 32 * MiB;
  const chunk = randomBytes(16 * 1024);
  let backendSocket: net.Socket | undefined;
  // A copy buffer no read can fill: every byte takes the copy path.
  const { relay, stop } = await setUp(
    (socket) => {
      backendSocket = socket;
      socket.pause();
      socket.on("end", () => socket.end());
    },
    undefined,
    64 * MiB,
  );
  try {
    const client = await connect(relay.port);
    const closed = readAll(client);
    const progress = { sent: 0 };
    const sent = writeAll(client, chunk, size, progress);
    // The backend reads nothing for a while: the relay holds what it could not send and stops
    // reading, so the client is held back too.
    await sleep(300);
    ok(progress.sent < size, "the client was not held back");
    await until(() => backendSocket !== undefined, 2000, "backend connection");
    const hash = createHash("sha256");
    let length = 0;
    const received = new Promise<void>((resolve, reject) => {
      backendSocket!.on("data", (data: Buffer) => {
        hash.update(data);
        length += data.length;
      });
      backendSocket!.once("end", () => resolve());
      backendSocket!.once("error", reject);
      backendSocket!.resume();
    });
    await within(sent, 20_000, "upload");
    await within(received, 20_000, "backend read");
    const expected = createHash("sha256");
    for (let i = 0; i < size / chunk.length; i++) expected.update(chunk);
    assertEquals(length, size);
    assertEquals(hash.digest("hex"), expected.digest("hex"));
    await within(closed, 2000, "client closed");
    const [result] = await relay.results(1);
    assertEquals(result, { reason: "closed", bytesToServer: size, bytesToClient: 0 });
    assertEquals(relay.pipes.open, 0);
  } finally {
    await stop();
  }
});

{
  Deno.test(
    `pump: a client that half-closes still gets the whole response`,
    async () => {
      const response = randomBytes(MiB);
      const { relay, stop } = await setUp(
        (socket) => {
          // HTTP/1.0-like: the server answers only once it has seen the request's EOF.
          readAll(socket).then(
            (request) =>
              request.toString() === "GET /\r\n" ? socket.end(response) : socket.destroy(),
            () => {},
          );
        },
      );
      try {
        const client = await connect(relay.port);
        const reply = readAll(client);
        client.end("GET /\r\n");
        assertEquals(sha256(await within(reply, 5000, "response")), sha256(response));
        const [result] = await relay.results(1);
        assertEquals(result, { reason: "closed", bytesToServer: 7, bytesToClient: MiB });
      } finally {
        await stop();
      }
    },
  );
}

Deno.test("pump: the server half-closes first while the client keeps sending", async () => {
  let received: Promise<Buffer> = Promise.resolve(Buffer.alloc(0));
  const { relay, stop } = await setUp((socket) => {
    received = readAll(socket);
    socket.end("banner\n");
  });
  try {
    const client = await connect(relay.port);
    const banner = await within(readAll(client), 2000, "banner and FIN");
    assertEquals(banner.toString(), "banner\n");
    // The client's write side is still open after the server's FIN: keep using it.
    const parts: string[] = [];
    for (let i = 0; i < 10; i++) {
      parts.push(`line ${i}\n`);
      client.write(parts[i]);
      await sleep(10);
    }
    client.end();
    assertEquals((await within(received, 2000, "upload")).toString(), parts.join(""));
    const [result] = await relay.results(1);
    assertEquals(result.reason, "closed");
    assertEquals(result.bytesToServer, parts.join("").length);
  } finally {
    await stop();
  }
});

Deno.test("pump: an RST from the client resets the server side", async () => {
  let backendError: Promise<string> = Promise.resolve("no connection");
  let gotData = false;
  const { relay, stop } = await setUp((socket) => {
    backendError = errorCode(socket);
    socket.on("data", () => gotData = true);
  });
  try {
    const client = await connect(relay.port);
    client.write("hi");
    await until(() => gotData, 2000, "backend got data");
    client.resetAndDestroy();
    assertEquals(await within(backendError, 2000, "backend error"), "ECONNRESET");
    const [result] = await relay.results(1);
    assertEquals(result.reason, "reset-by-client");
    ok(result.message?.startsWith("client: "), String(result.message));
    assertReleased(relay);
  } finally {
    await stop();
  }
});

Deno.test("pump: an RST from the server resets the client side", async () => {
  const { relay, stop } = await setUp((socket) => {
    socket.on("error", () => {});
    socket.once("data", () => socket.resetAndDestroy());
  });
  try {
    const client = await connect(relay.port);
    const clientError = errorCode(client);
    client.write("hi");
    assertEquals(await within(clientError, 2000, "client error"), "ECONNRESET");
    const [result] = await relay.results(1);
    assertEquals(result.reason, "reset-by-server");
    ok(result.message?.startsWith("server: "), String(result.message));
    assertReleased(relay);
  } finally {
    await stop();
  }
});

Deno.test("pump: the idle timeout resets both sides, and traffic keeps a connection alive", async () => {
  const idleTimeoutMs = 150;
  const backendErrors: Promise<string>[] = [];
  const { relay, stop } = await setUp((socket) => {
    backendErrors.push(errorCode(socket));
    echo(socket);
  }, () => ({ idleTimeoutMs }));
  try {
    // Connection 0 goes quiet after one exchange. Its last byte moved after the write, so a
    // reset before the write plus the timeout is early, however the machine schedules.
    const quiet = await connect(relay.port);
    const quietError = errorCode(quiet).then((code) => ({ code, at: performance.now() }));
    const wrote = performance.now();
    quiet.write("x");
    await within(new Promise((r) => quiet.once("data", r)), 2000, "echo");
    // Connection 1 sends a byte every 40 ms for 4 timeouts, then ends.
    const busy = await connect(relay.port);
    const busyReply = readAll(busy);
    for (let i = 0; i < 15; i++) {
      busy.write("y");
      await sleep(40);
    }
    busy.end();
    assertEquals((await within(busyReply, 2000, "busy reply")).toString(), "y".repeat(15));

    // Never early; how late is the scheduler's business (the exact moment is tested with a
    // clock of the test's own below), so only a bound that holds on a starved machine.
    const { code, at } = await within(quietError, 5000, "quiet client reset");
    assertEquals(code, "ECONNRESET");
    ok(at - wrote >= idleTimeoutMs, `reset ${at - wrote} ms after the write`);
    const [idle, kept] = await relay.results(2);
    assertEquals(idle.reason, "idle");
    assertEquals(await within(backendErrors[0], 2000, "backend reset"), "ECONNRESET");
    assertEquals(kept, { reason: "closed", bytesToServer: 15, bytesToClient: 15 });
    assertReleased(relay);
  } finally {
    await stop();
  }
});

/** A client socket (a raw fd) that sends keepalive probes after a second of silence. */
async function keepaliveClient(port: number): Promise<number> {
  const fd = tcpSocket();
  const set = (level: number, name: number, value: number) =>
    libc().setsockopt(fd, level, name, new Int32Array([value]), 4);
  // SOL_SOCKET SO_KEEPALIVE; IPPROTO_TCP TCP_KEEPIDLE, TCP_KEEPINTVL (seconds, at least 1).
  ok(set(1, 9, 1) === 0 && set(6, 4, 1) === 0 && set(6, 5, 1) === 0, "keepalive options");
  startConnect(fd, { address: LOOPBACK, port });
  await until(() => pendingError(fd) === 0 && localEndpoint(fd).port !== 0, 2000, "connected");
  return fd;
}

Deno.test("pump: keepalive probes count as activity for the idle timeout", async () => {
  const idleTimeoutMs = 1_200;
  const { relay, stop } = await setUp(echo, () => ({ idleTimeoutMs }));
  let fd = -1;
  try {
    fd = await keepaliveClient(relay.port);
    await until(() => relay.pumped.length === 1, 2000, "pump started");
    const quiet = await connect(relay.port);
    const quietError = errorCode(quiet);
    // Three timeouts: the quiet connection goes, the one whose client probes every second stays.
    await sleep(idleTimeoutMs * 3);
    assertEquals(await within(quietError, 2000, "quiet client reset"), "ECONNRESET");
    ok(!relay.pumped[0].pump.ended, "the probed connection was ended");
    assertEquals(await within(relay.pumped[1].result, 2000, "quiet"), {
      reason: "idle",
      bytesToServer: 0,
      bytesToClient: 0,
    });
    closeFd(fd);
    fd = -1;
    const [kept] = await relay.results(1);
    assertEquals(kept.reason, "closed");
  } finally {
    if (fd >= 0) closeFd(fd);
    await stop();
  }
});

Deno.test("pump: checkIdle() ends a quiet pump exactly at the idle timeout, not before", async () => {
  const { relay, stop } = await setUp(echo);
  try {
    const client = await connect(relay.port);
    const clientError = errorCode(client);
    client.write("x");
    await within(new Promise((r) => client.once("data", r)), 2000, "echo");
    await until(() => relay.pumped.length === 1, 2000, "the pump");
    const [{ pump, result }] = relay.pumped;
    let ended = false;
    result.then(() => (ended = true));
    const settled = () => sleep(10).then(() => ended);
    // The clock is the test's own: 1000 is when the check first sees the bytes moved.
    pump.checkIdle(1000, 150);
    pump.checkIdle(1000 + 149, 150);
    assertEquals(await settled(), false, "ended 1 ms before the timeout");
    pump.checkIdle(1000 + 150, 150);
    assertEquals(await settled(), true, "still open at the timeout");
    assertEquals((await result).reason, "idle");
    assertEquals(await within(clientError, 2000, "client reset"), "ECONNRESET");
    assertReleased(relay);
  } finally {
    await stop();
  }
});

Deno.test("pump: abort resets both sides, also when already aborted", async () => {
  const controllers: AbortController[] = [];
  const backendErrors: Promise<string>[] = [];
  const { relay, stop } = await setUp((socket) => {
    backendErrors.push(errorCode(socket));
    echo(socket);
  }, () => {
    const controller = new AbortController();
    if (controllers.length === 1) controller.abort();
    controllers.push(controller);
    return { signal: controller.signal };
  });
  try {
    const client = await connect(relay.port);
    const clientError = errorCode(client);
    client.write("x");
    await within(new Promise((r) => client.once("data", r)), 2000, "echo");
    controllers[0].abort();
    assertEquals(await within(clientError, 2000, "client reset"), "ECONNRESET");
    assertEquals(await within(backendErrors[0], 2000, "backend reset"), "ECONNRESET");
    const [aborted] = await relay.results(1);
    assertEquals(aborted, { reason: "aborted", bytesToServer: 1, bytesToClient: 1 });
    assertReleased(relay);

    // Under load the reset can reach the client before its connect completes: either way it is
    // the reset that ends it.
    const lateCode = await connect(relay.port).then(
      (late) => within(errorCode(late), 2000, "second client reset"),
      (e: NodeJS.ErrnoException) => e.code,
    );
    assertEquals(lateCode, "ECONNRESET");
    assertEquals((await relay.results(2))[1].reason, "aborted");
  } finally {
    await stop();
  }
});

Deno.test("pump: a slow reader stalls the sender instead of growing the relay's buffers", async () => {
  const total = 64 * MiB;
  const chunk = randomBytes(64 * 1024);
  const backend = { sent: 0 };
  let backendDone: Promise<number> = Promise.resolve(0);
  const { relay, stop } = await setUp((socket) => {
    socket.on("error", () => {});
    socket.resume();
    backendDone = writeAll(socket, chunk, total, backend);
  });
  try {
    const client = await connect(relay.port);
    client.pause(); // the reader does not read yet
    await until(() => relay.pumped.length === 1, 2000, "pump started");
    const p = relay.pumped[0];
    let maxLent = 0;
    const samples: number[] = [];
    for (let i = 0; i < 40; i++) {
      maxLent = Math.max(maxLent, relay.pipes.lent);
      samples.push(p.counters.toClient);
      await sleep(10);
    }
    // Stalled: nothing moved over the last 100 ms, far below the total, little held in the relay.
    assertEquals(samples.at(-1), samples.at(-11));
    ok(p.counters.toClient < total / 4, `relayed ${p.counters.toClient}`);
    ok(backend.sent < total / 4, `backend sent ${backend.sent}`);
    // The relay holds at most one pipe's worth: the bytes wait in the sockets' buffers.
    ok(maxLent <= 1, `relay holds ${maxLent} pipes`);

    // Once the reader reads, everything arrives.
    const received = await within(readAll(client), 20_000, "download");
    assertEquals(received.length, total);
    assertEquals(sha256(received.subarray(0, chunk.length)), sha256(chunk));
    assertEquals(await backendDone, total);
    client.end();
    const [result] = await relay.results(1);
    assertEquals(result, { reason: "closed", bytesToServer: 0, bytesToClient: total });
  } finally {
    await stop();
  }
});

Deno.test("pump: 200 concurrent connections all complete with the right bytes", async () => {
  const n = 200;
  const { relay, stop } = await setUp(echo);
  try {
    const payloads = Array.from({ length: n }, () => randomBytes(16 * 1024));
    const replies = await within(
      Promise.all(payloads.map(async (payload) => {
        const client = await connect(relay.port);
        const reply = readAll(client);
        client.end(payload);
        return await reply;
      })),
      20_000,
      `${n} connections`,
    );
    for (let i = 0; i < n; i++) assertEquals(sha256(replies[i]), sha256(payloads[i]));
    const results = await relay.results(n);
    for (const result of results) {
      assertEquals(result, { reason: "closed", bytesToServer: 16384, bytesToClient: 16384 });
    }
    assertReleased(relay);
  } finally {
    await stop();
  }
});
