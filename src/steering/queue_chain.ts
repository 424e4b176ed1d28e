/**
 * The chain of each of krelay's tables (`ip krelay`, `ip6 krelay`) that holds the NFQUEUE rule:
 * the packets krelay must decide jump there. nft_queue.ts inserts the rule at the chain's head,
 * before its `accept`, so that without it (krelay.ko's hooks select IPv4's packets) a jump
 * accepts as before.
 *
 * @module
 */

/** The chain's name. */
export const QUEUE_CHAIN = "to_queue";

/** The verdict statement of a rule whose packets go to the queue. */
export const TO_QUEUE = `jump ${QUEUE_CHAIN}`;
