/**
 * The SYN gate where the connections are (`tcp_hold_syn` true with relay threads): each relay
 * thread reads an NFQUEUE of its own, numbered by the CPU it keeps to, and the `KRELAY_SYN`
 * rule spreads the held SYNs over those queues by the CPU that received each
 * (`--queue-balance` with `--queue-cpu-fanout`, iptables.ts). The thread holds its SYNs in the
 * poller it already waits in (a {@link SynGate} on the relay's poller): the connection to the
 * server starts there, and the verdict goes when it is decided. No other thread wakes for a
 * SYN, and the SYN let go on is processed in the thread's own send, on its CPU, so its own
 * listener (SO_INCOMING_CPU) accepts it and takes the connection from the shared registry.
 *
 * @module
 */

import { NfqueueDatapath } from "../queue/nfqueue.ts";
import { type PacketVerdict, type QueuedPacket, Verdict } from "../queue/queue.ts";
import { Ipv4Packet, parseIpv4Packet } from "../packet/ipv4_packet.ts";
import { Ipv6Packet, parseIpv6Packet } from "../packet/ipv6_packet.ts";
import { type Decide, SynGate, type SynGateCounters } from "../relay/syn_gate.ts";
import { type Poller, Ready } from "../relay/poller.ts";
import type { TcpRelay } from "../relay/tcp_relay.ts";
import type { TcpTargets } from "../nat/tcp_targets.ts";
import type { UpstreamRegistry } from "../relay/upstream_registry.ts";

/** What a thread's gate is made of: the thread's relay (its poller), targets and registry. */
export interface ThreadGateParts {
  relay: TcpRelay;
  targets: TcpTargets;
  registry: UpstreamRegistry;
  settings: () => { connectTimeoutMs: number };
  /** The clock the registry's other users keep (the main thread's). */
  now: () => number;
}

/** A relay thread's SYN gate and its queue. See the module documentation. */
export class ThreadGate {
  readonly #queue: NfqueueDatapath;
  readonly #gate: SynGate;
  /** The queue's number. */
  readonly queue: number;
  readonly #poller: Poller;
  /**
   * Verdicts decided in this round of the poller (a batch of SYNs, servers' answers), sent
   * together at its end: one send for all.
   */
  #batch: PacketVerdict[] = [];
  readonly #flush = () => {
    const batch = this.#batch;
    this.#batch = [];
    if (batch.length > 0) this.#queue.send(batch);
  };

  private constructor(queue: NfqueueDatapath, number: number, parts: ThreadGateParts) {
    const poller = parts.relay.poller;
    if (poller === undefined) throw new Error("the relay thread does not listen yet");
    this.#queue = queue;
    this.#poller = poller;
    this.queue = number;
    this.#gate = new SynGate({
      targets: parts.targets,
      registry: parts.registry,
      settings: parts.settings,
      now: parts.now,
      poller,
    });
    poller.watch(queue.fd, Ready.In, () => this.#ready());
  }

  /** Binds queue `queue` and holds the SYNs it brings; rejects if the queue cannot be bound. */
  static async open(queue: number, parts: ThreadGateParts): Promise<ThreadGate> {
    const datapath = await NfqueueDatapath.open({
      queue,
      // A full queue lets SYNs go on unheld (a flood), as the gate's own limit does.
      failOpen: true,
      maxLen: 4096,
      rcvbuf: 1 << 20,
      bufferSize: 256 * 1024,
      maxBatch: 64,
    });
    try {
      return new ThreadGate(datapath, queue, parts);
    } catch (e) {
      datapath.close();
      throw e;
    }
  }

  /** The gate's counters. */
  get counters(): SynGateCounters {
    return this.#gate.counters;
  }

  /** Drops the SYNs still held, closes the connections not taken and releases the queue. */
  async close(): Promise<void> {
    this.#poller.unwatch(this.#queue.fd);
    await this.#gate.close();
    this.#flush();
    this.#queue.close();
  }

  #ready(): void {
    for (const packet of this.#queue.drain()) {
      if (!this.#hold(packet)) this.#decided({ packet, verdict: Verdict.Accept, mangled: false });
    }
  }

  /** Sends `verdict` with the others of this round, at its end. */
  #decided(verdict: PacketVerdict): void {
    if (this.#batch.push(verdict) === 1) this.#poller.defer(this.#flush);
  }

  /** Gives a client's SYN to the gate; false for anything else (it goes on). */
  #hold(packet: QueuedPacket): boolean {
    const decide: Decide = (accept) =>
      this.#decided({ packet, verdict: accept ? Verdict.Accept : Verdict.Drop, mangled: false });
    if (packet.bytes[0] >>> 4 === 6) {
      if (!SynGate.isSyn6(packet.bytes)) return false;
      const syn = parseIpv6Packet(packet.bytes);
      if (!(syn instanceof Ipv6Packet)) return false;
      this.#gate.hold6(syn, decide);
      return true;
    }
    if (!SynGate.isSyn(packet.bytes)) return false;
    const syn = parseIpv4Packet(packet.bytes);
    if (!(syn instanceof Ipv4Packet)) return false;
    this.#gate.hold(syn, decide);
    return true;
  }
}
