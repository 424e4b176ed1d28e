/**
 * The IPv6 UDP flows krelay NATs itself: those of services with a packet script, whose every
 * packet the queue takes (the kernel carries the other IPv6 flows, steering/udp6_rules.ts).
 * A flow is its client, client port and service port, sent to one IPv6 server; it lives
 * `timeoutMs` after its last packet either way. Pure: time from a clock.
 *
 * The rewriter keeps a second set of them for the flows the kernel carries, only to know their
 * server (an ICMPv6 error about a reply must reach it, nat/icmp6_errors.ts): {@link
 * Udp6Flows.record}ed at their first packet and kept as long as the kernel keeps the flow.
 *
 * @example
 * ```ts
 * import { Udp6Flows } from "./udp6_flows.ts";
 * const flows = new Udp6Flows(1024, () => performance.now());
 * const f = flows.request("2001:db8:1::10", 40000, 53, () => "2001:db8:2::10", 30_000);
 * ```
 * @module
 */

/** One flow. */
export interface Udp6Flow {
  readonly client: string;
  readonly clientPort: number;
  readonly servicePort: number;
  readonly server: string;
  /** When it was made (the clock's ms). */
  readonly created: number;
  /** When it ends unless it talks again (the clock's ms), and its last timeout. */
  expires: number;
  timeoutMs: number;
  /** A reply passed. */
  answered: boolean;
  /** Datagrams each way (those krelay saw: a kernel flow's first only). */
  packetsToServer: number;
  packetsToClient: number;
}

/** The flows, found from a request's side and from a reply's. */
export class Udp6Flows {
  readonly #byRequest = new Map<string, Udp6Flow>();
  readonly #byReply = new Map<string, Udp6Flow>();

  constructor(private readonly capacity: number, private readonly now: () => number) {}

  /** How many flows are held. */
  get size(): number {
    return this.#byRequest.size;
  }

  /** The live flow of a request's tuple, if any. */
  get(client: string, clientPort: number, servicePort: number): Udp6Flow | undefined {
    const f = this.#byRequest.get(`${client}|${clientPort}|${servicePort}`);
    return f !== undefined && f.expires > this.now() ? f : undefined;
  }

  /**
   * The flow of a request (client:clientPort -> relay:servicePort), made when new with the
   * server `pick` gives: "no-server" when it gives none, "full" when the flows are at capacity.
   */
  request(
    client: string,
    clientPort: number,
    servicePort: number,
    pick: () => string | undefined,
    timeoutMs: number,
  ): Udp6Flow | "full" | "no-server" {
    const now = this.now();
    let f = this.get(client, clientPort, servicePort);
    if (f === undefined) {
      if (this.#byRequest.size >= this.capacity) this.sweep();
      if (this.#byRequest.size >= this.capacity) return "full";
      const server = pick();
      if (server === undefined) return "no-server";
      f = this.#add(client, clientPort, servicePort, server, now);
    }
    f.expires = now + timeoutMs;
    f.timeoutMs = timeoutMs;
    f.packetsToServer++;
    return f;
  }

  /**
   * Records a flow the kernel carries, sent to `server`, for `timeoutMs` from now: a new one
   * (it replaces the tuple's old flow, which the kernel has forgotten), or one the kernel still
   * has (its time renewed). False when the flows are at capacity.
   */
  record(
    client: string,
    clientPort: number,
    servicePort: number,
    server: string,
    timeoutMs: number,
  ): boolean {
    const now = this.now();
    let f = this.#byRequest.get(`${client}|${clientPort}|${servicePort}`);
    if (f !== undefined && f.server !== server) {
      this.#byReply.delete(`${f.server}|${f.servicePort}|${f.client}|${f.clientPort}`);
      this.#byRequest.delete(`${client}|${clientPort}|${servicePort}`);
      f = undefined;
    }
    if (f === undefined) {
      if (this.#byRequest.size >= this.capacity) this.sweep();
      if (this.#byRequest.size >= this.capacity) return false;
      f = this.#add(client, clientPort, servicePort, server, now);
    }
    f.expires = Math.max(f.expires, now + timeoutMs);
    f.timeoutMs = timeoutMs;
    return true;
  }

  #add(
    client: string,
    clientPort: number,
    servicePort: number,
    server: string,
    now: number,
  ): Udp6Flow {
    const f: Udp6Flow = {
      client,
      clientPort,
      servicePort,
      server,
      created: now,
      expires: now,
      timeoutMs: 0,
      answered: false,
      packetsToServer: 0,
      packetsToClient: 0,
    };
    this.#byRequest.set(`${client}|${clientPort}|${servicePort}`, f);
    this.#byReply.set(`${server}|${servicePort}|${client}|${clientPort}`, f);
    return f;
  }

  /** The live flow a reply (server:servicePort -> client:clientPort) belongs to, refreshed. */
  reply(
    server: string,
    servicePort: number,
    client: string,
    clientPort: number,
    timeoutMs: number,
  ): Udp6Flow | undefined {
    const now = this.now();
    const f = this.#byReply.get(`${server}|${servicePort}|${client}|${clientPort}`);
    if (f === undefined || f.expires <= now) return undefined;
    f.expires = now + timeoutMs;
    f.timeoutMs = timeoutMs;
    f.answered = true;
    f.packetsToClient++;
    return f;
  }

  /** Drops the flows whose time is up. */
  sweep(): void {
    const now = this.now();
    for (const [key, f] of this.#byRequest) {
      if (f.expires > now) continue;
      this.#byRequest.delete(key);
      this.#byReply.delete(`${f.server}|${f.servicePort}|${f.client}|${f.clientPort}`);
    }
  }

  /** Every flow held (some may have expired since the last sweep). */
  entries(): IterableIterator<Udp6Flow> {
    return this.#byRequest.values();
  }

  /** Drops every flow. */
  flush(): void {
    this.#byRequest.clear();
    this.#byReply.clear();
  }
}
