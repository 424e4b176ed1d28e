/**
 * The IPv6 UDP flows the kernel carries, read back from krelay's `ip6 krelay` table (nft.ts):
 * krelay rewrites an IPv6 flow's first packet but keeps no record of it (udp6_rules.ts), so
 * the kernel's `udp_replies` set (each flow's whole tuple) is where they are listed, for
 * `krelay nat` and the status.
 *
 * @module
 */

import { canonicalIpv6 } from "../packet/ipv6_address.ts";
import type { CommandRunner } from "../system/command.ts";
import { NFT_TABLE } from "./nft.ts";
import { nftElements } from "./nft_json.ts";

/** One IPv6 UDP flow of the kernel's set. */
export interface Ipv6UdpFlow {
  client: string;
  clientPort: number;
  server: string;
  servicePort: number;
  /** Seconds until the flow expires unless it talks again, and its timeout. */
  expiresSeconds: number;
  timeoutSeconds: number;
}

/** The flows in `nft -j list set ip6 krelay udp_replies`'s output; [] when there are none. */
export function parseIpv6Flows(json: string): Ipv6UdpFlow[] {
  const flows: Ipv6UdpFlow[] = [];
  for (const e of nftElements(json, "set")) {
    const elem = (e as { elem?: Record<string, unknown> }).elem;
    const tuple = (elem?.val as { concat?: unknown[] } | undefined)?.concat;
    if (!Array.isArray(tuple) || tuple.length !== 4) continue;
    const [server, servicePort, client, clientPort] = tuple;
    if (typeof server !== "string" || typeof client !== "string") continue;
    flows.push({
      client: canonicalIpv6(client),
      clientPort: Number(clientPort),
      server: canonicalIpv6(server),
      servicePort: Number(servicePort),
      expiresSeconds: Number(elem?.expires ?? 0),
      timeoutSeconds: Number(elem?.timeout ?? 0),
    });
  }
  return flows;
}

/** Reads the kernel's IPv6 UDP flows; [] when the table is absent (IPv6 not steered). */
export async function readIpv6Flows(run: CommandRunner, nft = "nft"): Promise<Ipv6UdpFlow[]> {
  const r = await run(nft, ["-j", "list", "set", "ip6", NFT_TABLE, "udp_replies"]);
  return r.code === 0 ? parseIpv6Flows(r.stdout) : [];
}
