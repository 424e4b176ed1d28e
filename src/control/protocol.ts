/**
 * The control protocol between `krelay run` and the commands that talk to it (`status`, `nat`,
 * `config`, `start`, `stop`): one JSON request per connection on a Unix socket, one JSON
 * response line back.
 *
 * @module
 */

export { LIVE_KEYS, type LiveKey } from "../config/schema.ts";

/**
 * A request. `config-set` carries the value as text, parsed like a command-line flag;
 * `script-load` an absolute file and the services as `udp:53,tcp:80` (default: every
 * configured service).
 */
export type Request =
  | { cmd: "status" }
  | { cmd: "nat" }
  | { cmd: "config-get"; key?: string }
  | { cmd: "config-set"; key: string; value: string }
  | { cmd: "start" }
  | { cmd: "stop" }
  | { cmd: "script-load"; name: string; file: string; services?: string }
  | { cmd: "script-unload"; name: string }
  | { cmd: "script-list" };

/** A response: the result, or an error message for the user. */
export type Response<T = unknown> = { ok: true; result: T } | { ok: false; error: string };

export type { ScriptInfo } from "../script/host.ts";
export type { ConfigChange, NatEntryView, RelayState, StatusReport } from "../daemon/reports.ts";
