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
  return connectEither(flow, IPV4);
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
  return connectEither(flow, IPV6);
}

/** One family's calls: a socket bound to the client's address and `port`, its connect. */
interface FamilyCalls<F> {
  socket(flow: F, port: number): number;
  connect(fd: number, flow: F): number;
}

const IPV4: FamilyCalls<UpstreamFlow> = {
  socket: (flow, port) => upstreamSocket(flow.client, port),
  connect: (fd, flow) => startConnect(fd, { address: flow.server, port: flow.serverPort }),
};

const IPV6: FamilyCalls<UpstreamFlow6> = {
  socket: (flow, port) => upstreamSocket6(flow.client, port),
  connect: (fd, flow) => startConnect6(fd, { address: flow.server, port: flow.serverPort }),
};

function connectEither<F extends { readonly clientPort: number }>(
  flow: F,
  calls: FamilyCalls<F>,
): Upstream | string {
  const own = connectFrom(flow, calls, flow.clientPort);
  if (typeof own !== "string") return { ...own, portChanged: false };
  // Taken: by another connection of this client (to another service) or one in TIME_WAIT.
  if (own !== "EADDRINUSE" && own !== "EADDRNOTAVAIL") return own;
  const picked = connectFrom(flow, calls, 0);
  return typeof picked === "string" ? picked : { ...picked, portChanged: true };
}

function connectFrom<F>(
  flow: F,
  calls: FamilyCalls<F>,
  port: number,
): Omit<Upstream, "portChanged"> | string {
  let fd: number;
  try {
    fd = calls.socket(flow, port);
  } catch (e) {
    return e instanceof SocketError ? e.code : String(e);
  }
  const started = calls.connect(fd, flow);
  if (started === 0 || started === Errno.EINPROGRESS) return { fd, connecting: started !== 0 };
  closeFd(fd);
  return errnoName(started);
}
