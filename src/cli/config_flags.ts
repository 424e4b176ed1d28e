/**
 * Command-line flags generated from the configuration schema, so that every config key has a
 * flag with the same name (`real_ip` -> `--real-ip`), description and default.
 *
 * @module
 */

import type { Command } from "commander";
import { z } from "zod";
import { configSchema } from "../config/schema.ts";

interface PropertySchema {
  type?: string;
  default?: unknown;
  description?: string;
  enum?: string[];
}

function properties(): [string, PropertySchema][] {
  const json = z.toJSONSchema(configSchema, { io: "input" }) as {
    properties: Record<string, PropertySchema>;
  };
  return Object.entries(json.properties);
}

/** `real_ip` -> `realIp`, commander's name for `--real-ip`. */
function camel(key: string): string {
  return key.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
}

/** Numbers become numbers; anything else is left for the schema to refuse with a reason. */
function numberish(text: string): unknown {
  return /^-?\d+(\.\d+)?$/.test(text.trim()) ? Number(text) : text;
}

function convert(value: string, schema: PropertySchema): unknown {
  if (schema.type === "integer" || schema.type === "number") return numberish(value);
  if (schema.type === "array") return value.split(",").filter((v) => v !== "").map(numberish);
  return value;
}

/** Adds a flag for every config key. */
export function addConfigFlags(command: Command): Command {
  for (const [key, schema] of properties()) {
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
  for (const [key, schema] of properties()) {
    const value = options[camel(key)];
    if (typeof value === "string") raw[key] = convert(value, schema);
  }
  return raw;
}
