/**
 * Example packet script: a per-client rate limiter. Each client address has a token bucket
 * (`burst` tokens, refilled at `perSecond`); a request finding its bucket empty is dropped.
 * Replies are never limited. A timer forgets clients idle for a minute, so the table stays
 * small.
 *
 * ```sh
 * krelay run --real-ip 203.0.113.10 --script examples/rate_limiter.ts --on udp:53
 * ```
 *
 * Other numbers: a script of your own using {@link rateLimiter}:
 *
 * ```ts ignore
 * import { rateLimiter } from "./rate_limiter.ts";
 * export const match = rateLimiter({ burst: 100, perSecond: 50 });
 * ```
 * @module
 */

import type { MatchFunction, Packet, ScriptContext } from "../src/script/api.ts";

/** A token bucket's settings. */
export interface RateLimit {
  /** Requests a client may send at once. */
  burst: number;
  /** Tokens added per second. */
  perSecond: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

/** Forget a client after this long without a request. */
const IDLE_MS = 60_000;

/**
 * A match function that is true for requests over the client's limit: in a script with no
 * target, matched packets are dropped.
 */
export function rateLimiter(limit: RateLimit, now: () => number = Date.now): MatchFunction {
  const buckets = new Map<string, Bucket>();
  let dropped = 0;
  setInterval(() => {
    const t = now();
    for (const [client, b] of buckets) if (t - b.at > IDLE_MS) buckets.delete(client);
    if (dropped > 0) console.log(`dropped ${dropped} requests over the limit in the last minute`);
    dropped = 0;
  }, IDLE_MS);
  return (_packet: Packet, ctx: ScriptContext): boolean => {
    if (ctx.hook !== "request") return false;
    const t = now();
    const client = ctx.flow.client.address;
    const b = buckets.get(client) ?? { tokens: limit.burst, at: t };
    b.tokens = Math.min(limit.burst, b.tokens + ((t - b.at) / 1000) * limit.perSecond);
    b.at = t;
    buckets.set(client, b);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return false;
    }
    dropped++;
    return true;
  };
}

/** This script: 20 requests at once per client, then 10 per second. */
export const match: MatchFunction = rateLimiter({ burst: 20, perSecond: 10 });
