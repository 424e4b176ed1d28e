/**
 * The packet marks krelay's steering sets and matches, in one place: every mechanism (nftables,
 * iptables, the policy route, krelay.ko) must agree on them, and none imports another for them.
 *
 * @module
 */

/**
 * Answers of real servers to the relay's transparent sockets, for chain `answers` to readdress
 * after conntrack (nft.ts); earlier versions' policy route matched it (tproxy_route.ts).
 */
export const TPROXY_MARK = 0x4b52;

/** A new UDP flow's first packet, marked by nft.ts's chain for the queue to select. */
export const UDP_FIRST_MARK = TPROXY_MARK + 1;

/**
 * An ICMP error about a relayed UDP flow, marked by nft.ts's chains for the queue to select:
 * krelay translates it as kernel NAT would (its addresses, outer and embedded).
 */
export const ICMP_ERROR_MARK = TPROXY_MARK + 2;

/**
 * An ICMPv6 error about a relayed UDP flow, marked by the ip6 table (icmp6_rules.ts) as it
 * goes to the table's queue chain, as ICMP_ERROR_MARK is for IPv4: krelay translates it (nft
 * cannot keep the ICMPv6 checksum right when it rewrites the quoted packet). Earlier
 * versions' ip6tables rules selected it by this mark.
 */
export const ICMP6_MARK = TPROXY_MARK + 3;

/**
 * A bit (not a value: it is or-ed in, and cleared as the packet leaves) that nft.ts's UDP
 * rules set on a datagram they translated, for the flowtable's egress program to learn its
 * flow from (udp_flowtable.ts).
 */
export const FLOW_LEARN_MARK = 0x00100000;
