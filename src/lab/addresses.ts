/**
 * The lab's fixed addresses and interface names (documentation ranges only), the ones the
 * design notes use for the packet flows T1-T4 and U1-U4.
 *
 * ```
 *  <p>-cli  eth0 198.51.100.10/24 + 198.51.100.11/24       default via 198.51.100.1
 *     | veth
 *  <p>-rly  cli0 198.51.100.1/24
 *           srv0 203.0.113.1/24 (a bridge; ports srv0-1, srv0-2)
 *     | veth (srv0-1)          | veth (srv0-2)
 *  <p>-srv  eth0 203.0.113.10  <p>-srv2  eth0 203.0.113.20  default via 203.0.113.1
 * ```
 *
 * Dual stack: each interface also has an IPv6 address ({@link LAB_ADDR6}, added `nodad`):
 * client 2001:db8:1::10 (+ ::11), relay 2001:db8:1::1 and 2001:db8:2::1, servers
 * 2001:db8:2::10 and ::20, each routing through the relay.
 *
 * @example
 * ```ts
 * import { LAB_ADDR } from "./addresses.ts";
 * LAB_ADDR.server; // "203.0.113.10"
 * ```
 * @module
 */

/** Addresses of the lab's hosts. */
export const LAB_ADDR = {
  /** The client's primary address (source of its connections by default). */
  client: "198.51.100.10",
  /** A second address on the client's interface, so one namespace can act as two clients. */
  client2: "198.51.100.11",
  /** The relay on the client side: what clients talk to. */
  relay: "198.51.100.1",
  /** The relay on the server side: the servers' default gateway. */
  relayServerSide: "203.0.113.1",
  /** The first real server. */
  server: "203.0.113.10",
  /** The optional second real server, on the same link as the first. */
  server2: "203.0.113.20",
  /** What the lab's DNS servers answer for `lab.example` (and every name under it). */
  dnsAnswer: "203.0.113.80",
} as const;

/** The IPv6 addresses of the lab's hosts, beside {@link LAB_ADDR}'s (2001:db8::/32 only). */
export const LAB_ADDR6 = {
  client: "2001:db8:1::10",
  client2: "2001:db8:1::11",
  relay: "2001:db8:1::1",
  relayServerSide: "2001:db8:2::1",
  server: "2001:db8:2::10",
  server2: "2001:db8:2::20",
  /** What the lab's DNS servers answer for AAAA queries of `lab.example`. */
  dnsAnswer: "2001:db8:2::80",
} as const;

/** Prefix length of both lab IPv6 subnets. */
export const LAB_PREFIX_LEN6 = 64;

/** Prefix length of both lab subnets. */
export const LAB_PREFIX_LEN = 24;

/** The client-side subnet. */
export const CLIENT_NET = "198.51.100.0/24";

/** The server-side subnet. */
export const SERVER_NET = "203.0.113.0/24";

/** The name every lab DNS server answers with {@link LAB_ADDR}.dnsAnswer. */
export const LAB_DOMAIN = "lab.example";

/** A TXT name whose answer names the DNS server that gave it ("srv1" or "srv2"). */
export const WHOAMI_TXT = "whoami.lab.example";

/** Interface names inside the namespaces. */
export const LAB_IF = {
  /** The client's only interface (and each server's). */
  host: "eth0",
  /** The relay's client-side interface. */
  relayClient: "cli0",
  /**
   * The relay's server-side interface: a bridge, so both servers sit on one link and rules
   * written for `-o srv0` / `-i srv0` see traffic to either server.
   */
  relayServer: "srv0",
  /** The bridge port that leads to the first server. */
  relayServerPort1: "srv0-1",
  /** The bridge port that leads to the second server. */
  relayServerPort2: "srv0-2",
} as const;
