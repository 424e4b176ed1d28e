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
// Words per entry: the client's address as IPv6 (4 words; IPv4 as ::ffff:a.b.c.d), ports
// (client port << 16 | service port), fd, when put (s), and one unused (a power of two).
const WORDS = 8;
const PORTS = 4;
const FD = 5;
const TIME = 6;
const FREE = -1;
// Words before the entries: the lock, and the count of entries.
const LOCK = 0;
const COUNT = 1;
const HEAD = 2;
/** The third word of an IPv4-mapped address: IPv4 and IPv6 keys never meet. */
const MAPPED = 0xffff;

/** A client address as the registry keys it: four 32-bit words. */
type Key = readonly [number, number, number, number];

function key4(client: number): Key {
  return [0, 0, MAPPED, client | 0];
}

function key6(client: Uint8Array): Key {
  const v = new DataView(client.buffer, client.byteOffset, 16);
  return [v.getInt32(0), v.getInt32(4), v.getInt32(8), v.getInt32(12)];
}

/** Times are kept in whole seconds: a clock in ms would overflow 32 bits after 24 days. */
const seconds = (ms: number) => Math.floor(ms / 1000) | 0;

/** See the module documentation. */
export class UpstreamRegistry {
  readonly #words: Int32Array;
  /** The shared memory, to pass to another thread. */
  readonly buffer: SharedArrayBuffer;

  /** A new registry, or a view of another's (`buffer` from {@link UpstreamRegistry.buffer}). */
  constructor(buffer?: SharedArrayBuffer) {
    this.buffer = buffer ?? new SharedArrayBuffer(4 * (HEAD + BUCKETS * SLOTS * WORDS));
    this.#words = new Int32Array(this.buffer);
    // Every fd word starts free.
    if (buffer === undefined) {
      for (let i = HEAD + FD; i < this.#words.length; i += WORDS) this.#words[i] = FREE;
    }
  }

  /**
   * Records `fd` for the client's connection to `servicePort` at `now` (ms); false when its
   * bucket is full.
   */
  put(client: number, clientPort: number, servicePort: number, fd: number, now: number): boolean {
    return this.#put(key4(client), clientPort, servicePort, fd, now);
  }

  /** {@link UpstreamRegistry.put} for an IPv6 client (its 16-byte address). */
  put6(
    client: Uint8Array,
    clientPort: number,
    servicePort: number,
    fd: number,
    now: number,
  ): boolean {
    return this.#put(key6(client), clientPort, servicePort, fd, now);
  }

  /** Takes the connection recorded for the client's connection to `servicePort`: fd or -1. */
  take(client: number, clientPort: number, servicePort: number): number {
    return this.#take(key4(client), clientPort, servicePort);
  }

  /** {@link UpstreamRegistry.take} for an IPv6 client. */
  take6(client: Uint8Array, clientPort: number, servicePort: number): number {
    return this.#take(key6(client), clientPort, servicePort);
  }

  /** Whether a connection is recorded for the client's connection to `servicePort`. */
  has(client: number, clientPort: number, servicePort: number): boolean {
    return this.#has(key4(client), clientPort, servicePort);
  }

  /** {@link UpstreamRegistry.has} for an IPv6 client. */
  has6(client: Uint8Array, clientPort: number, servicePort: number): boolean {
    return this.#has(key6(client), clientPort, servicePort);
  }

  #put(key: Key, clientPort: number, servicePort: number, fd: number, now: number): boolean {
    const ports = (clientPort << 16) | servicePort;
    const base = this.#bucket(key, ports);
    this.#lock();
    try {
      for (let i = base; i < base + SLOTS * WORDS; i += WORDS) {
        if (this.#words[i + FD] !== FREE) continue;
        for (let w = 0; w < 4; w++) this.#words[i + w] = key[w];
        this.#words[i + PORTS] = ports;
        this.#words[i + FD] = fd;
        this.#words[i + TIME] = seconds(now);
        this.#words[COUNT]++;
        return true;
      }
      return false;
    } finally {
      this.#unlock();
    }
  }

  #take(key: Key, clientPort: number, servicePort: number): number {
    const ports = (clientPort << 16) | servicePort;
    const base = this.#bucket(key, ports);
    this.#lock();
    try {
      for (let i = base; i < base + SLOTS * WORDS; i += WORDS) {
        const fd = this.#words[i + FD];
        if (fd === FREE || !this.#matches(i, key, ports)) continue;
        this.#words[i + FD] = FREE;
        this.#words[COUNT]--;
        return fd;
      }
      return -1;
    } finally {
      this.#unlock();
    }
  }

  #has(key: Key, clientPort: number, servicePort: number): boolean {
    const ports = (clientPort << 16) | servicePort;
    const base = this.#bucket(key, ports);
    for (let i = base; i < base + SLOTS * WORDS; i += WORDS) {
      const fd = Atomics.load(this.#words, i + FD);
      if (fd !== FREE && this.#matches(i, key, ports)) return true;
    }
    return false;
  }

  #matches(i: number, key: Key, ports: number): boolean {
    const w = this.#words;
    return w[i + PORTS] === ports && w[i + 3] === key[3] && w[i] === key[0] &&
      w[i + 1] === key[1] && w[i + 2] === key[2];
  }

  /** Removes the entries put before `before` (ms) and returns their descriptors (to close). */
  expire(before: number): number[] {
    const limit = seconds(before);
    const out: number[] = [];
    this.#lock();
    try {
      for (let i = HEAD; i < this.#words.length; i += WORDS) {
        if (this.#words[i + FD] === FREE || this.#words[i + TIME] >= limit) continue;
        out.push(this.#words[i + FD]);
        this.#words[i + FD] = FREE;
        this.#words[COUNT]--;
      }
    } finally {
      this.#unlock();
    }
    return out;
  }

  /** Entries recorded now (kept as they change: the gate asks at every SYN). */
  get size(): number {
    return Atomics.load(this.#words, COUNT);
  }

  #bucket(key: Key, ports: number): number {
    const client = key[0] ^ key[1] ^ key[2] ^ key[3];
    const h = Math.imul((client ^ Math.imul(ports, 0x9e3779b1)) | 0, 0x85ebca6b) >>> 0;
    return HEAD + (h >>> 22) % BUCKETS * SLOTS * WORDS;
  }

  #lock(): void {
    while (Atomics.compareExchange(this.#words, LOCK, 0, 1) !== 0) {
      // Held for a few reads by another thread.
    }
  }

  #unlock(): void {
    Atomics.store(this.#words, LOCK, 0);
  }
}
