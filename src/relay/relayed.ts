/**
 * One relayed TCP connection while it is open: who it is from, where the client meant to go and
 * where it is relayed, and how it is listed.
 *
 * @module
 */

import type { FlowCounts } from "../nat/tcp_targets.ts";
import { formatEndpoint } from "../packet/address.ts";

/**
 * Who a relayed connection is from, where the client meant to go, and where it is relayed. A
 * diverted connection's addresses are signed while it is open, as socket.ts reads them; listed
 * ({@link TcpRelay.diverted}), they are unsigned, as everywhere else.
 */
export interface RelayedFlow {
  client: number;
  clientPort: number;
  /** The relay's address the client connected to, and the service port it asked. */
  relay: number;
  servicePort: number;
  server: number;
  serverPort: number;
}

/** A relayed connection as listed: it has no NAT entry. */
export interface DivertedConnection extends RelayedFlow {
  /** The relay's port toward the server (the kernel's pick), 0 before the connect started. */
  relayPort: number;
  state: "connecting" | "established";
  /** Clock values (`now`) of the accept and of the last byte relayed. */
  created: number;
  lastSeen: number;
  bytesToServer: number;
  bytesToClient: number;
}

/** One relayed connection, as long as it is open. */
export class Relayed {
  /** The socket toward the server, once made. */
  upstream = -1;
  established = false;

  constructor(
    readonly id: number,
    readonly flow: RelayedFlow,
    readonly created: number,
    /** The counts of the connection's server and port (passive health checks). */
    readonly counts: FlowCounts,
  ) {}

  get who(): string {
    return formatEndpoint(this.flow.client, this.flow.clientPort);
  }

  get target(): string {
    return formatEndpoint(this.flow.server, this.flow.serverPort);
  }
}
