/**
 * krelay's entry point; see `./krelay --help`.
 *
 * @module
 */

import { program } from "./src/cli/program.ts";

if (import.meta.main) {
  await program().parseAsync(Deno.args, { from: "user" });
}
