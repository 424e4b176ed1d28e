/**
 * Checks a script before it is loaded: `deno check` (the TypeScript compiler) on a generated
 * module that imports the script and assigns its exports to {@link PacketScript}, so that
 * wrongly typed `match`/`target` functions, a script exporting neither, and plain type errors
 * are all refused with the compiler's own message.
 *
 * @example
 * ```ts
 * import { checkScript } from "./check.ts";
 * await checkScript("/etc/krelay/scripts/blocklist.ts"); // throws ScriptCheckError if bad
 * ```
 * @module
 */

/** The script failed the check; the message is the compiler's (or why it could not run). */
export class ScriptCheckError extends Error {
  override name = "ScriptCheckError";
}

/** How long `deno check` may take. */
export const CHECK_TIMEOUT_MS = 60_000;

/** The script API file; the single file and the .deb ship it beside krelay's bundle. */
export const API_URL: string = new URL("./api.ts", import.meta.url).href;

/**
 * The bare specifier a script may import the API's types from wherever it is, with
 * `import type { Packet } from "krelay/script"` (the check maps it to {@link API_URL}; a type
 * import leaves nothing to resolve at run time).
 */
export const API_SPECIFIER = "krelay/script";

/** The module `deno check` compiles for `scriptUrl`. */
export function checkModule(scriptUrl: string): string {
  return [
    `import type { PacketScript } from ${JSON.stringify(API_URL)};`,
    `import * as script from ${JSON.stringify(scriptUrl)};`,
    // With both members optional, a module exporting neither is refused too ("no properties in
    // common"), and each one exported must have the API's type.
    `export const exports: PacketScript = script;`,
    "",
  ].join("\n");
}

/** The absolute file URL of a script path (resolved against the working directory). */
export function scriptUrl(file: string): string {
  const path = file.startsWith("/") ? file : `${Deno.cwd()}/${file}`;
  return new URL(`file://${path}`).href;
}

/**
 * Type-checks the script at `file` against the API. Resolves when it passes; rejects with a
 * {@link ScriptCheckError} carrying the compiler's message when it does not, or naming what
 * went wrong (no such file, no answer in time).
 */
export async function checkScript(file: string, timeoutMs = CHECK_TIMEOUT_MS): Promise<void> {
  try {
    const info = await Deno.stat(file);
    if (!info.isFile) throw new ScriptCheckError(`${file} is not a file`);
  } catch (e) {
    if (e instanceof ScriptCheckError) throw e;
    throw new ScriptCheckError(`cannot read ${file}: ${(e as Error).message}`);
  }
  const dir = await Deno.makeTempDir({ prefix: "krelay-check-" });
  try {
    const wrapper = `${dir}/check.ts`;
    await Deno.writeTextFile(wrapper, checkModule(scriptUrl(file)));
    const importMap = `${dir}/import_map.json`;
    await Deno.writeTextFile(importMap, JSON.stringify({ imports: { [API_SPECIFIER]: API_URL } }));
    const child = new Deno.Command(Deno.execPath(), {
      args: ["check", "--no-config", "--quiet", `--import-map=${importMap}`, wrapper],
      env: { NO_COLOR: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(timeoutMs),
    }).spawn();
    const out = await child.output().catch((e) => {
      throw new ScriptCheckError(`deno check did not finish: ${(e as Error).message}`);
    });
    if (out.success) return;
    const text = new TextDecoder().decode(out.stderr) + new TextDecoder().decode(out.stdout);
    if (out.signal !== null) {
      throw new ScriptCheckError(`deno check did not finish within ${timeoutMs / 1000} s`);
    }
    throw new ScriptCheckError(text.trim() || `deno check failed (exit ${out.code})`);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
