/**
 * krelay's side of the kernel's IPv4 UDP flows (nft.ts, kernel_udp_flows.ts): krelay sees
 * every flow's first packet, and reads the kernel's maps only when it needs to.
 *
 * - Table pressure: the kernel's map refuses a new flow when it holds `nat_max_entries`, and
 *   cannot evict one itself. krelay counts the flows it creates (an upper bound of the map's:
 *   some expire unseen); when the count reaches the high mark ({@link watermarks}), it lists
 *   the maps (the real count) and deletes the idlest unanswered flows down to the low mark, as
 *   conntrack's early drop does. A flow that has had an answer is never evicted: when the
 *   table is full of them, new flows are refused as before.
 * - Passive health (several servers): each flow is judged half of udp_timeout after its first
 *   packet: answered by then (its entry in `udp_answered` lives udp_timeout after an answer,
 *   so the reading sees every answer since the flow began), or not, which includes a flow
 *   evicted meanwhile. Per server and tick ({@link tally}), answered flows count for it; only
 *   when none of its flows was answered do the unanswered ones count against it, so that a
 *   flood of flows no server answers does not take a server that answers others out. A large
 *   table is read less often than every tick ({@link LISTED_PER_SECOND}).
 *
 * @module
 */

import { formatIpv4 } from "../packet/address.ts";
import {
  evictFlows,
  flowKey,
  type KernelUdpFlow,
  pickEvictions,
  readAnswered,
  readFlows,
} from "../steering/kernel_udp_flows.ts";
import type { CommandRunner } from "../system/command.ts";
import { logger } from "../system/log.ts";

const log = logger("nat");

/** Least time between two evictions; and between two notes of them in the log. */
const EVICT_GAP_MS = 100;
const NOTE_MS = 10_000;
/**
 * Answered flows listed per second at most, for the passive checks: a large table is read less
 * often (but at least every quarter of udp_timeout, so that a flow is judged before the entry
 * of an answer long past expires).
 */
const LISTED_PER_SECOND = 8192;

/** The counts at which krelay evicts (high), and down to which (low). */
export function watermarks(max: number): { high: number; low: number } {
  return { high: max - Math.max(1, Math.floor(max / 8)), low: max - Math.floor(max / 4) };
}

/** A flow waiting to be judged. */
export interface PendingFlow {
  key: string;
  port: number;
  /** The server, unsigned. */
  server: number;
  /** When its first packet came (clock ms). */
  at: number;
}

/** Per "port/server": answered flows and unanswered ones, as the passive check counts them. */
export function tally(
  flows: readonly PendingFlow[],
  answered: ReadonlySet<string>,
): Map<string, { port: number; server: number; failures: number; successes: number }> {
  const out = new Map<
    string,
    { port: number; server: number; failures: number; successes: number }
  >();
  for (const f of flows) {
    const id = `${f.port}/${f.server}`;
    const t = out.get(id) ?? { port: f.port, server: f.server, failures: 0, successes: 0 };
    if (answered.has(f.key)) t.successes++;
    else t.failures++;
    out.set(id, t);
  }
  // Any answer says the server works: its unanswered flows are the clients' (or a flood's).
  for (const t of out.values()) if (t.successes > 0) t.failures = 0;
  return out;
}

/** What {@link KernelUdp} works with. */
export interface KernelUdpOptions {
  run: CommandRunner;
  now: () => number;
  /** nat_max_entries, and udp_timeout in ms, in force. */
  limits: () => { max: number; timeoutMs: number };
  /** Whether the flows of a service port count for their server's health. */
  judged: (port: number) => boolean;
  /** A tick's results for one server's service. */
  onJudged: (port: number, server: number, failures: number, successes: number) => void;
  /** Flows evicted from the kernel's maps: whatever else carries them must forget them too. */
  onEvicted?: (flows: readonly KernelUdpFlow[]) => void;
  nft?: string;
}

/** Counters for the status. */
export interface KernelUdpStats {
  /** Unanswered flows evicted from the kernel's full table for new ones. */
  evicted: number;
  /** Evictions that failed (nft's error logged). */
  evictionErrors: number;
}

