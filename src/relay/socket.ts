/**
 * IPv4 TCP sockets as plain file descriptors, through libc: what the relay needs and node:net
 * does not give at once — choose the local address and port, be transparent (TPROXY),
 * half-close, and reset with an RST — at a few hundred nanoseconds per call.
 *
 * Every socket is non-blocking and close-on-exec. Calls that can fail throw a
 * {@link SocketError} carrying the errno name, except where the caller must branch on
 * EAGAIN/EINPROGRESS: those return the errno.
 *
 * @module
 */

import { libc } from "../../ffi/libc.ts";
import { Errno, errno, errnoName, errnoText } from "../system/errno.ts";
import {
  AF_INET,
  IP_BIND_ADDRESS_NO_PORT,
  IP_TRANSPARENT,
  IPPROTO_TCP,
  SHUT_WR,
  SO_ERROR,
  SO_INCOMING_CPU,
  SO_LINGER,
  SO_REUSEADDR,
  SO_REUSEPORT,
  SOCK_CLOEXEC,
  SOCK_NONBLOCK,
  SOCK_STREAM,
  SOL_IP,
  SOL_SOCKET,
  TCP_ESTABLISHED,
  TCP_INFO,
  TCP_NODELAY,
  TCP_QUICKACK,
  TCP_SYN_SENT,
} from "../../ffi/linux.ts";

/** A failed socket call: `code` is the errno name ("EADDRINUSE"). */
export class SocketError extends Error {
  constructor(readonly call: string, readonly errno: number) {
    super(`${call}: ${errnoText(errno)}`);
    this.code = errnoName(errno);
  }
  readonly code: string;
}

/**
 * An IPv4 endpoint. The address is its 32 bits as a number: read back signed (`| 0`), so that it
 * is a small integer for V8 whatever the address (system/v8_shapes.ts, rule 2) (see {@link localEndpoint}); given, either form.
 * `>>> 0` gives the unsigned form the NAT table and the packet layer use.
 */
export interface Endpoint {
  address: number;
  port: number;
}

// Scratch buffers: every call here is synchronous on the one JS thread.
const addrBuf = new Uint8Array(16);
const addrView = new DataView(addrBuf.buffer);
const lenBuf = new Uint32Array(1);
const intBuf = new Int32Array(1);
const infoBuf = new Uint8Array(8);
// struct tcp_info up to tcpi_segs_in (a u32 at byte 140).
const segsBuf = new Uint8Array(144);
const segsView = new DataView(segsBuf.buffer);
const SEGS_IN = 140;
const lingerZero = new Int32Array([1, 0]);
const one = new Int32Array([1]);
const zero = new Int32Array([0]);

function sockaddr(address: number, port: number): Uint8Array {
  addrBuf.fill(0);
  addrView.setUint16(0, AF_INET, true);
  addrView.setUint16(2, port);
  addrView.setUint32(4, address);
  return addrBuf;
}

/**
 * The endpoint a call just wrote into the address buffer, its address signed. An unsigned
 * address of 128.0.0.0 or above is no small integer for V8: code optimised while the relay
 * warmed up on 127.0.0.1 was thrown away at the first such client, along with the code that
 * had seen its objects (their fields widened), and compiled again under load.
 */
function endpointOf(): Endpoint {
  return { address: addrView.getInt32(4), port: addrView.getUint16(2) };
}

/** `result` of the libc `call`, or a {@link SocketError} with errno when it is negative. */
export function check(call: string, result: number): number {
  if (result < 0) throw new SocketError(call, errno());
  return result;
}

/** Turns the socket option `level`/`opt` (`name` for the error) on; throws a SocketError. */
export function setOption(fd: number, level: number, opt: number, name: string): void {
  check(`setsockopt ${name}`, libc().setsockopt(fd, level, opt, one, 4));
}

/** A new non-blocking TCP socket; throws (EMFILE...) when none can be had. */
export function tcpSocket(): number {
  return check("socket", libc().socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
}

/** Allows binding a port whose earlier connections are still in TIME_WAIT. */
export function setReuseAddress(fd: number): void {
  setOption(fd, SOL_SOCKET, SO_REUSEADDR, "SO_REUSEADDR");
}

/**
 * Lets sockets of the same user listen on one port together, the kernel spreading new
 * connections among them (the relay threads' gateway listeners).
 */
export function setReusePort(fd: number): void {
  setOption(fd, SOL_SOCKET, SO_REUSEPORT, "SO_REUSEPORT");
}

/**
 * A listener in a SO_REUSEPORT group takes the new connections whose handshake `cpu` handles
 * (Linux 6.1+; the group's others go by hash as before).
 */
export function setIncomingCpu(fd: number, cpu: number): void {
  intBuf[0] = cpu;
  check(
    "setsockopt SO_INCOMING_CPU",
    libc().setsockopt(fd, SOL_SOCKET, SO_INCOMING_CPU, intBuf, 4),
  );
}

/** A socket's SO_INCOMING_CPU: what a listener was given, or where an accepted socket's came. */
export function incomingCpu(fd: number): number {
  lenBuf[0] = 4;
  check(
    "getsockopt SO_INCOMING_CPU",
    libc().getsockopt(fd, SOL_SOCKET, SO_INCOMING_CPU, intBuf, lenBuf),
  );
  return intBuf[0];
}

/** Sends small writes at once: the relay forwards what it got, it does not batch. */
export function setNoDelay(fd: number): void {
  libc().setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, one, 4);
}

