// Bulk throughput on loopback: client -> sink directly (baseline) vs client -> relay -> splice
// pump -> sink, with the relay's 1 MiB pipes and with 256 KiB ones. Each iteration sends 32 MiB
// on a new connection and waits until the sink has read it all and both sides are closed;
// 32 MiB / (time per iteration) is the throughput, and the ratio of the lines is the pump's cost
// (two more sockets, splices through a pipe).
import net from "node:net";
import { PipePool } from "./pipe_pool.ts";
import { Poller, Ready } from "./poller.ts";
import {
  acceptFrom,
  bindTo,
  listenOn,
  localEndpoint,
  resetFd,
  startConnect,
  tcpSocket,
} from "./socket.ts";
import { Pump, PUMP_EVENTS } from "./pump.ts";

const HOST = "127.0.0.1";
const TOTAL = 32 * 1024 * 1024;
const CHUNK = new Uint8Array(64 * 1024).fill(0x5a);

async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  // The servers live as long as the bench; they must not keep the process alive after it.
  server.unref();
  return (server.address() as net.AddressInfo).port;
}

// Reads and discards everything, then closes its side too.
const sink = net.createServer({ allowHalfOpen: true }, (socket) => {
  socket.on("error", () => {});
  socket.on("end", () => socket.end());
  socket.resume();
});
const sinkPort = await listen(sink);

// The relay: plain fds on a poller, as in the TCP relay (the benchmark process never ends it),
// its pipes of `pipeSize` bytes. Returns its port.
const poller = new Poller();
const LOOPBACK = 0x7f000001;
function relay(pipeSize: number): number {
  const shared = { poller, pipes: new PipePool(pipeSize), scratch: new Uint8Array(64 * 1024) };
  const listener = tcpSocket();
  bindTo(listener, LOOPBACK, 0);
  listenOn(listener, 128);
  poller.watch(listener, Ready.In, () => {
    for (let got = acceptFrom(listener); typeof got !== "number"; got = acceptFrom(listener)) {
      const client = got.fd;
      const server = tcpSocket();
      const pumpIt = (serverWatched: boolean) => {
        new Pump(shared, client, server, (result) => {
          if (result.reason !== "closed" || result.bytesToServer !== TOTAL) {
            throw new Error(`pump ended with ${JSON.stringify(result)}`);
          }
        }).start(serverWatched);
      };
      const started = startConnect(server, { address: LOOPBACK, port: sinkPort });
      if (started === 0) pumpIt(false);
      else if (started === 115) { // EINPROGRESS
        poller.watch(server, PUMP_EVENTS, (events) => {
          if (events & (Ready.Out | Ready.Err | Ready.Hup)) pumpIt(true);
        });
      } else resetFd(client);
    }
  });
  return localEndpoint(listener).port;
}
// The relay's pipes (tcp_relay.ts) and the size they had before (docs/performance.md).
const relayPort = relay(1024 * 1024);
const relayPort256 = relay(256 * 1024);

/** Sends TOTAL bytes with backpressure, then waits for the peer's FIN and the close. */
async function send(port: number): Promise<void> {
  const socket = net.connect({ host: HOST, port, allowHalfOpen: true });
  const closed = new Promise<void>((resolve, reject) => {
    socket.once("error", reject);
    socket.once("close", () => resolve());
  });
  socket.resume();
  await new Promise((resolve) => socket.once("connect", resolve));
  for (let sent = 0; sent < TOTAL; sent += CHUNK.length) {
    if (!socket.write(CHUNK)) await new Promise((resolve) => socket.once("drain", resolve));
  }
  socket.end();
  await closed;
}

// Deno.bench awaits only functions declared async, not ones that merely return a promise.
Deno.bench(
  { name: "direct: 32 MiB client -> sink", group: "bulk", baseline: true, n: 30, warmup: 3 },
  async () => await send(sinkPort),
);

Deno.bench(
  { name: "pump: 32 MiB client -> relay -> sink", group: "bulk", n: 30, warmup: 3 },
  async () => await send(relayPort),
);

Deno.bench(
  { name: "pump, 256 KiB pipes: 32 MiB client -> relay -> sink", group: "bulk", n: 30, warmup: 3 },
  async () => await send(relayPort256),
);
