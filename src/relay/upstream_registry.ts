/**
 * Connections to real servers made before their client's handshake (syn_gate.ts holds the
 * client's SYN until the server has answered), waiting for the relay thread that accepts the
 * client's connection to take them. Shared by the threads: a SharedArrayBuffer, keyed by the
 * client's address and port and the service port; the value is the socket's descriptor, which
 * every thread of the process can use. One writer (the main thread) puts and expires; any
 * thread takes. Each operation holds a spin lock for a few array reads.
 *
 * Buckets of {@link SLOTS} entries, no probing: a full bucket refuses the put, and the caller
 * lets the connection go the way it goes without this registry.
 *
 * @example
 * ```ts ignore
 * const registry = new UpstreamRegistry();          // main thread
 * registry.put(client, clientPort, 80, fd, now);
 * const other = new UpstreamRegistry(registry.buffer); // a relay thread
 * other.take(client, clientPort, 80);               // fd, or -1
 * ```
 * @module
 */

const BUCKETS = 1024;
/** Entries per bucket. */
export const SLOTS = 8;
// Words per entry: client, ports (client port << 16 | service port), fd, when put (ms).
const WORDS = 4;
const FREE = -1;

/** Times are kept in whole seconds: a clock in ms would overflow 32 bits after 24 days. */
const seconds = (ms: number) => Math.floor(ms / 1000) | 0;

/** See the module documentation. */
export class UpstreamRegistry {
  readonly #words: Int32Array;
  /** The shared memory, to pass to another thread. */
  readonly buffer: SharedArrayBuffer;

  /** A new registry, or a view of another's (`buffer` from {@link UpstreamRegistry.buffer}). */
  constructor(buffer?: SharedArrayBuffer) {
    this.buffer = buffer ?? new SharedArrayBuffer(4 * (1 + BUCKETS * SLOTS * WORDS));
    this.#words = new Int32Array(this.buffer);
    // Word 0 is the lock; every fd word starts free.
    if (buffer === undefined) {
      for (let i = 1 + 2; i < this.#words.length; i += WORDS) this.#words[i] = FREE;
    }
  }

  /**
   * Records `fd` for the client's connection to `servicePort` at `now` (ms); false when its
   * bucket is full.
   */
  put(client: number, clientPort: number, servicePort: number, fd: number, now: number): boolean {
    const ports = (clientPort << 16) | servicePort;
    const base = this.#bucket(client, ports);
    this.#lock();
    try {
      for (let i = base; i < base + SLOTS * WORDS; i += WORDS) {
        if (this.#words[i + 2] !== FREE) continue;
        this.#words[i] = client | 0;
        this.#words[i + 1] = ports;
        this.#words[i + 2] = fd;
        this.#words[i + 3] = seconds(now);
        return true;
      }
      return false;
    } finally {
      this.#unlock();
    }
  }

  /** Takes the connection recorded for the client's connection to `servicePort`: fd or -1. */
  take(client: number, clientPort: number, servicePort: number): number {
    const ports = (clientPort << 16) | servicePort;
    const base = this.#bucket(client, ports);
    this.#lock();
    try {
      for (let i = base; i < base + SLOTS * WORDS; i += WORDS) {
        const fd = this.#words[i + 2];
        if (fd === FREE || this.#words[i] !== (client | 0) || this.#words[i + 1] !== ports) {
          continue;
        }
        this.#words[i + 2] = FREE;
        return fd;
      }
      return -1;
    } finally {
      this.#unlock();
    }
  }

  /** Whether a connection is recorded for the client's connection to `servicePort`. */
  has(client: number, clientPort: number, servicePort: number): boolean {
    const ports = (clientPort << 16) | servicePort;
    const base = this.#bucket(client, ports);
    for (let i = base; i < base + SLOTS * WORDS; i += WORDS) {
      const fd = Atomics.load(this.#words, i + 2);
      if (fd !== FREE && this.#words[i] === (client | 0) && this.#words[i + 1] === ports) {
        return true;
      }
    }
    return false;
  }

  /** Removes the entries put before `before` (ms) and returns their descriptors (to close). */
  expire(before: number): number[] {
    const limit = seconds(before);
    const out: number[] = [];
    this.#lock();
    try {
      for (let i = 1; i < this.#words.length; i += WORDS) {
        if (this.#words[i + 2] === FREE || this.#words[i + 3] >= limit) continue;
        out.push(this.#words[i + 2]);
        this.#words[i + 2] = FREE;
      }
    } finally {
      this.#unlock();
    }
    return out;
  }

  /** Entries recorded now. */
  get size(): number {
    let n = 0;
    for (let i = 1 + 2; i < this.#words.length; i += WORDS) if (this.#words[i] !== FREE) n++;
    return n;
  }

  #bucket(client: number, ports: number): number {
    const h = Math.imul((client ^ Math.imul(ports, 0x9e3779b1)) | 0, 0x85ebca6b) >>> 0;
    return 1 + (h >>> 22) % BUCKETS * SLOTS * WORDS;
  }

  #lock(): void {
    while (Atomics.compareExchange(this.#words, 0, 0, 1) !== 0) {
      // Held for a few reads by another thread.
    }
  }

  #unlock(): void {
    Atomics.store(this.#words, 0, 0);
  }
}
