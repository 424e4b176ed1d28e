/**
 * krelay's entry point; see `./krelay --help`.
 *
 * @module
 */

import { main } from "./src/cli/program.ts";

if (import.meta.main) {
  await main(Deno.args);
}
