/**
 * krelay's version, read from package.json (its one source): `krelay --version` and
 * `krelay version [--json]`. The bundle of the single-file build inlines the JSON, so the
 * version travels with the code.
 *
 * @module
 */

import { Command } from "commander";
import pkg from "../../package.json" with { type: "json" };

/** krelay's version, as in package.json ("0.9.0"). */
export const VERSION: string = pkg.version;

/** What `krelay version --json` prints: krelay's version and the runtime's. */
export interface VersionInfo {
  krelay: string;
  deno: string;
  v8: string;
  typescript: string;
}

/** The versions of krelay and of the Deno it runs on. */
export function versionInfo(): VersionInfo {
  return {
    krelay: VERSION,
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    typescript: Deno.version.typescript,
  };
}

/** The `version` command. */
export function versionCli(): Command {
  return new Command("version")
    .description("print krelay's version, and with --json also Deno's and V8's")
    .option("--json", "print krelay's, Deno's, V8's and TypeScript's versions as JSON")
    .action((options: { json?: boolean }) => {
      const v = versionInfo();
      console.log(
        options.json
          ? JSON.stringify(v, null, 2)
          : `krelay ${v.krelay} (Deno ${v.deno}, V8 ${v.v8})`,
      );
    });
}
