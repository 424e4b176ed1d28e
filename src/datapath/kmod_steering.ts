/**
 * Steering by krelay.ko: instead of iptables rules, the module's netfilter hooks select the
 * relayed packets and queue them (kmod/README.md). krelay writes the selection to
 * /proc/krelay and turns the hooks on and off through the module's `start` parameter, and
 * reads back what others wrote there (`echo ... > /proc/krelay/real_ip`) to follow it.
 *
 * @module
 */

import type { SteeringSpec } from "./iptables_rules.ts";
import { UDP_FIRST_MARK } from "./nft_nat.ts";
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
 * The /proc/krelay files for a spec, as the module reads them. `first_mark` is the mark of a
 * new UDP flow's first packet (queued whatever its port); "0" selects none.
 */
export function renderKmodFiles(spec: SteeringSpec): Record<string, string> {
  return {
    relay_ip: spec.relayIp,
    real_ip: spec.realIp,
    udp_ports: spec.udpPorts.join(","),
    tcp_ports: spec.tcpPorts.join(","),
    gport: String(spec.gport),
    first_mark: spec.udpPorts.length > 0 ? String(UDP_FIRST_MARK) : "0",
    queue: String(spec.queue),
  };
}

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
    if (spec.kernelNat) {
      throw new Error("kernel_nat selects packets by conntrack state: use the iptables datapath");
    }
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
    for (const [name, value] of Object.entries(renderKmodFiles(spec))) {
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
