import assert from "node:assert/strict";
import { Errno } from "../system/errno.ts";
import { libc } from "../../ffi/libc.ts";
import {
  acceptFrom,
  bindTo,
  closeFd,
  gatewayListener,
  incomingCpu,
  localEndpoint,
  settleConnect,
  setTransparent,
  startConnect,
  tcpSocket,
} from "./socket.ts";
import { segmentsIn, segmentsOut } from "./_tcp_info.ts";
import { testOrSkip } from "../../tests/support/skip.ts";

const LOOPBACK = 0x7f000001;

Deno.test("settleConnect: a connect under way is not failed by a stray errno", () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const fd = tcpSocket();
  try {
    const started = startConnect(fd, { address: LOOPBACK, port: listener.addr.port });
    assert.equal(started, Errno.EINPROGRESS);
    // As if the runtime had left EAGAIN in errno between the call and the read.
    const outcome = settleConnect(fd, Errno.EAGAIN);
    assert.ok(outcome === Errno.EINPROGRESS || outcome === 0, `got ${outcome}`);
  } finally {
    closeFd(fd);
    listener.close();
  }
});

Deno.test("settleConnect: a socket that is not connecting keeps the errno it got", () => {
  const fd = tcpSocket();
  try {
    assert.equal(settleConnect(fd, Errno.EADDRNOTAVAIL), Errno.EADDRNOTAVAIL);
    assert.equal(settleConnect(fd, Errno.EINPROGRESS), Errno.EINPROGRESS);
  } finally {
    closeFd(fd);
  }
});

Deno.test("startConnect: starts a connect to a listening port", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const fd = tcpSocket();
  try {
    const started = startConnect(fd, { address: LOOPBACK, port: listener.addr.port });
    assert.ok(started === 0 || started === Errno.EINPROGRESS, `got ${started}`);
    const conn = await listener.accept();
    conn.close();
  } finally {
    closeFd(fd);
    listener.close();
  }
});

/** Polls `cond` every 2 ms, at most 2 s. */
async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = performance.now() + 2_000;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

Deno.test("gatewayListener: the ACK of a client's request rides in the answer", async () => {
  const listener = gatewayListener(0, false, false);
  const client = tcpSocket();
  let accepted = -1;
  try {
    startConnect(client, { address: LOOPBACK, port: localEndpoint(listener).port });
    await until(() => {
      const got = acceptFrom(listener);
      if (typeof got !== "number") accepted = got.fd;
      return accepted >= 0;
    }, "accept");
    const buf = new Uint8Array(64);
    assert.equal(libc().send(client, buf, 10n, 0), 10);
    await until(() => libc().read(accepted, buf, BigInt(buf.length)) === 10, "the request");
    // (Its SYN-ACK was counted before it was a socket of its own.)
    assert.equal(segmentsOut(accepted), 0, "nothing sent: the request's ACK is held back");
    assert.equal(libc().send(accepted, buf, 20n, 0), 20);
    await until(() => libc().read(client, buf, BigInt(buf.length)) === 20, "the answer");
    assert.equal(segmentsIn(client), 2, "the SYN-ACK, then the answer carrying the ACK");
  } finally {
    if (accepted >= 0) closeFd(accepted);
    closeFd(client);
    closeFd(listener);
  }
});

Deno.test("gatewayListener: a port in use is a clear error", () => {
  const first = gatewayListener(0, false, false);
  try {
    const port = localEndpoint(first).port;
    assert.throws(() => gatewayListener(port, false, false), {
      message: `gateway port ${port} is already in use`,
    });
  } finally {
    closeFd(first);
  }
});

Deno.test("gatewayListener: given a CPU, the listener takes that CPU's connections", () => {
  const plain = gatewayListener(0, false, true);
  const kept = gatewayListener(localEndpoint(plain).port, false, true, 1);
  try {
    // -1: the kernel's "none", by which the group's selection goes by hash.
    assert.equal(incomingCpu(plain), -1);
    assert.equal(incomingCpu(kept), 1);
  } finally {
    closeFd(plain);
    closeFd(kept);
  }
});

testOrSkip(Deno.uid() === 0 ? undefined : "needs root", {
  name: "localEndpoint: an address of 128.0.0.0 or above reads back signed, and binds either way " +
    "(needs root: a transparent socket binds an address the host does not have)",
  fn() {
    const server = 0xcb00710a; // 203.0.113.10: bound, never connected; no address is added
    for (const given of [server, server | 0]) {
      const fd = tcpSocket();
      try {
        setTransparent(fd);
        assert.equal(bindTo(fd, given, 0), 0);
        const got = localEndpoint(fd).address;
        // A small integer for V8 (see socket.ts's endpointOf), and the same address.
        assert.equal(got, server | 0);
        assert.ok(got < 0);
        assert.equal(got >>> 0, server);
      } finally {
        closeFd(fd);
      }
    }
  },
});
