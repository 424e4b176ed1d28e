/**
 * One IP family of the lab as the end-to-end tests address it, so that a test of an edge can
 * run one body over IPv4 and IPv6: the addresses, krelay's flags, the firewall command and
 * the ICMP or ICMPv6 (type, code) pairs an edge produces.
 *
 * @module
 */

import { LAB_ADDR, LAB_ADDR6 } from "../../src/lab/addresses.ts";
import { LAB_RELAY_FLAGS, LAB_RELAY_FLAGS_DUAL } from "../../src/lab/krelay_process.ts";

/** An ICMP (type, code) pair, as tests/fixtures/icmp_probe.py reports it. */
export type IcmpKind = readonly [number, number];

/** One IP family of the lab. */
export interface LabFamily {
  /** The name tests print and branch on. */
  readonly name: "IPv4" | "IPv6";
  /** The relay's, the server's and the client's addresses. */
  readonly relay: string;
  readonly server: string;
  readonly client: string;
  /** The relay's address as the host of a URL. */
  readonly relayHost: string;
  /** krelay's flags for the lab (IPv6 comes with IPv4, as a dual-stack relay has it). */
  readonly flags: readonly string[];
  /** The firewall command of the family. */
  readonly iptables: "iptables" | "ip6tables";
  /** curl's flags that keep it to the family. */
  readonly curl: readonly string[];
  /** dig's arguments for the lab's name in the family. */
  readonly digName: readonly string[];
  /** The ICMP errors the edges produce. */
  readonly icmp: {
    readonly portUnreachable: IcmpKind;
    readonly tooBig: IcmpKind;
    readonly timeExceeded: IcmpKind;
  };
}

/** The lab's IPv4 side. */
export const IPV4: LabFamily = {
  name: "IPv4",
  relay: LAB_ADDR.relay,
  server: LAB_ADDR.server,
  client: LAB_ADDR.client,
  relayHost: LAB_ADDR.relay,
  flags: LAB_RELAY_FLAGS,
  iptables: "iptables",
  curl: [],
  digName: ["lab.example"],
  icmp: { portUnreachable: [3, 3], tooBig: [3, 4], timeExceeded: [11, 0] },
};

/** The lab's IPv6 side. */
export const IPV6: LabFamily = {
  name: "IPv6",
  relay: LAB_ADDR6.relay,
  server: LAB_ADDR6.server,
  client: LAB_ADDR6.client,
  relayHost: `[${LAB_ADDR6.relay}]`,
  flags: LAB_RELAY_FLAGS_DUAL,
  iptables: "ip6tables",
  curl: ["-6"],
  digName: ["lab.example", "AAAA"],
  icmp: { portUnreachable: [1, 4], tooBig: [2, 0], timeExceeded: [3, 0] },
};
