/**
 * The NAT table: one entry per relayed flow, reachable under several lookup keys (one per
 * direction), with idle timeouts and a bounded size. Pure: time comes from an injected clock.
 *
 * When the table is full, expired entries go first; then the oldest unanswered entry (no
 * reply seen: a flood of spoofed or scanning flows lands here), then the oldest answered one
 * that is not yet assured (a flow that has not proven itself by talking both ways for a
 * while, like conntrack's early drop of non-assured entries). Assured entries are never
 * evicted for new ones: when every entry is assured, the new flow is refused.
 *
 * @example
 * ```ts
 * import { NatTable } from "./nat_table.ts";
 * const table = new NatTable({ capacity: 1024, now: () => Date.now() });
 * ```
 * @module
 */

/** Transport protocol of a flow. */
export type FlowProtocol = "udp" | "tcp";

/** Why an entry left the table. */
export type RemoveReason = "expired" | "evicted" | "closed" | "flushed";

/** One relayed flow. Addresses are unsigned 32-bit numbers. */
export interface NatEntry {
  /** Unique id, increasing. */
  readonly id: number;
  readonly protocol: FlowProtocol;
  /** The client's address and port (x). */
  readonly client: number;
  readonly clientPort: number;
  /** The address and service port the client sent to (the relay's). */
  readonly relay: number;
  readonly servicePort: number;
  /** The real server's address and port. */
  readonly server: number;
  readonly serverPort: number;
  /** Free-form state for the flow's owner (e.g. "unreplied", "replied", "established"). */
  state: string;
  /** Clock values (ms). */
  readonly created: number;
  lastSeen: number;
  /** Idle time (ms) after which the entry expires. */
  timeoutMs: number;
  /** An assured entry is never evicted to make room. */
  assured: boolean;
  packetsToServer: number;
  bytesToServer: number;
  packetsToClient: number;
  bytesToClient: number;
  /** TCP: the gateway port (A) the client's connection was steered to. */
  gatewayPort: number;
  /** TCP: the relay's own port toward the server (y), once the relay has chosen it; else 0. */
  relayPort: number;
  /** TCP: the relay's own address toward the server, seen on its first packet (T3); else 0. */
  relayLocal: number;
  /** The lookup keys the entry is stored under. */
  readonly keys: readonly string[];
}

/** The fields a caller gives to create an entry. */
export type NewEntry = Pick<
  NatEntry,
  | "protocol"
  | "client"
  | "clientPort"
  | "relay"
  | "servicePort"
  | "server"
  | "serverPort"
  | "state"
  | "timeoutMs"
>;

/** Options of a table. */
export interface NatTableOptions {
  /** Most entries held at once. */
  capacity: number;
  /** Clock in milliseconds. */
  now: () => number;
  /** Called after an entry is removed, for whatever the owner holds for it (ports, sockets). */
  onRemove?: (entry: NatEntry, reason: RemoveReason) => void;
}

/** Table counters. */
export interface NatTableStats {
  entries: number;
  created: number;
  expired: number;
  evicted: number;
  /** Of `evicted`: entries that had seen no reply. */
  evictedUnanswered: number;
  /** New flows refused because the table was full of assured entries. */
  refused: number;
}

/** The NAT table. See the module documentation for the eviction policy. */
export class NatTable {
  readonly #byKey = new Map<string, NatEntry>();
  /** All entries in creation order. */
  readonly #entries = new Map<number, NatEntry>();
  /** Entries that have seen no reply, evicted first, oldest first. */
  readonly #unanswered = new Map<number, NatEntry>();
  /** Answered entries that are not assured, evicted next, oldest answer first. */
  readonly #evictable = new Map<number, NatEntry>();
  #nextId = 1;
  #lastSweep = -Infinity;
  readonly #listeners: ((entry: NatEntry, reason: RemoveReason) => void)[] = [];
  readonly #changeListeners: ((entry: NatEntry) => void)[] = [];
  #stats = { created: 0, expired: 0, evicted: 0, evictedUnanswered: 0, refused: 0 };

  constructor(readonly options: NatTableOptions) {}

  /** Number of entries. */
  get size(): number {
    return this.#entries.size;
  }

  /** The live entry stored under `key`, or undefined. An expired one is removed on the way. */
  get(key: string): NatEntry | undefined {
    const entry = this.#byKey.get(key);
    if (entry === undefined) return undefined;
    if (this.options.now() - entry.lastSeen > entry.timeoutMs) {
      this.#remove(entry, "expired");
      return undefined;
    }
    return entry;
  }

