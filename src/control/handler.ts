/**
 * Maps control requests to the daemon: `status`, `nat`, `config-get`, `config-set`, `start`,
 * `stop`, `script-load`, `script-unload`, `script-list`. Results: the StatusReport, the
 * NatEntryView list, a `{ key: value }` record (the whole configuration, or the one key asked),
 * the ConfigChange, `{ state }`, the loaded script's ScriptInfo, `{ unloaded }`, and the
 * ScriptInfo list.
 *
 * @module
 */

import type { Daemon } from "../daemon/daemon.ts";
import type { ControlHandler } from "./server.ts";
import type { Request } from "./protocol.ts";
import { configuredServices, parseServices } from "../script/services.ts";

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
        const config: Record<string, unknown> = {
          ...daemon.config,
          relay_ip: [daemon.relayIp, daemon.relayIp6].filter((a) => a !== undefined).join(","),
        };
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
      case "script-load": {
        if (typeof r.name !== "string" || typeof r.file !== "string") {
          throw new Error("bad request: script-load needs a name and a file");
        }
        const c = daemon.config;
        const services = typeof r.services === "string"
          ? parseServices(r.services)
          : configuredServices(c.udp_ports, c.tcp_ports);
        return await daemon.scripts.load(r.name, r.file, services);
      }
      case "script-unload":
        if (!(await daemon.scripts.unload(String(r.name)))) {
          throw new Error(`no script named ${r.name} is loaded`);
        }
        return { unloaded: r.name };
      case "script-list":
        return daemon.scripts.list();
      default:
        throw new Error(`unknown command ${(r as { cmd: string }).cmd}`);
    }
  };
}