/** The kernel's IPv4 UDP flows as krelay follows them (see the module). */
export class KernelUdp {
  #count = 0;
  #created = 0;
  #evicting?: Promise<void>;
  #lastEviction = -Infinity;
  #pending: PendingFlow[] = [];
  #judging = false;
  /** When the answered flows were last read, and how many there were. */
  #listed = { at: -Infinity, size: 0 };
  #noted = { evicted: 0, at: -Infinity };
  readonly stats: KernelUdpStats = { evicted: 0, evictionErrors: 0 };

  constructor(private readonly options: KernelUdpOptions) {}

  /** Flows counted in the kernel's map (an upper bound). */
  get count(): number {
    return this.#count;
  }

  /** A new flow's first packet went to the kernel (addresses unsigned). */
  created(client: number, clientPort: number, servicePort: number, server: number): void {
    this.#count++;
    this.#created++;
    if (this.options.judged(servicePort)) {
      const key = flowKey(formatIpv4(client), clientPort, servicePort);
      this.#pending.push({ key, port: servicePort, server, at: this.options.now() });
      // Bounded: a flood of flows not yet judged keeps the latest table's worth.
      const max = this.options.limits().max;
      if (this.#pending.length > 2 * max) this.#pending.splice(0, this.#pending.length - max);
    }
    this.check();
  }

  /** The kernel's table was made anew (steering installed): it holds nothing. */
  reset(): void {
    this.#count = 0;
    this.#pending = [];
  }

  /**
   * Starts an eviction when the count reached the high mark; returns the eviction under way,
   * if any.
   */
  check(): Promise<void> | undefined {
    if (this.#evicting !== undefined) return this.#evicting;
    const { max } = this.options.limits();
    if (this.#count < watermarks(max).high) return undefined;
    if (this.options.now() - this.#lastEviction < EVICT_GAP_MS) return undefined;
    this.#evicting = this.#evict(max).finally(() => {
      this.#evicting = undefined;
      this.#lastEviction = this.options.now();
    });
    return this.#evicting;
  }

  /** Once a second: judges the flows due, notes evictions in the log, checks the count. */
  async tick(): Promise<void> {
    this.#note();
    await Promise.all([this.check(), this.#judge()]);
  }

  async #evict(max: number): Promise<void> {
    const before = this.#created;
    const { run, nft } = this.options;
    try {
      const flows = await readFlows(run, nft);
      const victims = pickEvictions(flows, flows.length - watermarks(max).low);
      await evictFlows(run, victims, nft);
      this.stats.evicted += victims.length;
      this.options.onEvicted?.(victims);
      // The flows krelay created while it read and deleted are on top of the listing.
      this.#count = flows.length - victims.length + (this.#created - before);
    } catch (e) {
      this.stats.evictionErrors++;
      log.warning("evicting unanswered UDP flows failed: {error}", { error: String(e) });
    }
  }

  /** Logs the evictions since the last note, at most every {@link NOTE_MS}. */
  #note(): void {
    const now = this.options.now();
    const evicted = this.stats.evicted - this.#noted.evicted;
    if (evicted === 0 || now - this.#noted.at < NOTE_MS) return;
    log.warning(
      "kernel UDP flow table full ({max} flows): evicted {evicted} unanswered flows in {seconds} s",
      {
        max: this.options.limits().max,
        evicted,
        seconds: Number.isFinite(this.#noted.at) ? Math.round((now - this.#noted.at) / 1000) : 0,
      },
    );
    this.#noted = { evicted: this.stats.evicted, at: now };
  }

  async #judge(): Promise<void> {
    if (this.#judging || this.#pending.length === 0) return;
    const now = this.options.now();
    const { timeoutMs } = this.options.limits();
    const gap = Math.min(timeoutMs / 4, (1000 * this.#listed.size) / LISTED_PER_SECOND);
    if (now - this.#listed.at < gap) return;
    const cutoff = now - timeoutMs / 2;
    let n = 0;
    while (n < this.#pending.length && this.#pending[n].at <= cutoff) n++;
    if (n === 0) return;
    const due = this.#pending.splice(0, n).filter((f) => this.options.judged(f.port));
    if (due.length === 0) return;
    this.#judging = true;
    try {
      const answered = await readAnswered(this.options.run, this.options.nft);
      this.#listed = { at: now, size: answered.size };
      for (const t of tally(due, answered).values()) {
        this.options.onJudged(t.port, t.server, t.failures, t.successes);
      }
    } catch (e) {
      log.warning("reading the answered UDP flows failed: {error}", { error: String(e) });
    } finally {
      this.#judging = false;
    }
  }
}
