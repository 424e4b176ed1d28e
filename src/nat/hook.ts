/**
 * Netfilter hook numbers (NF_INET_*), as the kernel reports them for a queued packet.
 *
 * @module
 */

/** Where in the IPv4 path a packet was seen. */
export const Hook = {
  PreRouting: 0,
  LocalIn: 1,
  Forward: 2,
  LocalOut: 3,
  PostRouting: 4,
} as const;
/** One of {@link Hook}'s values. */
export type Hook = typeof Hook[keyof typeof Hook];
