/**
 * Which queue selection a configuration runs with, in one place: krelay.ko's hooks
 * (`datapath = "kmod"`, or `"auto"` with the module loaded) or iptables rules, always beside the
 * kernel path; and why a configuration cannot run here.
 *
 * @example
 * ```ts ignore
 * const why = datapathRefusal(config);
 * if (why === undefined) steeringFor(config).install(spec);
 * ```
 * @module
 */

import { IptablesSteering } from "./iptables_steering.ts";
import { KernelPath } from "./kernel_path.ts";
import { insertQueueRule } from "./nft_queue.ts";
import { KMOD_PATHS, kmodLoaded, type KmodPaths, KmodSteering } from "./kmod.ts";
import { ComposedSteering } from "./steering.ts";
import { UdpFlowtable } from "./udp_flowtable.ts";

/** The configuration's say in the matter. */
export type DatapathChoice = "auto" | "kmod" | "iptables";

/** Whether krelay.ko selects the queued packets: asked for, or `auto` with the module loaded. */
export function useKmod(datapath: DatapathChoice, paths: KmodPaths = KMOD_PATHS): boolean {
  return datapath === "kmod" || (datapath === "auto" && kmodLoaded(paths));
}

/** Why `datapath` cannot run on this machine, or undefined. */
export function datapathRefusal(
  datapath: DatapathChoice,
  paths: KmodPaths = KMOD_PATHS,
): string | undefined {
  if (datapath === "kmod" && !kmodLoaded(paths)) {
    return "datapath kmod: krelay.ko is not loaded (no /proc/krelay); build it with " +
      "`krelay kmod build` and load it with insmod";
  }
  return undefined;
}

/** The kernel path with the queue selection `datapath` chooses. */
export function steeringFor(datapath: DatapathChoice): ComposedSteering {
  const kmod = useKmod(datapath);
  return new ComposedSteering(
    // Without krelay.ko, the table's own chain queues (nft_queue.ts), and iptables only what
    // is not on the default path (scripted services, held SYNs).
    new KernelPath(
      undefined,
      undefined,
      undefined,
      undefined,
      undefined,
      kmod ? undefined : insertQueueRule,
      undefined,
      // Established IPv4 UDP flows forwarded at ingress (udp_flowtable.ts), either datapath.
      (config) => UdpFlowtable.open(config),
    ),
    kmod ? new KmodSteering() : new IptablesSteering(),
  );
}

/**
 * gport and real_ip as krelay.ko's /proc files hold them: with the module they stand in for
 * the defaults, as in the specification (the file and flags still win).
 */
export async function kmodDefaults(
  paths: KmodPaths = KMOD_PATHS,
): Promise<Record<string, unknown>> {
  const read = (name: string) => Deno.readTextFile(`${paths.proc}/${name}`).then((t) => t.trim());
  return { gport: Number(await read("gport")), real_ip: await read("real_ip") };
}
