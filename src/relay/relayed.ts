/**
 * One relayed TCP connection while it is open: who it is from, where the client meant to go and
 * where it is relayed, and how it is listed.
 *
 * @module
 */

import type { FlowCounts } from "../nat/tcp_targets.ts";
import { formatEndpoint } from "../packet/address.ts";
import { formatEndpoint6 } from "../packet/ipv6_address.ts";

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
  /**
   * An IPv6 connection's addresses (canonical text; the numbers above are then 0), undefined
   * for IPv4. Always present, so that every flow has one shape.
   */
  v6: RelayedAddresses6 | undefined;
}

/** The addresses of an IPv6 relayed connection. */
export interface RelayedAddresses6 {
  client: string;
  relay: string;
  server: string;
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
    const v6 = this.flow.v6;
    if (v6 !== undefined) return formatEndpoint6(v6.client, this.flow.clientPort);
    return formatEndpoint(this.flow.client, this.flow.clientPort);
  }

  get target(): string {
    const v6 = this.flow.v6;
    if (v6 !== undefined) return formatEndpoint6(v6.server, this.flow.serverPort);
    return formatEndpoint(this.flow.server, this.flow.serverPort);
  }
}
