/**
 * The IPv4 UDP flows the kernel carries, read back from krelay's `ip krelay` table (nft.ts):
 * `udp_flows` (client, client port, service port -> server, refreshed by requests) and
 * `udp_answered` (the same, created by a flow's first answer and refreshed by replies). A
 * flow of the first but not of the second has had no answer. Read only when krelay needs it
 * (table pressure, the passive health of several servers): a listing costs in proportion to
 * the flows.
 *
 * Evicting a flow deletes its entries from `udp_flows` and `udp_replies` in one transaction.
 * nft 1.0.6 has no `destroy element`, and `delete element` fails the whole transaction when
 * one element is gone (expired since the listing): each is added first (a no-op when it is
 * there), then deleted.
 *
 * @module
 */

import type { CommandRunner } from "../system/command.ts";
import { NFT_TABLE } from "./nft.ts";
import { nftElements } from "./nft_json.ts";

/** One flow of `udp_flows` or `udp_answered`. */
export interface KernelUdpFlow {
  client: string;
  clientPort: number;
  servicePort: number;
  server: string;
  /** Seconds until it expires unless it talks again (whole seconds, as nft lists them). */
  expiresSeconds: number;
}

/** The flow's key in both maps: "client:port:service-port". */
export function flowKey(client: string, clientPort: number, servicePort: number): string {
  return `${client}:${clientPort}:${servicePort}`;
}

/** The elements of `nft -j list map ip krelay NAME`'s output; [] when there are none. */
export function parseUdpMap(json: string): KernelUdpFlow[] {
  const flows: KernelUdpFlow[] = [];
  for (const e of nftElements(json, "map")) {
    // [{ elem: { val: { concat: [client, port, service] }, expires } }, server]
    if (!Array.isArray(e) || e.length !== 2 || typeof e[1] !== "string") continue;
    const elem = (e[0] as { elem?: Record<string, unknown> }).elem;
    const key = (elem?.val as { concat?: unknown[] } | undefined)?.concat;
    if (!Array.isArray(key) || key.length !== 3 || typeof key[0] !== "string") continue;
    flows.push({
      client: key[0],
      clientPort: Number(key[1]),
      servicePort: Number(key[2]),
      server: e[1],
      expiresSeconds: Number(elem?.expires ?? 0),
    });
  }
  return flows;
}

/** Lists one of the table's maps; [] when the table is absent. */
export async function readUdpMap(
  run: CommandRunner,
  name: "udp_flows" | "udp_answered",
  nft = "nft",
): Promise<KernelUdpFlow[]> {
  const r = await run(nft, ["-j", "list", "map", "ip", NFT_TABLE, name]);
  return r.code === 0 ? parseUdpMap(r.stdout) : [];
}

/** The keys ({@link flowKey}) of the answered flows. */
export async function readAnswered(run: CommandRunner, nft = "nft"): Promise<Set<string>> {
  const flows = await readUdpMap(run, "udp_answered", nft);
  return new Set(flows.map((f) => flowKey(f.client, f.clientPort, f.servicePort)));
}

/** A kernel flow and whether it has had an answer. */
export interface KernelUdpFlowState extends KernelUdpFlow {
  answered: boolean;
}

/** Every flow of `udp_flows`, each with whether `udp_answered` has it. */
export async function readFlows(run: CommandRunner, nft = "nft"): Promise<KernelUdpFlowState[]> {
  const flows = await readUdpMap(run, "udp_flows", nft);
  const answered = await readAnswered(run, nft);
  return flows.map((f) => ({
    ...f,
    answered: answered.has(flowKey(f.client, f.clientPort, f.servicePort)),
  }));
}

/**
 * The `count` flows to evict: unanswered ones only, the longest idle first (the soonest to
 * expire: every unanswered flow has the same timeout).
 */
export function pickEvictions(flows: readonly KernelUdpFlowState[], count: number) {
  if (count <= 0) return [];
  return flows.filter((f) => !f.answered)
    .sort((a, b) => a.expiresSeconds - b.expiresSeconds)
    .slice(0, count);
}

/** An `nft -f` script removing `flows` from `udp_flows` and `udp_replies` (see above). */
export function evictionScript(flows: readonly KernelUdpFlow[]): string {
  if (flows.length === 0) return "";
  const t = `ip ${NFT_TABLE}`;
  const keys = flows.map((f) => `${f.client} . ${f.clientPort} . ${f.servicePort}`);
  const tuples = flows.map((f) => `${f.server} . ${f.servicePort} . ${f.client} . ${f.clientPort}`);
  const withServer = flows.map((f, i) => `${keys[i]} timeout 1s : ${f.server}`);
  return [
    `add element ${t} udp_flows { ${withServer.join(", ")} }`,
    `delete element ${t} udp_flows { ${keys.join(", ")} }`,
    `add element ${t} udp_replies { ${tuples.map((x) => `${x} timeout 1s`).join(", ")} }`,
    `delete element ${t} udp_replies { ${tuples.join(", ")} }`,
    "",
  ].join("\n");
}

/** Evicts `flows`; throws with nft's message when it fails. */
export async function evictFlows(
  run: CommandRunner,
  flows: readonly KernelUdpFlow[],
  nft = "nft",
): Promise<void> {
  if (flows.length === 0) return;
  const r = await run(nft, ["-f", "-"], evictionScript(flows));
  if (r.code !== 0) throw new Error(`evicting UDP flows: ${r.stderr.trim()}`);
}
