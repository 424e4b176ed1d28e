/**
 * The commands that talk to a running `krelay run` over its control socket: `status`, `nat`,
 * `config get`, `config set`, `start` and `stop`.
 *
 * Exit codes: 0 done; 1 krelay refused or could not be reached (the reason on stderr, after
 * `krelay <command>: `); 2 a usage error.
 *
 * @module
 */

import { Command, InvalidArgumentError } from "commander";
import { loadConfig } from "../config/load.ts";
import { configKeys, valueToText } from "../config/text_values.ts";
import { DEFAULT_SOCKET, DEFAULT_TIMEOUT_MS, request } from "../control/client.ts";
import {
  type ConfigChange,
  LIVE_KEYS,
  type NatEntryView,
  type Request,
  type StatusReport,
} from "../control/protocol.ts";
import { renderConfig, renderNat, renderStatus } from "../control/render.ts";
import { addConfigFlags, configFromFlags } from "./config_flags.ts";

/** The environment variable naming the control socket when `--socket` is not given. */
export const SOCKET_ENV = "KRELAY_SOCKET";

/** Exit code when krelay refuses or cannot be reached. */
export const EXIT_FAILED = 1;
/** Exit code for a usage error (commander's own errors, an unknown config key). */
export const EXIT_USAGE = 2;

/** Options every control command takes. */
export interface ControlOptions {
  socket?: string;
  timeout?: number;
  json?: boolean;
}

/** `--socket`, else $KRELAY_SOCKET, else the default path. */
export function socketPath(option: string | undefined): string {
  if (option !== undefined) return option;
  try {
    const fromEnv = Deno.env.get(SOCKET_ENV);
    if (fromEnv) return fromEnv;
  } catch {
    // No permission to read the environment: the default it is.
  }
  return DEFAULT_SOCKET;
}

/** Colours only for a terminal, and never when NO_COLOR is set (https://no-color.org). */
export function useColor(): boolean {
  try {
    return Deno.stdout.isTerminal() && (Deno.env.get("NO_COLOR") ?? "") === "";
  } catch {
    return false;
  }
}

function parseTimeout(text: string): number {
  const seconds = Number(text);
  if (!Number.isFinite(seconds) || seconds <= 0) {
    throw new InvalidArgumentError("must be a number of seconds, more than 0");
  }
  return seconds;
}

/**
 * A command with the options and exit codes every control command shares; `path` is how the
 * user types it ("config get").
 */
export function controlCommand(name: string, description: string, path = name): Command {
  return usageExit(new Command(name), path)
    .description(description)
    .option(
      "-s, --socket <path>",
      `krelay run's control socket (default: $${SOCKET_ENV}, else ${DEFAULT_SOCKET})`,
    )
    .option(
      "--timeout <seconds>",
      `how long to wait for krelay's answer (default: ${DEFAULT_TIMEOUT_MS / 1000})`,
      parseTimeout,
    );
}

/** Commander's usage errors exit with 1; ours are 2, apart from krelay's own refusals. */
export function usageExit(command: Command, path: string): Command {
  return command.showHelpAfterError(`(see ${path === "" ? "krelay" : `krelay ${path}`} --help)`)
    .exitOverride(
      (error) => Deno.exit(error.exitCode === 0 ? 0 : EXIT_USAGE),
    );
}

/** Prints the reason after `krelay <command>: ` and exits with {@link EXIT_FAILED}. */
function fail(command: string, message: string): never {
  console.error(`krelay ${command}: ${message}`);
  Deno.exit(EXIT_FAILED);
}

/** Sends `req` and returns the result; a refusal or an unreachable krelay ends the process. */
export async function ask<T>(
  command: string,
  options: ControlOptions,
  req: Request,
): Promise<T> {
  try {
    return await request<T>(socketPath(options.socket), req, {
      timeoutMs: options.timeout === undefined ? undefined : options.timeout * 1000,
    });
  } catch (e) {
    fail(command, (e as Error).message);
  }
}

/** A config key known to the schema, or a usage error listing the keys. */
function checkKey(command: Command, path: string, key: string): void {
  const keys = configKeys().map(([k]) => k);
  if (!keys.includes(key)) {
    command.error(`krelay ${path}: unknown key '${key}'; the keys are: ${keys.join(", ")}`, {
      exitCode: EXIT_USAGE,
      code: "krelay.unknownKey",
    });
  }
}

/** One key's value from a `config-get` answer: `{ key: value }` (or the bare value). */
function valueOf(result: unknown, key: string): unknown {
  if (typeof result === "object" && result !== null && !Array.isArray(result)) {
    return (result as Record<string, unknown>)[key];
  }
  return result;
}

/** Breaks `text` at spaces into indented lines of at most 80 columns, for help texts. */
function wrap(text: string, indent: string): string {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    if (line !== "" && indent.length + line.length + 1 + word.length > 80) {
      lines.push(line);
      line = word;
    } else {
      line = line === "" ? word : `${line} ${word}`;
    }
  }
  if (line !== "") lines.push(line);
  return lines.map((l) => indent + l).join("\n");
}

/** `from`/`to` of a config change; an unset value shows as "(unset)". */
function changeText(value: unknown): string {
  const text = valueToText(value);
  return text === "" ? "(unset)" : text;
}

