/**
 * An in-memory {@link Datapath} for tests: packets are injected by the test, and the
 * verdicts handed back are recorded for assertions. Needs no privileges and no kernel.
 *
 * @module
 */

import {
  type Datapath,
  type DatapathStats,
  Hook,
  type PacketVerdict,
  type QueuedPacket,
} from "./queue.ts";

/** What {@link MemoryDatapath.inject} needs: the bytes, and any other field to override. */
export type PacketInit = Pick<QueuedPacket, "bytes"> & Partial<QueuedPacket>;

/**
 * A {@link Datapath} backed by an array.
 *
 * @example
 * ```ts ignore
 * const dp = new MemoryDatapath();
 * dp.inject({ bytes: udpDatagram, hook: Hook.PreRouting });
 * const [packet] = await dp.receive(100);
 * dp.send([{ packet, verdict: Verdict.Accept, mangled: false }]);
 * assertEquals(dp.sent.length, 1);
 * ```
 */
export class MemoryDatapath implements Datapath {
  /** Every verdict handed to {@link send}, in order. */
  readonly sent: PacketVerdict[] = [];
  #queue: QueuedPacket[] = [];
  #nextId = 1;
  #waiter: (() => void) | null = null;
  #closed = false;
  readonly #stats: DatapathStats = { received: 0, verdicts: 0, enobufs: 0, errors: 0 };

  /**
   * Queues a packet for the next {@link receive}, waking one that is waiting. Fields not
   * given default to: the next id (from 1), queue 0, PreRouting, no flags, interfaces 0.
   * Returns the packet as it will be received.
   */
  inject(init: PacketInit): QueuedPacket {
    const packet: QueuedPacket = {
      id: init.id ?? this.#nextId,
      queue: init.queue ?? 0,
      hook: init.hook ?? Hook.PreRouting,
      bytes: init.bytes,
      checksumPartial: init.checksumPartial ?? false,
      gso: init.gso ?? false,
      indev: init.indev ?? 0,
      outdev: init.outdev ?? 0,
    };
    this.#nextId = Math.max(this.#nextId, packet.id + 1);
    if (this.#closed) return packet;
    this.#queue.push(packet);
    this.#wake();
    return packet;
  }

  /** Resolves with every injected packet, as soon as there is one or after `timeoutMs`. */
  receive(timeoutMs: number): Promise<QueuedPacket[]> {
    if (this.#closed) return Promise.resolve([]);
    if (this.#waiter !== null) {
      return Promise.reject(new Error("memory datapath: receive() is already in flight"));
    }
    if (this.#queue.length > 0) return Promise.resolve(this.#take());
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.#wake(), Math.max(0, timeoutMs));
      this.#waiter = () => {
        clearTimeout(timer);
        this.#waiter = null;
        resolve(this.#take());
      };
    });
  }

  /** Records the verdicts (after close, ignores them). */
  send(verdicts: PacketVerdict[]): void {
    if (this.#closed) return;
    for (const v of verdicts) this.sent.push(v);
    this.#stats.verdicts += verdicts.length;
  }

  /** Counters so far (a copy). */
  stats(): DatapathStats {
    return { ...this.#stats };
  }

  /** Drops queued packets and resolves a waiting receive() with []. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue = [];
    this.#wake();
  }

  #wake(): void {
    this.#waiter?.();
  }

  #take(): QueuedPacket[] {
    const packets = this.#queue;
    this.#queue = [];
    this.#stats.received += packets.length;
    return packets;
  }
}
