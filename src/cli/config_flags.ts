/**
 * Command-line flags generated from the configuration schema, so that every config key has a
 * flag with the same name (`real_ip` -> `--real-ip`), description and default. A boolean key
 * is a pair of switches, `--tcp-conntrack` / `--no-tcp-conntrack`; the older form with a value
 * (`--tcp-conntrack false`) is still taken, with a warning (see {@link legacyBooleanFlags}). A
 * key that also takes a word (`tcp_hold_syn`: auto) has both switches and `--x WORD`.
 *
 * @module
 */

import type { Command } from "commander";
import { configKeys, takesBoolean, valueFromText } from "../config/text_values.ts";

/** `real_ip` -> `realIp`, commander's name for `--real-ip`. */
function camel(key: string): string {
  return key.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
}

/** `real_ip` -> `real-ip`. */
function flagName(key: string): string {
  return key.replaceAll("_", "-");
}

/** Adds a flag for every config key (two for a boolean one: `--x` and `--no-x`). */
export function addConfigFlags(command: Command): Command {
  for (const [key, schema] of configKeys()) {
    let help = schema.description ?? key;
    if (schema.enum) help += ` (${schema.enum.join(", ")})`;
    if (schema.type === "boolean") {
      const name = flagName(key);
      const fallback = schema.default === undefined
        ? ""
        : ` [default: --${schema.default ? "" : "no-"}${name}]`;
      command.option(`--${name}`, help + fallback);
      command.option(`--no-${name}`, `the opposite of --${name}`);
      continue;
    }
    if (takesBoolean(schema)) {
      // "auto" or a boolean: `--x` is true, `--no-x` false, `--x auto` the other values.
      const name = flagName(key);
      const values = schema.anyOf!.map((s) => s.const ?? "true, false").join(", ");
      command.option(`--${name} [value]`, `${help} (${values}) [default: ${schema.default}]`);
      command.option(`--no-${name}`, `the opposite of --${name}`);
      continue;
    }
    if (schema.default !== undefined) help += ` [default: ${String(schema.default)}]`;
    command.option(`--${flagName(key)} <${schema.type === "array" ? "list" : "value"}>`, help);
  }
  return command;
}

/** The config values given as flags (raw, for validation), keyed by config key. */
export function configFromFlags(options: Record<string, unknown>): Record<string, unknown> {
  const raw: Record<string, unknown> = {};
  for (const [key] of configKeys()) {
    const value = options[camel(key)];
    if (typeof value === "string") raw[key] = valueFromText(key, value);
    else if (typeof value === "boolean") raw[key] = value;
  }
  return raw;
}

/**
 * Rewrites the deprecated `--x true|false` and `--x=true|false` of a boolean config key into
 * `--x` / `--no-x`, calling `warn` once for each; every other argument is left as it is.
 * Kept for one release (0.9) so that scripts written for the older form keep working.
 */
export function legacyBooleanFlags(
  args: readonly string[],
  warn: (message: string) => void = (m) => console.error(m),
): string[] {
  const booleans = new Set(
    configKeys().filter(([, s]) => s.type === "boolean").map(([k]) => flagName(k)),
  );
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") {
      out.push(...args.slice(i));
      break;
    }
    const m = /^--([a-z0-9-]+)(?:=(.*))?$/.exec(arg);
    if (m === null || !booleans.has(m[1])) {
      out.push(arg);
      continue;
    }
    const value = m[2] ?? args[i + 1];
    if (value !== "true" && value !== "false") {
      out.push(arg);
      continue;
    }
    if (m[2] === undefined) i++;
    const flag = value === "true" ? `--${m[1]}` : `--no-${m[1]}`;
    warn(`krelay: '${arg}${m[2] === undefined ? ` ${value}` : ""}' is deprecated; write ${flag}`);
    out.push(flag);
  }
  return out;
}
