/**
 * Following krelay.ko's files: what others write to /proc/krelay/gport and real_ip, and to the
 * module's start parameter, becomes krelay's own (as the specification's tcp_relay followed
 * them). Looked at once a second by the daemon; never while a start is installing the steering,
 * when the files still hold the module's old values.
 *
 * @module
 */

import { addressFamilies } from "../config/addresses.ts";
import type { Config } from "../config/schema.ts";
import type { Steering } from "../steering/steering.ts";
import { logger } from "../system/log.ts";
import type { RelayState } from "./reports.ts";
import { firstServer } from "./settings.ts";

const log = logger("daemon");

/** What the follower reads and changes of the daemon. */
export interface Followed {
  readonly config: Config;
  readonly state: RelayState;
  setConfig(key: string, text: string): Promise<unknown>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** Follows the module's files for a daemon. */
export class ModuleFollower {
  #busy = false;

  /**
   * @param reinstall puts krelay's own values back in the module's files, after refusing the
   * module's
   */
  constructor(
    private readonly observe: NonNullable<Steering["observe"]>,
    private readonly daemon: Followed,
    private readonly reinstall: () => Promise<void>,
  ) {}

  /** One look at the files, unless the previous one is still under way. */
  tick(): void {
    if (this.#busy) return;
    this.#busy = true;
    this.#follow()
      .catch((e) => log.error("following the module failed: {error}", { error: String(e) }))
      .finally(() => (this.#busy = false));
  }

  async #follow(): Promise<void> {
    const d = this.daemon;
    const seen = await this.observe();
    if (seen.gport !== d.config.gport) await this.#adopt("gport", String(seen.gport));
    // The module holds one address: the first IPv4 server. Another one written there is a list
    // of that one server, as the specification's single real_ip was (IPv6 servers stay).
    if (seen.realIp !== firstServer(d.config)) {
      const v6 = addressFamilies(d.config.real_ip).v6;
      await this.#adopt("real_ip", [seen.realIp, ...v6].join(","));
    }
    if (seen.started && d.state === "stopped") {
      log.info("krelay.ko was started: relaying");
      await d.start();
    } else if (!seen.started && d.state === "started") {
      log.info("krelay.ko was stopped: not relaying");
      await d.stop();
    }
  }

  async #adopt(key: "gport" | "real_ip", value: string): Promise<void> {
    try {
      await this.daemon.setConfig(key, value);
    } catch (e) {
      // The module took a value krelay cannot use (e.g. a gport that is taken): put ours back.
      log.error("{key} {value} from krelay.ko refused: {error}", { key, value, error: String(e) });
      if (this.daemon.state === "started") await this.reinstall();
    }
  }
}
