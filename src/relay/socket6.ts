/**
 * IPv6 TCP sockets as plain file descriptors, beside socket.ts's IPv4 ones: the same calls
 * (transparent upstream sockets, the gateway listener) over `struct sockaddr_in6`. Addresses
 * are canonical text (ipv6_address.ts): IPv6 connections are fewer and are kept off the IPv4
 * path's small-integer objects (see socket.ts's Endpoint).
 *
 * Every socket is IPv6-only (IPV6_V6ONLY), so that IPv4 clients keep reaching socket.ts's
 * listener with their own addresses, not IPv4-mapped ones.
 *
 * @module
 */

import { libc } from "../../ffi/libc.ts";
import { Errno, errno } from "../system/errno.ts";
import {
  AF_INET6,
  IP_BIND_ADDRESS_NO_PORT,
  IPV6_TRANSPARENT,
  IPV6_V6ONLY,
  SO_REUSEADDR,
  SO_REUSEPORT,
  SOCK_CLOEXEC,
  SOCK_NONBLOCK,
  SOCK_STREAM,
  SOL_IP,
  SOL_IPV6,
  SOL_SOCKET,
} from "../../ffi/linux.ts";
import { formatIpv6, parseIpv6 } from "../packet/ipv6_address.ts";
import {
  closeFd,
  listenOn,
  setDelayedAck,
  setIncomingCpu,
  setNoDelay,
  settleConnect,
  SocketError,
} from "./socket.ts";

/** An IPv6 endpoint: the address in canonical text. */
export interface Endpoint6 {
  address: string;
  port: number;
}

/** sizeof(struct sockaddr_in6). */
const SOCKADDR_IN6 = 28;
const addrBuf = new Uint8Array(SOCKADDR_IN6);
const addrView = new DataView(addrBuf.buffer);
const lenBuf = new Uint32Array(1);
const one = new Int32Array([1]);

/** `struct sockaddr_in6` for address:port (flow info and scope 0). */
export function sockaddr6(address: string, port: number): Uint8Array {
  addrBuf.fill(0);
  addrView.setUint16(0, AF_INET6, true);
  addrView.setUint16(2, port);
  addrBuf.set(parseIpv6(address), 8);
  return addrBuf;
}

function endpointOf(): Endpoint6 {
  return { address: formatIpv6(addrBuf, 8), port: addrView.getUint16(2) };
}

function check(call: string, result: number): number {
  if (result < 0) throw new SocketError(call, errno());
  return result;
}

function setOpt(fd: number, level: number, opt: number, name: string): void {
  check(`setsockopt ${name}`, libc().setsockopt(fd, level, opt, one, 4));
}

/** A new non-blocking IPv6-only TCP socket; throws (EAFNOSUPPORT without IPv6, EMFILE...). */
export function tcpSocket6(): number {
  const fd = check(
    "socket",
    libc().socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0),
  );
  try {
    setOpt(fd, SOL_IPV6, IPV6_V6ONLY, "IPV6_V6ONLY");
  } catch (e) {
    closeFd(fd);
    throw e;
  }
  return fd;
}

/** Binds to [address]:port; returns 0, or EADDRINUSE for the caller to try another port. */
export function bindTo6(fd: number, address: string, port: number): number {
  if (libc().bind(fd, sockaddr6(address, port), SOCKADDR_IN6) === 0) return 0;
  const e = errno();
  if (e === Errno.EADDRINUSE) return e;
  throw new SocketError("bind", e);
}

/** Accepts one connection: its fd and the peer, or the errno (EAGAIN when none waits). */
export function acceptFrom6(fd: number): { fd: number; peer: Endpoint6 } | number {
  lenBuf[0] = SOCKADDR_IN6;
  const conn = libc().accept4(fd, addrBuf, lenBuf, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (conn < 0) return errno();
  return { fd: conn, peer: endpointOf() };
}

/** The socket's local endpoint. */
export function localEndpoint6(fd: number): Endpoint6 {
  lenBuf[0] = SOCKADDR_IN6;
  check("getsockname", libc().getsockname(fd, addrBuf, lenBuf));
  return endpointOf();
}

/** Starts connecting; returns 0 (connected), EINPROGRESS, or another errno. */
export function startConnect6(fd: number, to: Endpoint6): number {
  if (libc().connect(fd, sockaddr6(to.address, to.port), SOCKADDR_IN6) === 0) return 0;
  return settleConnect(fd, errno());
}

/**
 * The IPv6 gateway listener: [::]:port, transparent, IPv6 only, sharing its port with the
 * other relay threads' when asked; see socket.ts's gatewayListener.
 */
export function gatewayListener6(
  port: number,
  transparent: boolean,
  reusePort: boolean,
  cpu?: number,
): number {
  const fd = tcpSocket6();
  try {
    setOpt(fd, SOL_SOCKET, SO_REUSEADDR, "SO_REUSEADDR");
    if (reusePort) setOpt(fd, SOL_SOCKET, SO_REUSEPORT, "SO_REUSEPORT");
    if (transparent) setOpt(fd, SOL_IPV6, IPV6_TRANSPARENT, "IPV6_TRANSPARENT");
    setNoDelay(fd);
    if (bindTo6(fd, "::", port) !== 0) {
      throw new Error(`gateway port ${port} is already in use (IPv6)`);
    }
    listenOn(fd, 4096);
    setDelayedAck(fd);
    if (cpu !== undefined) setIncomingCpu(fd, cpu);
    return fd;
  } catch (e) {
    closeFd(fd);
    if (e instanceof SocketError) {
      throw new Error(`cannot listen on gateway port ${port} (IPv6): ${e.message}`);
    }
    throw e;
  }
}

/**
 * A socket for the relay's connection to an IPv6 server, bound to the client's
 * [address]:port, transparent; port 0 leaves the port to connect(). See socket.ts's
 * upstreamSocket.
 */
export function upstreamSocket6(address: string, port: number): number {
  const fd = tcpSocket6();
  try {
    if (port !== 0) setOpt(fd, SOL_SOCKET, SO_REUSEADDR, "SO_REUSEADDR");
    else setOpt(fd, SOL_IP, IP_BIND_ADDRESS_NO_PORT, "IP_BIND_ADDRESS_NO_PORT");
    setNoDelay(fd);
    setDelayedAck(fd);
    setOpt(fd, SOL_IPV6, IPV6_TRANSPARENT, "IPV6_TRANSPARENT");
    if (bindTo6(fd, address, port) !== 0) throw new SocketError("bind", Errno.EADDRINUSE);
    return fd;
  } catch (e) {
    closeFd(fd);
    throw e;
  }
}
