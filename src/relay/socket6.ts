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
  IPV6_TRANSPARENT,
  IPV6_V6ONLY,
  SOCK_CLOEXEC,
  SOCK_NONBLOCK,
  SOCK_STREAM,
  SOL_IPV6,
} from "../../ffi/linux.ts";
import { formatIpv6, parseIpv6 } from "../packet/ipv6_address.ts";
import {
  check,
  closeFd,
  familyGatewayListener,
  familyUpstreamSocket,
  setOption,
  settleConnect,
  SocketError,
  type SocketFamily,
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

/** A new non-blocking IPv6-only TCP socket; throws (EAFNOSUPPORT without IPv6, EMFILE...). */
export function tcpSocket6(): number {
  const fd = check(
    "socket",
    libc().socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0),
  );
  try {
    setOption(fd, SOL_IPV6, IPV6_V6ONLY, "IPV6_V6ONLY");
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

const IPV6: SocketFamily<string> = {
  socket: tcpSocket6,
  setTransparent: (fd) => setOption(fd, SOL_IPV6, IPV6_TRANSPARENT, "IPV6_TRANSPARENT"),
  bindTo: bindTo6,
  any: "::",
  label: " (IPv6)",
};

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
  return familyGatewayListener(IPV6, port, transparent, reusePort, cpu);
}

/**
 * A socket for the relay's connection to an IPv6 server, bound to the client's
 * [address]:port, transparent; port 0 leaves the port to connect(). See socket.ts's
 * upstreamSocket.
 */
export function upstreamSocket6(address: string, port: number): number {
  return familyUpstreamSocket(IPV6, address, port, true);
}
