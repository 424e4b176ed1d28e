/**
 * The boundary between krelay and the kernel's packet path: receive a batch of queued
 * packets, hand back one verdict per packet. Two implementations: {@link NfqueueDatapath}
 * (NFQUEUE over FFI) and {@link MemoryDatapath} (in-memory, for tests).
 *
 * @module
 */

import { Hook } from "../nat/hook.ts";
export { Hook };

/** Netfilter verdicts used by krelay (NF_DROP, NF_ACCEPT). */
export const Verdict = { Drop: 0, Accept: 1 } as const;
export type Verdict = typeof Verdict[keyof typeof Verdict];

/** One packet handed to user space by the kernel. */
export interface QueuedPacket {
  /** Kernel packet id, echoed in the verdict. */
  id: number;
  /** Queue number it arrived on. */
  queue: number;
  /** Netfilter hook where it was queued. */
  hook: Hook;
  /** The IPv4 datagram. May be modified in place before the verdict. */
  bytes: Uint8Array;
  /**
   * The L4 checksum is not final (NFQA_SKB_CSUMNOTREADY, CHECKSUM_PARTIAL): it holds only
   * the pseudo-header sum. A rewritten packet then needs a full L4 checksum.
   */
  checksumPartial: boolean;
  /** The packet is a GSO super-packet (NFQA_SKB_GSO), possibly larger than the MTU. */
  gso: boolean;
  /** Input and output interface indexes, 0 when absent. */
  indev: number;
  outdev: number;
}

/** The verdict for one packet; `mangled` sends `packet.bytes` back to the kernel. */
export interface PacketVerdict {
  packet: QueuedPacket;
  verdict: Verdict;
  mangled: boolean;
  /** Sets the packet's mark (skb->mark), e.g. for a NAT rule to act on. */
  mark?: number;
}

/** Counters every datapath keeps. */
export interface DatapathStats {
  /** Packets received from the kernel. */
  received: number;
  /** Verdicts sent. */
  verdicts: number;
  /** Times the kernel reported ENOBUFS (it dropped queued packets: our socket overflowed). */
  enobufs: number;
  /** Netlink messages that could not be parsed, and errors reported by the kernel. */
  errors: number;
}

/** A source of queued packets and a sink for their verdicts. */
export interface Datapath {
  /**
   * Waits up to `timeoutMs` for packets and resolves with all that are ready (possibly none).
   * The returned packets' bytes stay valid until the next call of `receive`.
   */
  receive(timeoutMs: number): Promise<QueuedPacket[]>;
  /**
   * The queue's socket, for a caller that waits on it with other descriptors, and
   * {@link Datapath.drain}, which takes what is ready without waiting (bytes valid until the
   * next drain or receive). Absent where the datapath has no descriptor.
   */
  readonly fd?: number;
  drain?(): QueuedPacket[];
  /** Sends the verdicts (mangled packets carry their bytes). Never throws on a kernel error: counts it. */
  send(verdicts: PacketVerdict[]): void;
  /** Counters so far. */
  stats(): DatapathStats;
  /** Releases the queue and the socket. Idempotent. */
  close(): void;
}