/** The `status` command. */
export function statusCli(): Command {
  return controlCommand(
    "status",
    "show whether krelay relays, its configuration and every counter (packets by flow and " +
      "reason, NFQUEUE, TCP connections, NAT table)",
  )
    .option("--json", "print the status report as JSON")
    .action(async (options: ControlOptions) => {
      const report = await ask<StatusReport>("status", options, { cmd: "status" });
      console.log(
        options.json
          ? JSON.stringify(report, null, 2)
          : renderStatus(report, { color: useColor() }),
      );
    });
}

/** The `nat` command. */
export function natCli(): Command {
  return controlCommand(
    "nat",
    "list the NAT table: one row per relayed flow (client, relay, the relay's port toward the " +
      "server, server, age, idle time, state, bytes each way)",
  )
    .option("--json", "print the entries as a JSON array")
    .action(async (options: ControlOptions) => {
      const entries = await ask<NatEntryView[]>("nat", options, { cmd: "nat" });
      console.log(
        options.json ? JSON.stringify(entries, null, 2) : renderNat(entries, { color: useColor() }),
      );
    });
}

/** The `config` command, with `get` and `set`. */
export function configCli(): Command {
  const get = controlCommand(
    "get",
    "print the running configuration (key = value), or one key's value alone (for scripts)",
    "config get",
  )
    .argument("[key]", "a config key, like real_ip")
    .option("--json", "print the configuration as a JSON object (one key: its value as JSON)")
    .addHelpText("after", `\nLists are written like 53,5353; an unset key prints nothing.`)
    .action(async (key: string | undefined, options: ControlOptions, command: Command) => {
      if (key === undefined) {
        const config = await ask<Record<string, unknown>>("config get", options, {
          cmd: "config-get",
        });
        console.log(options.json ? JSON.stringify(config, null, 2) : renderConfig(config));
        return;
      }
      checkKey(command, "config get", key);
      const result = await ask<unknown>("config get", options, { cmd: "config-get", key });
      const value = valueOf(result, key);
      console.log(options.json ? JSON.stringify(value ?? null) : valueToText(value));
    });

  const set = controlCommand(
    "set",
    "change a config key while krelay runs; krelay validates the value and refuses a bad one",
    "config set",
  )
    .argument("<key>", "a config key, like real_ip")
    .argument("<value>", "the new value, as on the command line (lists: 53,5353)")
    .addHelpText(
      "after",
      `\nKeys that can change while krelay runs:\n${wrap(LIVE_KEYS.join(", "), "  ")}\n` +
        "New flows use the new value; flows already relayed keep theirs.\n" +
        "Prints KEY: FROM -> TO, e.g.\n  $ krelay config set udp_ports 53,5353\n  udp_ports: 53 -> 53,5353",
    )
    .action(async (key: string, value: string, options: ControlOptions, command: Command) => {
      checkKey(command, "config set", key);
      const change = await ask<ConfigChange>("config set", options, {
        cmd: "config-set",
        key,
        value,
      });
      console.log(`${change.key ?? key}: ${changeText(change.from)} -> ${changeText(change.to)}`);
    });

  return usageExit(new Command("config"), "config")
    .description(
      "check a configuration file, or show or change the configuration of the running krelay",
    )
    .addCommand(configCheckCli())
    .addCommand(get)
    .addCommand(set);
}

/** Exit code of `config check` for a configuration that is not valid. */
export const EXIT_INVALID_CONFIG = 2;

/**
 * `config check [file]`: validates a config file and the flags given, as `krelay run` would,
 * and prints the effective configuration or every error; it changes nothing and needs no
 * running krelay (as `nginx -t`).
 */
export function configCheckCli(): Command {
  const command = usageExit(new Command("check"), "config check")
    .description(
      "validate a config file (and any flags) as `krelay run` would, changing nothing; print " +
        "the effective configuration, or every error (exit 2)",
    )
    .argument("[file]", "the TOML config file (default: none, only the defaults and flags)")
    .option("--json", "print the effective configuration as JSON");
  addConfigFlags(command);
  return command.addHelpText(
    "after",
    "\nExit codes: 0 valid, 2 not valid (every error on stderr) or a usage error.\n" +
      "  $ krelay config check /etc/krelay/krelay.toml",
  ).action(async (file: string | undefined, options: Record<string, unknown>) => {
    const result = await loadConfig({ file, flags: configFromFlags(options) });
    if (!result.ok) {
      console.error(
        `krelay config check: ${file ?? "the configuration"} is not valid:\n  ` +
          result.errors.join("\n  "),
      );
      Deno.exit(EXIT_INVALID_CONFIG);
    }
    const config = result.config as Record<string, unknown>;
    console.log(options.json === true ? JSON.stringify(config, null, 2) : renderConfig(config));
  });
}

/** The `start` or `stop` command. */
function stateCli(cmd: "start" | "stop", description: string): Command {
  return controlCommand(cmd, description).action(async (options: ControlOptions) => {
    const result = await ask<{ state?: string } | undefined>(cmd, options, { cmd });
    console.log(`krelay ${result?.state ?? (cmd === "start" ? "started" : "stopped")}`);
  });
}

/** The `start` command. */
export function startCli(): Command {
  return stateCli(
    "start",
    "make a stopped krelay relay again (steering rules back in place); prints the new state",
  );
}

/** The `stop` command. */
export function stopCli(): Command {
  return stateCli(
    "stop",
    "stop relaying without ending krelay run (steering rules removed, traffic passes " +
      "untouched); prints the new state",
  );
}