  /**
   * Adds an entry under `keys`. Returns undefined when the table is full of assured entries.
   * Throws when a key is taken by a live entry: callers look up before they add.
   */
  add(fields: NewEntry, keys: string[]): NatEntry | undefined {
    for (const key of keys) {
      if (this.get(key) !== undefined) throw new Error(`NAT key already in use: ${key}`);
    }
    if (this.#entries.size >= this.options.capacity && !this.#makeRoom()) {
      this.#stats.refused++;
      return undefined;
    }
    const now = this.options.now();
    const entry: NatEntry = {
      ...fields,
      id: this.#nextId++,
      created: now,
      lastSeen: now,
      assured: false,
      packetsToServer: 0,
      bytesToServer: 0,
      packetsToClient: 0,
      bytesToClient: 0,
      gatewayPort: 0,
      relayPort: 0,
      relayLocal: 0,
      keys: [...keys],
    };
    this.#entries.set(entry.id, entry);
    this.#unanswered.set(entry.id, entry);
    for (const key of keys) this.#byKey.set(key, entry);
    this.#stats.created++;
    if (this.#changeListeners.length > 0) this.changed(entry);
    return entry;
  }

  /** Makes a live entry reachable under one more key; throws when another entry holds it. */
  addKey(entry: NatEntry, key: string): void {
    const holder = this.get(key);
    if (holder === entry) return;
    if (holder !== undefined) throw new Error(`NAT key already in use: ${key}`);
    if (this.#entries.get(entry.id) !== entry) throw new Error(`NAT entry ${entry.id} is gone`);
    (entry.keys as string[]).push(key);
    this.#byKey.set(key, entry);
  }

  /** Takes one key away from an entry (its other keys stay). */
  removeKey(entry: NatEntry, key: string): void {
    const keys = entry.keys as string[];
    const at = keys.indexOf(key);
    if (at < 0) return;
    keys.splice(at, 1);
    if (this.#byKey.get(key) === entry) this.#byKey.delete(key);
  }

  /** Adds a function called when an entry is added or its owner reports a change. */
  addChangeListener(listener: (entry: NatEntry) => void): void {
    this.#changeListeners.push(listener);
  }

  /** Tells the change listeners that `entry` changed (its state or relay port). */
  changed(entry: NatEntry): void {
    for (const listener of this.#changeListeners) listener(entry);
  }

  /** Adds a function called after any entry is removed, with the reason. */
  addRemoveListener(listener: (entry: NatEntry, reason: RemoveReason) => void): void {
    this.#listeners.push(listener);
  }

  /**
   * Marks an entry answered (a reply was seen): it is evicted to make room only when no
   * unanswered entry is left. Idempotent; nothing for an assured entry.
   */
  answered(entry: NatEntry): void {
    if (!this.#unanswered.delete(entry.id) || entry.assured) return;
    this.#evictable.set(entry.id, entry);
  }

  /** Marks an entry assured: it is no longer evicted to make room. */
  assure(entry: NatEntry): void {
    entry.assured = true;
    this.#unanswered.delete(entry.id);
    this.#evictable.delete(entry.id);
  }

  /** Removes an entry now (e.g. its connection closed). */
  remove(entry: NatEntry, reason: RemoveReason = "closed"): void {
    if (this.#entries.get(entry.id) === entry) this.#remove(entry, reason);
  }

  /** Removes every expired entry; call it periodically. Returns how many went. */
  sweep(): number {
    const now = this.options.now();
    this.#lastSweep = now;
    let removed = 0;
    for (const entry of this.#entries.values()) {
      if (now - entry.lastSeen > entry.timeoutMs) {
        this.#remove(entry, "expired");
        removed++;
      }
    }
    return removed;
  }

  /** Removes every entry. */
  flush(): void {
    for (const entry of [...this.#entries.values()]) this.#remove(entry, "flushed");
  }

  /** Entries in creation order. */
  entries(): IterableIterator<NatEntry> {
    return this.#entries.values();
  }

  /** Counters. */
  stats(): NatTableStats {
    return { entries: this.#entries.size, ...this.#stats };
  }

  #makeRoom(): boolean {
    // Expired entries go first; only then is a live flow sacrificed. The full scan runs at
    // most once a second so that a flood of new flows stays O(1) per flow.
    if (this.options.now() - this.#lastSweep >= 1000 && this.sweep() > 0) return true;
    const unanswered = this.#unanswered.values().next();
    if (!unanswered.done) {
      this.#stats.evictedUnanswered++;
      this.#remove(unanswered.value, "evicted");
      return true;
    }
    const oldest = this.#evictable.values().next();
    if (oldest.done) return false;
    this.#remove(oldest.value, "evicted");
    return true;
  }

  #remove(entry: NatEntry, reason: RemoveReason): void {
    this.#entries.delete(entry.id);
    this.#unanswered.delete(entry.id);
    this.#evictable.delete(entry.id);
    for (const key of entry.keys) {
      if (this.#byKey.get(key) === entry) this.#byKey.delete(key);
    }
    if (reason === "expired") this.#stats.expired++;
    else if (reason === "evicted") this.#stats.evicted++;
    this.options.onRemove?.(entry, reason);
    for (const listener of this.#listeners) listener(entry, reason);
  }
}
