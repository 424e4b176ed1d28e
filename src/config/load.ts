/**
 * Assembles the configuration from its sources: defaults, then a TOML file, then
 * command-line flags, validated as a whole before anything uses it.
 *
 * @example
 * ```ts
 * import { loadConfig } from "./load.ts";
 * const r = await loadConfig({ file: "/etc/krelay.toml", flags: { gport: 16001 } });
 * if (!r.ok) console.error(r.errors.join("\n"));
 * ```
 * @module
 */

import { parse as parseToml } from "smol-toml";
import { type ConfigResult, parseConfig, removedKeys } from "./schema.ts";

/** Where configuration values come from. */
export interface ConfigSources {
  /** Path of a TOML file with the same keys as the flags (snake_case). */
  file?: string;
  /** Values from flags; undefined values are ignored. */
  flags?: Record<string, unknown>;
  /** Values that replace the schema's defaults (e.g. read from krelay.ko), below file and flags. */
  defaults?: Record<string, unknown>;
}

/** Reads, merges and validates; never throws for bad input, returns the reasons instead. */
export async function loadConfig(sources: ConfigSources): Promise<ConfigResult> {
  let fromFile: Record<string, unknown> = {};
  if (sources.file !== undefined) {
    let text: string;
    try {
      text = await Deno.readTextFile(sources.file);
    } catch (e) {
      return { ok: false, errors: [`config file ${sources.file}: ${(e as Error).message}`] };
    }
    try {
      fromFile = parseToml(text) as Record<string, unknown>;
    } catch (e) {
      const first = (e as Error).message.split("\n")[0];
      return { ok: false, errors: [`config file ${sources.file}: ${first}`] };
    }
  }
  const flags = Object.fromEntries(
    Object.entries(sources.flags ?? {}).filter(([, v]) => v !== undefined),
  );
  const result = parseConfig({ ...sources.defaults, ...fromFile, ...flags });
  if (!result.ok && sources.file !== undefined) {
    return { ok: false, errors: result.errors.map((e) => `${e} (from flags or ${sources.file})`) };
  }
  const warnings = removedKeys({ ...fromFile, ...flags });
  return result.ok && warnings.length > 0 ? { ...result, warnings } : result;
}
