/**
 * The IPv6 UDP flows krelay NATs itself: those of services with a packet script, whose every
 * packet the queue takes (the kernel carries the other IPv6 flows, steering/udp6_rules.ts).
 * A flow is its client, client port and service port, sent to one IPv6 server; it lives
 * `timeoutMs` after its last packet either way. Pure: time from a clock.
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
  /** When it ends unless it talks again (the clock's ms). */
  expires: number;
  /** A reply passed. */
  answered: boolean;
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
      f = { client, clientPort, servicePort, server, expires: 0, answered: false };
      this.#byRequest.set(`${client}|${clientPort}|${servicePort}`, f);
      this.#byReply.set(`${server}|${servicePort}|${client}|${clientPort}`, f);
    }
    f.expires = now + timeoutMs;
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
    f.answered = true;
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
