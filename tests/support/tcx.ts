/**
 * The tc programs attached by tcx links to a lab namespace's interfaces, counted from inside it
 * (bpf(2) BPF_PROG_QUERY, as krelay itself would): what the flowtable leaves, or not.
 *
 * @module
 */

import type { Lab, Where } from "../../src/lab/topology.ts";

const BPF = new URL("../../src/steering/bpf.ts", import.meta.url).href;
const FLOWTABLE = new URL("../../src/steering/udp_flowtable.ts", import.meta.url).href;

/** Programs on each Ethernet interface of `where`, ingress and egress: "name in/out". */
export async function tcxPrograms(lab: Lab, where: Where): Promise<Record<string, string>> {
  const script = `
    import { AttachType, progQuery } from "${BPF}";
    import { namespaceInterfaces } from "${FLOWTABLE}";
    const out = {};
    for (const [name, index] of namespaceInterfaces()) {
      out[name] = progQuery(index, AttachType.TcxIngress) + "/" +
        progQuery(index, AttachType.TcxEgress);
    }
    console.log(JSON.stringify(out));`;
  const r = await lab.exec(where, [Deno.execPath(), "eval", "--no-check", script], {
    check: true,
    timeoutMs: 30_000,
  });
  return JSON.parse(r.stdout);
}
