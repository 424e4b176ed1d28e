/**
 * Maps control requests to the daemon: `status`, `nat`, `config-get`, `config-set`, `start`,
 * `stop`. Results: the StatusReport, the NatEntryView list, a `{ key: value }` record (the whole
 * configuration, or the one key asked), the ConfigChange, and `{ state }`.
 *
 * @module
 */

import type { Daemon } from "../daemon/daemon.ts";
import type { ControlHandler } from "./server.ts";
import type { Request } from "./protocol.ts";

/** The handler serving `daemon`. */
export function controlHandler(daemon: Daemon): ControlHandler {
  return async (raw: unknown) => {
    const request = raw as Partial<Request> | null;
    if (typeof request !== "object" || request === null || typeof request.cmd !== "string") {
      throw new Error("bad request: expected an object with a cmd");
    }
    const r = request as Request;
    switch (r.cmd) {
      case "status":
        return daemon.status();
      case "nat":
        return daemon.nat();
      case "config-get": {
        const config: Record<string, unknown> = { ...daemon.config, relay_ip: daemon.relayIp };
        if (r.key === undefined) return config;
        if (!(r.key in config) && r.key !== "metrics") {
          throw new Error(`unknown key ${r.key}; keys: ${Object.keys(config).join(", ")}`);
        }
        return { [r.key]: config[r.key] };
      }
      case "config-set":
        if (typeof r.key !== "string" || typeof r.value !== "string") {
          throw new Error("bad request: config-set needs a key and a value, as text");
        }
        return await daemon.setConfig(r.key, r.value);
      case "start":
        await daemon.start();
        return { state: daemon.state };
      case "stop":
        await daemon.stop();
        return { state: daemon.state };
      default:
        throw new Error(`unknown command ${(r as { cmd: string }).cmd}`);
    }
  };
}