/** Whether TCP_NODELAY is on (false when it cannot be read). */
export function noDelay(fd: number): boolean {
  intBuf[0] = 0;
  lenBuf[0] = 4;
  if (libc().getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, intBuf, lenBuf) !== 0) return false;
  return intBuf[0] !== 0;
}

/**
 * Holds back ACKs the kernel would send at once (TCP_QUICKACK 0) so they ride in the next data
 * segment: on a listener (accepted sockets inherit it) the ACK of a client's request rides in
 * the answer; on a socket about to connect, the handshake's last ACK rides in the first bytes
 * sent (the kernel sends it anyway within 200 ms: {@link flushAck} when nothing is to be sent).
 * One packet less each way, as HAProxy's tcp-smart-accept and tcp-smart-connect do.
 */
export function setDelayedAck(fd: number): void {
  libc().setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, zero, 4);
}

/** Sends an ACK the kernel holds back ({@link setDelayedAck}) now, and ACKs at once after. */
export function flushAck(fd: number): void {
  libc().setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, one, 4);
}

/**
 * Makes the socket transparent (IP_TRANSPARENT; needs CAP_NET_ADMIN): a listener accepts the
 * connections TPROXY diverts to it, and a connecting socket may bind an address not the host's.
 */
export function setTransparent(fd: number): void {
  setOption(fd, SOL_IP, IP_TRANSPARENT, "IP_TRANSPARENT");
}

/**
 * A bind to port 0 leaves the port to connect(), which picks one that makes the connection's
 * four-tuple unique: a port can serve many servers, and one in TIME_WAIT is never chosen.
 */
export function setBindAddressNoPort(fd: number): void {
  setOption(fd, SOL_IP, IP_BIND_ADDRESS_NO_PORT, "IP_BIND_ADDRESS_NO_PORT");
}

/** Binds to address:port; returns 0, or EADDRINUSE for the caller to try another port. */
export function bindTo(fd: number, address: number, port: number): number {
  if (libc().bind(fd, sockaddr(address, port), 16) === 0) return 0;
  const e = errno();
  if (e === Errno.EADDRINUSE) return e;
  throw new SocketError("bind", e);
}

/** Listens with the given backlog. */
export function listenOn(fd: number, backlog: number): void {
  check("listen", libc().listen(fd, backlog));
}

/**
 * Accepts one connection: its fd and the peer's endpoint, or the errno (EAGAIN when none is
 * waiting, EMFILE at the fd limit, ...).
 */
export function acceptFrom(fd: number): { fd: number; peer: Endpoint } | number {
  lenBuf[0] = 16;
  const conn = libc().accept4(
    fd,
    addrBuf,
    lenBuf,
    SOCK_NONBLOCK | SOCK_CLOEXEC,
  );
  if (conn < 0) return errno();
  return { fd: conn, peer: endpointOf() };
}

/** Starts connecting; returns 0 (connected), EINPROGRESS, or another errno. */
export function startConnect(fd: number, to: Endpoint): number {
  if (libc().connect(fd, sockaddr(to.address, to.port), 16) === 0) return 0;
  return settleConnect(fd, errno());
}

/**
 * The outcome of a connect that returned -1 with `e` read from errno. errno is read after the
 * call has returned to JavaScript, and the runtime may run work of its own in between (code
 * compiled on another thread being installed, a GC step) whose failed futex wait leaves EAGAIN
 * there: seen under load in the first seconds after start, resetting a client whose connect
 * was in fact under way. So any errno but EINPROGRESS is checked against the socket's TCP
 * state, which comes back in a buffer, not through errno.
 */
export function settleConnect(fd: number, e: number): number {
  if (e === Errno.EINPROGRESS) return e;
  const state = tcpState(fd);
  if (state === TCP_SYN_SENT) return Errno.EINPROGRESS;
  if (state === TCP_ESTABLISHED) return 0;
  return e;
}

/** The socket's TCP state (tcpi_state), -1 when it cannot be read. */
function tcpState(fd: number): number {
  infoBuf.fill(0);
  lenBuf[0] = infoBuf.length;
  if (libc().getsockopt(fd, IPPROTO_TCP, TCP_INFO, infoBuf, lenBuf) !== 0) return -1;
  return infoBuf[0];
}

/**
 * Segments the socket has received so far (tcpi_segs_in), 0 when it cannot be read: every
 * segment counts, bare ACKs and keepalive probes included, which move no byte.
 */
export function segmentsIn(fd: number): number {
  segsBuf.fill(0);
  lenBuf[0] = segsBuf.length;
  if (libc().getsockopt(fd, IPPROTO_TCP, TCP_INFO, segsBuf, lenBuf) !== 0) return 0;
  return lenBuf[0] >= SEGS_IN + 4 ? segsView.getUint32(SEGS_IN, true) : 0;
}

