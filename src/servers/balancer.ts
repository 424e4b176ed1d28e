/**
 * Which real server a new flow goes to. Two ways, chosen by `balance`:
 *
 * - `client-hash` (default): rendezvous (highest random weight) hashing of the client address.
 *   Each server scores each client by a hash of both, scaled by the server's weight
 *   (`weight / -ln(hash)`, so that shares follow the weights); the highest score wins. A
 *   client's flows therefore stick to one server, and when a server goes down only its own
 *   clients move (every other client's best server is still up), spread over the rest by weight.
 * - `round-robin`: each new flow goes to the next server, by smooth weighted round robin (as
 *   nginx does: a server of weight 3 gets 3 flows of every 4 next to one of weight 1, spread out).
 *
 * Backup servers are candidates only while no other server is up. A {@link Balancer} is made
 * for one service's servers and health, and picks without allocating anything (it runs for
 * every new TCP connection of the relay).
 *
 * @example
 * ```ts
 * import { Balancer } from "./balancer.ts";
 * const servers = [{ ip: 0xcb00710a, weight: 1, backup: false }];
 * const b = new Balancer(servers, [true], "client-hash");
 * b.pick(0xc6336410); // 0
 * ```
 * @module
 */

/** How new flows are spread over the servers that are up. */
export type BalanceMode = "client-hash" | "round-robin";

/** What the balancer needs of a server. */
export interface BalancedServer {
  /**
   * The address (IPv4 as a number, signed or not; IPv6 folded, list.ts's foldIpv6); it seeds
   * the server's hash.
   */
  readonly ip: number;
  /** The address as listed: how an IPv6 server is reached (list.ts's entries carry it). */
  readonly address?: string;
  readonly weight: number;
  readonly backup: boolean;
}

/**
 * The servers and their health, as the relay's settings carry them (plain data: it is posted to
 * relay threads).
 */
export interface ServerPool {
  readonly servers: readonly BalancedServer[];
  readonly balance: BalanceMode;
  /**
   * Per service ({@link serviceKey}), whether each server (by index) is up. A service not
   * listed has every server up.
   */
  readonly up: Readonly<Record<string, readonly boolean[]>>;
}

/** The key of a service in {@link ServerPool.up}: "tcp/80", "udp/53". */
export function serviceKey(protocol: "tcp" | "udp", port: number): string {
  return `${protocol}/${port}`;
}

/** murmur3's 32-bit finaliser: every input bit moves every output bit. */
function mix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x | 0;
}

/** A server's seed: a function of its address alone, so that list order changes nothing. */
function seedOf(ip: number): number {
  return mix32((ip | 0) ^ 0x5bd1e995);
}

/**
 * Rendezvous score of a client (already mixed) for a server: weight / -ln(u), u in (0, 1)
 * uniform from the hash. Its maximum over servers picks server i with probability
 * weight_i / sum(weights).
 */
export function hrwScore(mixedClient: number, seed: number, weight: number): number {
  const h = mix32(mixedClient ^ seed) >>> 0;
  return weight / -Math.log((h + 0.5) / 4294967296);
}

/** Picks a server for new flows of one service. */
export class Balancer {
  /** Indexes (into the server list) of the candidates: the servers up, or backups up. */
  readonly #ids: Int32Array;
  readonly #seeds: Int32Array;
  readonly #weights: Float64Array;
  /** Round robin: each candidate's current weight (smooth weighted round robin). */
  readonly #current: Float64Array;
  readonly #total: number;
  readonly #hash: boolean;

  /** `up[i]` says whether servers[i] is up; missing entries are up. */
  constructor(
    servers: readonly BalancedServer[],
    up: readonly boolean[] | undefined,
    mode: BalanceMode,
  ) {
    const isUp = (i: number) => up === undefined || up[i] !== false;
    let ids = servers.map((_, i) => i).filter((i) => isUp(i) && !servers[i].backup);
    if (ids.length === 0) ids = servers.map((_, i) => i).filter((i) => isUp(i));
    this.#ids = Int32Array.from(ids);
    this.#seeds = Int32Array.from(ids, (i) => seedOf(servers[i].ip));
    this.#weights = Float64Array.from(ids, (i) => servers[i].weight);
    this.#current = new Float64Array(ids.length);
    this.#total = ids.reduce((sum, i) => sum + servers[i].weight, 0);
    this.#hash = mode === "client-hash";
  }

  /** How many servers new flows may go to now. */
  get candidates(): number {
    return this.#ids.length;
  }

  /** The index of the server for a new flow from `client` (IPv4, signed or not); -1: none up. */
  pick(client: number): number {
    const n = this.#ids.length;
    if (n === 0) return -1;
    return this.#hash ? this.#byHash(client, n) : this.#byTurn(n);
  }

  #byHash(client: number, n: number): number {
    const mixed = mix32(client | 0);
    let best = 0;
    let bestScore = -1;
    for (let i = 0; i < n; i++) {
      const score = hrwScore(mixed, this.#seeds[i], this.#weights[i]);
      if (score > bestScore) {
        bestScore = score;
        best = i;
      }
    }
    return this.#ids[best];
  }

  #byTurn(n: number): number {
    const current = this.#current;
    let best = 0;
    for (let i = 0; i < n; i++) {
      current[i] += this.#weights[i];
      if (current[i] > current[best]) best = i;
    }
    current[best] -= this.#total;
    return this.#ids[best];
  }
}

/**
 * Balancers by service, made again when the pool changes (a new pool object: the settings are
 * replaced, never changed in place).
 */
export class ServiceBalancers {
  #pool: ServerPool | undefined;
  readonly #byService = new Map<string, Balancer>();

  /** The balancer of `key` ({@link serviceKey}) in `pool`. */
  get(pool: ServerPool, key: string): Balancer {
    if (pool !== this.#pool) {
      this.#pool = pool;
      this.#byService.clear();
    }
    let b = this.#byService.get(key);
    if (b === undefined) {
      b = new Balancer(pool.servers, pool.up[key], pool.balance);
      this.#byService.set(key, b);
    }
    return b;
  }
}

/** A pool of one server, always up: the relay of one real server. */
export function onePool(ip: number): ServerPool {
  return { servers: [{ ip, weight: 1, backup: false }], balance: "client-hash", up: {} };
}
