/**
 * The kernel's own counters of an NFQUEUE queue, from /proc/net/netfilter/nfnetlink_queue (of
 * the reading process's network namespace): what it dropped because the queue was full
 * (queue_dropped) or because krelay's socket could not take the message (user_dropped), and
 * its packet id sequence (packets ever queued). krelay's own counters cannot see these losses.
 *
 * @example
 * ```ts
 * import { readKernelQueue } from "./kernel_counters.ts";
 * const q = readKernelQueue(0); // undefined when queue 0 is not bound
 * if (q) console.log(q.queueDropped);
 * ```
 * @module
 */

/** One queue's line of /proc/net/netfilter/nfnetlink_queue. */
export interface KernelQueueCounters {
  queue: number;
  /** Netlink port id of the process bound to the queue. */
  portId: number;
  /** Packets waiting for a verdict now. */
  waiting: number;
  /** Packets dropped because `waiting` reached the queue's maximum length. */
  queueDropped: number;
  /** Packets dropped because the netlink socket's buffer was full (ENOBUFS). */
  userDropped: number;
  /** The id the kernel gave the last packet queued: packets queued since the queue was bound. */
  idSequence: number;
}

/** Where the kernel lists the bound queues. */
export const NFQUEUE_PROC = "/proc/net/netfilter/nfnetlink_queue";

/**
 * Parses the file's text: one line per bound queue, "queue portid waiting copy_mode
 * copy_range queue_dropped user_dropped id_sequence 1". Lines that do not fit are skipped.
 */
export function parseKernelQueues(text: string): KernelQueueCounters[] {
  const out: KernelQueueCounters[] = [];
  for (const line of text.split("\n")) {
    const f = line.trim().split(/\s+/).map(Number);
    if (f.length < 8 || f.slice(0, 8).some((n) => !Number.isFinite(n))) continue;
    out.push({
      queue: f[0],
      portId: f[1],
      waiting: f[2],
      queueDropped: f[5],
      userDropped: f[6],
      idSequence: f[7],
    });
  }
  return out;
}

/** Queue `queue`'s counters now, or undefined when it is not bound (or the file is missing). */
export function readKernelQueue(
  queue: number,
  path = NFQUEUE_PROC,
): KernelQueueCounters | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch {
    return undefined;
  }
  return parseKernelQueues(text).find((q) => q.queue === queue);
}