/** The socket's pending error (SO_ERROR), 0 when none: how a non-blocking connect ended. */
export function pendingError(fd: number): number {
  intBuf[0] = 0;
  lenBuf[0] = 4;
  check(
    "getsockopt SO_ERROR",
    libc().getsockopt(fd, SOL_SOCKET, SO_ERROR, intBuf, lenBuf),
  );
  return intBuf[0];
}

/** The socket's local endpoint. */
export function localEndpoint(fd: number): Endpoint {
  lenBuf[0] = 16;
  check("getsockname", libc().getsockname(fd, addrBuf, lenBuf));
  return endpointOf();
}

/** Sends FIN once queued data is out; the read side stays open. */
export function shutdownWrite(fd: number): number {
  return libc().shutdown(fd, SHUT_WR) === 0 ? 0 : errno();
}

/** Closes: FIN, or an RST when unread data is left (the kernel's rule). */
export function closeFd(fd: number): void {
  libc().close(fd);
}

/** Closes with an RST (SO_LINGER 0), dropping anything unsent. */
export function resetFd(fd: number): void {
  libc().setsockopt(fd, SOL_SOCKET, SO_LINGER, lingerZero, 8);
  libc().close(fd);
}

/**
 * What the gateway listener and an upstream socket do differently in an address family
 * (socket6.ts has IPv6's): the rest of {@link familyGatewayListener} and
 * {@link familyUpstreamSocket} is the same.
 */
export interface SocketFamily<A> {
  /** A new non-blocking TCP socket of the family. */
  socket(): number;
  /** Makes it transparent (IP_TRANSPARENT, IPV6_TRANSPARENT). */
  setTransparent(fd: number): void;
  /** Binds to address:port: 0, or EADDRINUSE. */
  bindTo(fd: number, address: A, port: number): number;
  /** The wildcard address the gateway listens on. */
  any: A;
  /** Said after the port in errors: "" or " (IPv6)". */
  label: string;
}

const IPV4: SocketFamily<number> = {
  socket: tcpSocket,
  setTransparent,
  bindTo,
  any: 0,
  label: "",
};

/**
 * The gateway listener: a listening socket on 0.0.0.0:port (0: any free port), transparent for
 * TPROXY and sharing its port with the other relay threads' when asked, taking the connections
 * that `cpu` handles when given ({@link setIncomingCpu}); a clear error when the port is taken.
 */
export function gatewayListener(
  port: number,
  transparent: boolean,
  reusePort: boolean,
  cpu?: number,
): number {
  return familyGatewayListener(IPV4, port, transparent, reusePort, cpu);
}

/** {@link gatewayListener} in `family`, on its wildcard address. */
export function familyGatewayListener<A>(
  family: SocketFamily<A>,
  port: number,
  transparent: boolean,
  reusePort: boolean,
  cpu: number | undefined,
): number {
  const fd = family.socket();
  try {
    setReuseAddress(fd);
    if (reusePort) setReusePort(fd);
    if (transparent) family.setTransparent(fd);
    // Accepted sockets inherit it: one call less per connection.
    setNoDelay(fd);
    if (family.bindTo(fd, family.any, port) !== 0) {
      throw new Error(`gateway port ${port} is already in use${family.label}`);
    }
    listenOn(fd, 4096);
    // Inherited too, but only set after listen(), which resets it: the ACK of a client's
    // request rides in the answer.
    setDelayedAck(fd);
    if (cpu !== undefined) setIncomingCpu(fd, cpu);
    return fd;
  } catch (e) {
    closeFd(fd);
    if (e instanceof SocketError) {
      throw new Error(`cannot listen on gateway port ${port}${family.label}: ${e.message}`);
    }
    throw e;
  }
}

/**
 * A socket for the relay's own connection to a server, bound to `address`:`port` and ready to
 * connect: transparent when `address` is not 0 (the client's address, TPROXY), port 0 left to
 * connect() to pick; the handshake's last ACK held back to ride in the first bytes sent
 * ({@link setDelayedAck}; {@link flushAck} when there are none). Nagle's algorithm is still on:
 * it never holds a socket's first write (Linux holds a short segment only while an earlier
 * short one is unacknowledged), so the pump turns it off ({@link setNoDelay}) before the
 * second write, and a connection that sends one request spares the call. Throws a
 * {@link SocketError}, "EADDRINUSE" when port y is taken.
 */
export function upstreamSocket(address: number, port: number): number {
  return familyUpstreamSocket(IPV4, address, port, address !== 0);
}

/** {@link upstreamSocket} in `family`, transparent when `transparent`. */
export function familyUpstreamSocket<A>(
  family: SocketFamily<A>,
  address: A,
  port: number,
  transparent: boolean,
): number {
  const fd = family.socket();
  try {
    if (port !== 0) setReuseAddress(fd);
    else setBindAddressNoPort(fd);
    setDelayedAck(fd);
    if (transparent) family.setTransparent(fd);
    if (family.bindTo(fd, address, port) !== 0) throw new SocketError("bind", Errno.EADDRINUSE);
    return fd;
  } catch (e) {
    closeFd(fd);
    throw e;
  }
}
