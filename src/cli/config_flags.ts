/**
 * Command-line flags generated from the configuration schema, so that every config key has a
 * flag with the same name (`real_ip` -> `--real-ip`), description and default.
 *
 * @module
 */

import type { Command } from "commander";
import { configKeys, valueFromText } from "../config/text_values.ts";

/** `real_ip` -> `realIp`, commander's name for `--real-ip`. */
function camel(key: string): string {
  return key.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
}

/** Adds a flag for every config key. */
export function addConfigFlags(command: Command): Command {
  for (const [key, schema] of configKeys()) {
    const flag = `--${key.replaceAll("_", "-")} <${schema.type === "array" ? "list" : "value"}>`;
    let help = schema.description ?? key;
    if (schema.enum) help += ` (${schema.enum.join(", ")})`;
    if (schema.default !== undefined) help += ` [default: ${String(schema.default)}]`;
    command.option(flag, help);
  }
  return command;
}

/** The config values given as flags (raw, for validation), keyed by config key. */
export function configFromFlags(options: Record<string, unknown>): Record<string, unknown> {
  const raw: Record<string, unknown> = {};
  for (const [key] of configKeys()) {
    const value = options[camel(key)];
    if (typeof value === "string") raw[key] = valueFromText(key, value);
  }
  return raw;
}
