/**
 * The queue selection by krelay.ko: instead of iptables rules, the module's netfilter hooks
 * select the packets krelay decides and queue them (kmod/README.md). krelay writes the selection to
 * /proc/krelay and turns the hooks on and off through the module's `start` parameter, and
 * reads back what others wrote there (`echo ... > /proc/krelay/real_ip`) to follow it.
 *
 * @module
 */

import { UDP_FIRST_MARK } from "./marks.ts";
import { ipv4Spec, kernelUdpPorts, type SteeringSpec } from "./steering.ts";
import type { Steering } from "./steering.ts";

/** Where the module's files are. */
export interface KmodPaths {
  proc: string;
  start: string;
}

/** The module's files on a machine where it is loaded. */
export const KMOD_PATHS: KmodPaths = {
  proc: "/proc/krelay",
  start: "/sys/module/krelay/parameters/start",
};

/** True when krelay.ko is loaded (its /proc directory exists). */
export function kmodLoaded(paths: KmodPaths = KMOD_PATHS): boolean {
  try {
    return Deno.statSync(paths.proc).isDirectory;
  } catch {
    return false;
  }
}

/**
 * The /proc/krelay files for a spec, as the module reads them. The hooks queue what the
 * iptables selection does (iptables.ts): packets carrying `first_mark` (each new UDP flow's
 * first packet, marked by the kernel path's nftables chain), and every packet of the scripted
 * services in `udp_ports` and `tcp_ports`.
 */
export function renderKmodFiles(spec: SteeringSpec): Record<string, string> {
  return {
    relay_ip: spec.relayIp ?? "",
    real_ip: spec.realIp ?? "",
    udp_ports: spec.scriptedUdpPorts.join(","),
    tcp_ports: spec.scriptedTcpPorts.join(","),
    first_mark: kernelUdpPorts(spec).length > 0 ? String(UDP_FIRST_MARK) : "0",
    gport: String(spec.gport),
    queue: String(spec.queue),
  };
}

/** Why krelay.ko cannot steer a relay without IPv4 servers. */
export const KMOD_IPV4_ONLY = "krelay.ko steers IPv4 clients: a relay of IPv6 servers only " +
  "runs with datapath iptables";

/** What the module's files say now. */
export interface KmodState {
  gport: number;
  realIp: string;
  started: boolean;
}

/** {@link Steering} through krelay.ko. */
export class KmodSteering implements Steering {
  /** What krelay last wrote, so that an update writes only what changed. */
  #written: Record<string, string> = {};

  constructor(readonly paths: KmodPaths = KMOD_PATHS) {}

  async install(spec: SteeringSpec): Promise<void> {
    this.#written = {};
    await this.#write(spec);
    await this.#file(this.paths.start, "1");
  }

  async update(spec: SteeringSpec): Promise<void> {
    await this.#write(spec);
  }

  async remove(): Promise<void> {
    // Unloaded meanwhile: nothing is steered any more either way.
    if (!kmodLoaded(this.paths)) return;
    await this.#file(this.paths.start, "0");
  }

  /** Reads gport, real_ip and start back from the module. */
  async observe(): Promise<KmodState> {
    const read = (p: string) => Deno.readTextFile(p).then((t) => t.trim());
    const [gport, realIp, start] = await Promise.all([
      read(`${this.paths.proc}/gport`),
      read(`${this.paths.proc}/real_ip`),
      read(this.paths.start),
    ]);
    return { gport: Number(gport), realIp, started: start === "1" || start === "Y" };
  }

  async #write(spec: SteeringSpec): Promise<void> {
    const four = ipv4Spec(spec);
    // The module's hooks are IPv4's (IPv6 is steered by the kernel path's rules alone).
    if (four === undefined) throw new Error(KMOD_IPV4_ONLY);
    for (const [name, value] of Object.entries(renderKmodFiles(four))) {
      if (this.#written[name] === value) continue;
      await this.#file(`${this.paths.proc}/${name}`, value);
      this.#written[name] = value;
    }
  }

  async #file(path: string, value: string): Promise<void> {
    try {
      await Deno.writeTextFile(path, `${value}\n`);
    } catch (e) {
      throw new Error(`krelay.ko: writing "${value}" to ${path} failed: ${(e as Error).message}`);
    }
  }
}
