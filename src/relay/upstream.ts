/**
 * The relay's connection to the real server. It is transparent: bound to the client's own
 * address, so the server sees the client, and to the client's own port where that port is free
 * toward this server (as a direct connection or kernel NAT keeps it, and HAProxy's
 * `usesrc client`); else on a port the kernel picks from ip_local_port_range
 * (IP_BIND_ADDRESS_NO_PORT: a port whose four numbers are unique, chosen at connect).
 *
 * @module
 */

import { Errno, errnoName } from "../system/errno.ts";
import { closeFd, SocketError, startConnect, upstreamSocket } from "./socket.ts";
import { startConnect6, upstreamSocket6 } from "./socket6.ts";

/** Who a connection is from and where it goes; addresses signed, as socket.ts reads them. */
export interface UpstreamFlow {
  readonly client: number;
  readonly clientPort: number;
  readonly server: number;
  readonly serverPort: number;
}

/** A connect under way (or done) from `port` of the client's address. */
export interface Upstream {
  fd: number;
  /** The connect is still in progress (EINPROGRESS). */
  connecting: boolean;
  /** The client's own port was taken toward this server: the kernel picked another. */
  portChanged: boolean;
}

/**
 * Starts connecting to `flow`'s server from the client's address: the socket, or the errno name
 * of the failure ("EADDRNOTAVAIL": no local port left toward this server).
 */
export function connectUpstream(flow: UpstreamFlow): Upstream | string {
  const own = connectFrom(flow, flow.clientPort);
  if (typeof own !== "string") return { ...own, portChanged: false };
  // Taken: by another connection of this client (to another service) or one in TIME_WAIT.
  if (own !== "EADDRINUSE" && own !== "EADDRNOTAVAIL") return own;
  const picked = connectFrom(flow, 0);
  return typeof picked === "string" ? picked : { ...picked, portChanged: true };
}

function connectFrom(flow: UpstreamFlow, port: number): Omit<Upstream, "portChanged"> | string {
  let fd: number;
  try {
    fd = upstreamSocket(flow.client, port);
  } catch (e) {
    return e instanceof SocketError ? e.code : String(e);
  }
  const started = startConnect(fd, { address: flow.server, port: flow.serverPort });
  if (started === 0 || started === Errno.EINPROGRESS) return { fd, connecting: started !== 0 };
  closeFd(fd);
  return errnoName(started);
}

/** An IPv6 connection's ends, addresses in canonical text (socket6.ts). */
export interface UpstreamFlow6 {
  readonly client: string;
  readonly clientPort: number;
  readonly server: string;
  readonly serverPort: number;
}

/** {@link connectUpstream} for an IPv6 client and server. */
export function connectUpstream6(flow: UpstreamFlow6): Upstream | string {
  const own = connectFrom6(flow, flow.clientPort);
  if (typeof own !== "string") return { ...own, portChanged: false };
  if (own !== "EADDRINUSE" && own !== "EADDRNOTAVAIL") return own;
  const picked = connectFrom6(flow, 0);
  return typeof picked === "string" ? picked : { ...picked, portChanged: true };
}

function connectFrom6(
  flow: UpstreamFlow6,
  port: number,
): Omit<Upstream, "portChanged"> | string {
  let fd: number;
  try {
    fd = upstreamSocket6(flow.client, port);
  } catch (e) {
    return e instanceof SocketError ? e.code : String(e);
  }
  const started = startConnect6(fd, { address: flow.server, port: flow.serverPort });
  if (started === 0 || started === Errno.EINPROGRESS) return { fd, connecting: started !== 0 };
  closeFd(fd);
  return errnoName(started);
}
