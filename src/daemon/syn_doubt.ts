/**
 * Which TCP services are in doubt, for `tcp_hold_syn = auto`: their clients' SYNs go through
 * the SYN gate (syn_gate.ts) only while one of their servers may refuse or not answer, so that
 * the relay does not accept a connection it would then have to reset; the rest of the time
 * they take the fast path (no queue round trip).
 *
 * The rule, per service port:
 * - **In doubt** from a failed connection to any of its servers: refused, unreachable or
 *   unanswered, whether the relay made it after the accept (its client was reset: the one
 *   cost of this mode) or the gate made it for a held SYN (its client was refused as by the
 *   server).
 * - **Out of doubt** once, since its last failure, `rise` connections made by the gate have
 *   succeeded and `quietMs` have passed: the server takes connections again, and did not only
 *   take one between two refusals (a server restarting, or one that refuses some). These are
 *   the health checks' own `health_rise` and `health_interval`.
 * - A service whose connections never succeed stays in doubt: holding costs only while
 *   clients come, and then it is exactly what they must get.
 *
 * A server down while others are up needs no doubt: the balancer gives it no connections. A
 * service with no server up at all is refused by the kernel (SteeringSpec.refusedTcpPorts).
 *
 * @module
 */

import type { FlowCounts } from "../nat/tcp_targets.ts";

/** When a service leaves doubt (see the module documentation). */
export interface DoubtRule {
  /** Connections through the gate that must succeed after the last failure. */
  rise: number;
  /** Milliseconds since the last failure. */
  quietMs: number;
}

interface Doubt {
  lastFailure: number;
  successes: number;
}

/** The services in doubt; see the module documentation. */
export class SynDoubt {
  readonly #doubts = new Map<number, Doubt>();
  /** The relay's failed connections last seen, by "port/server" (TcpRelay.serverCounts). */
  #seen: Record<string, number> = {};

  constructor(
    private readonly options: {
      now: () => number;
      rule: () => DoubtRule;
      /** The set of ports in doubt changed: the steering must follow. */
      onChange: () => void;
    },
  ) {}

  /** A connection for a client of `port` failed (refused, unreachable or unanswered). */
  failed(port: number): void {
    const doubt = this.#doubts.get(port);
    const now = this.options.now();
    if (doubt !== undefined) {
      doubt.lastFailure = now;
      doubt.successes = 0;
      return;
    }
    this.#doubts.set(port, { lastFailure: now, successes: 0 });
    this.options.onChange();
  }

  /** The gate's connection for a client of `port` succeeded. */
  connected(port: number): void {
    const doubt = this.#doubts.get(port);
    if (doubt === undefined) return;
    doubt.successes++;
    this.#settle(port, doubt);
  }

  /**
   * The relay's connection counts since start, by "port/server": a connection that failed
   * since the last call puts its service in doubt. Counts that went back (relay threads
   * started again) start anew.
   */
  relayCounts(counts: Record<string, FlowCounts>): void {
    const seen: Record<string, number> = {};
    for (const [key, c] of Object.entries(counts)) {
      seen[key] = c.failed;
      const before = this.#seen[key] ?? 0;
      if (c.failed > before) this.failed(Number(key.split("/")[0]));
    }
    this.#seen = seen;
  }

  /** Lets the services whose rule is met out of doubt (their quiet time may end unseen). */
  sweep(): void {
    for (const [port, doubt] of this.#doubts) this.#settle(port, doubt);
  }

  /** Forgets the services not in `ports` (no longer relayed). */
  retain(ports: readonly number[]): void {
    let changed = false;
    for (const port of this.#doubts.keys()) {
      if (ports.includes(port)) continue;
      this.#doubts.delete(port);
      changed = true;
    }
    if (changed) this.options.onChange();
  }

  /** The ports in doubt, in order. */
  ports(): number[] {
    return [...this.#doubts.keys()].sort((a, b) => a - b);
  }

  #settle(port: number, doubt: Doubt): void {
    const rule = this.options.rule();
    if (doubt.successes < rule.rise) return;
    if (this.options.now() - doubt.lastFailure < rule.quietMs) return;
    this.#doubts.delete(port);
    this.options.onChange();
  }
}
