/**
 * Configuration values written as text, as on the command line or in `krelay config set`:
 * "16001" for a number, "53,5353" for a list. Converted by the key's type in the schema, so
 * every text source is parsed the same way; validation stays the schema's.
 *
 * @example
 * ```ts
 * import { valueFromText } from "./text_values.ts";
 * valueFromText("udp_ports", "53,5353"); // [53, 5353]
 * ```
 * @module
 */

import { z } from "zod";
import { configSchema } from "./schema.ts";

/** A key's JSON-schema description, as far as krelay uses it. */
export interface KeySchema {
  type?: string;
  default?: unknown;
  description?: string;
  enum?: string[];
  /** A union's members (`tcp_hold_syn`: "auto" or a boolean). */
  anyOf?: { type?: string; const?: unknown }[];
}

/** Whether a key takes true and false (a boolean, or a union with one such as `tcp_hold_syn`). */
export function takesBoolean(schema: KeySchema | undefined): boolean {
  return schema?.type === "boolean" || schema?.anyOf?.some((s) => s.type === "boolean") === true;
}

let cache: [string, KeySchema][] | undefined;

/** Every config key with its type, default and description, in schema order. */
export function configKeys(): [string, KeySchema][] {
  cache ??= Object.entries(
    (z.toJSONSchema(configSchema, { io: "input" }) as { properties: Record<string, KeySchema> })
      .properties,
  );
  return cache;
}

/** Numbers become numbers; anything else is left for the schema to refuse with a reason. */
function numberish(text: string): unknown {
  return /^-?\d+(\.\d+)?$/.test(text.trim()) ? Number(text) : text;
}

/**
 * Converts the text of one value for `key`. Unknown keys give the text back unchanged (the
 * schema then refuses the key by name).
 */
export function valueFromText(key: string, text: string): unknown {
  const schema = configKeys().find(([k]) => k === key)?.[1];
  if (schema?.type === "integer" || schema?.type === "number") return numberish(text);
  if (takesBoolean(schema)) return text === "true" ? true : text === "false" ? false : text;
  if (schema?.type === "array") {
    return text.split(",").filter((v) => v.trim() !== "").map(numberish);
  }
  return text;
}

/** Formats a value back as text, the inverse of {@link valueFromText}. */
export function valueToText(value: unknown): string {
  if (Array.isArray(value)) return value.join(",");
  return value === undefined ? "" : String(value);
}
