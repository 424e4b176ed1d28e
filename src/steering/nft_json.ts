/**
 * The elements in `nft -j list set|map ...`'s output, for the readers of the table's UDP
 * flows (kernel_udp_flows.ts, ipv6_flows.ts), each of which knows its own element's shape.
 *
 * @module
 */

/**
 * The elements of every set (`kind` "set") or map ("map") in `nft -j` output, in order; []
 * when the output is not JSON.
 */
export function nftElements(json: string, kind: "set" | "map"): unknown[] {
  let doc: unknown;
  try {
    doc = JSON.parse(json);
  } catch {
    return [];
  }
  const elements: unknown[] = [];
  for (const item of (doc as { nftables?: unknown[] }).nftables ?? []) {
    const elems = (item as Record<string, { elem?: unknown[] } | undefined>)[kind]?.elem ?? [];
    for (const e of elems) elements.push(e);
  }
  return elements;
}
