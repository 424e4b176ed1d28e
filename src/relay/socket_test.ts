import assert from "node:assert/strict";
import { Errno } from "../system/errno.ts";
import { closeFd, settleConnect, startConnect, tcpSocket } from "./socket.ts";

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
