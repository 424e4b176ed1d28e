/**
 * The relay's own ports toward real servers (y in flows T3/T4): a range outside the kernel's
 * ephemeral range, handed out first-in first-out so that a released port is reused as late as
 * possible (the server may still hold the old connection in TIME_WAIT).
 *
 * @example
 * ```ts
 * import { PortPool } from "./port_pool.ts";
 * const pool = new PortPool(20000, 20009);
 * const y = pool.acquire(); // 20000
 * if (y !== undefined) pool.release(y);
 * ```
 * @module
 */

/** A FIFO pool of ports in [min, max]. */
export class PortPool {
  // A ring buffer of free ports: O(1) acquire and release, no allocation.
  readonly #ring: Uint16Array;
  readonly #inUse: Uint8Array;
  #head = 0;
  #count: number;

  constructor(readonly min: number, readonly max: number) {
    if (!(min >= 1 && max <= 65535 && min <= max)) {
      throw new RangeError(`bad port range ${min}-${max}`);
    }
    const size = max - min + 1;
    this.#ring = new Uint16Array(size);
    for (let i = 0; i < size; i++) this.#ring[i] = min + i;
    this.#inUse = new Uint8Array(size);
    this.#count = size;
  }

  /** Ports free now. */
  get free(): number {
    return this.#count;
  }

  /** Ports in the pool. */
  get size(): number {
    return this.#ring.length;
  }

  /** True when `port` belongs to the pool's range. */
  contains(port: number): boolean {
    return port >= this.min && port <= this.max;
  }

  /** The port free longest, or undefined when none is free. */
  acquire(): number | undefined {
    if (this.#count === 0) return undefined;
    const port = this.#ring[this.#head];
    this.#head = (this.#head + 1) % this.#ring.length;
    this.#count--;
    this.#inUse[port - this.min] = 1;
    return port;
  }

  /** Returns a port; releasing a port that is not in use is ignored (idempotent). */
  release(port: number): void {
    if (!this.contains(port) || this.#inUse[port - this.min] === 0) return;
    this.#inUse[port - this.min] = 0;
    this.#ring[(this.#head + this.#count) % this.#ring.length] = port;
    this.#count++;
  }
}
