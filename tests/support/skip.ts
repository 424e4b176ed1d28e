/**
 * Skipping a test visibly: {@link testOrSkip} registers a Deno test that is ignored, with one
 * `SKIP <name>: <reason>` line on stdout, when it cannot run here. .ci/run lists those lines;
 * tests/support/skip_test.ts checks that no test file ignores a test any other way.
 *
 * @example
 * ```ts
 * import { testOrSkip } from "../../tests/support/skip.ts";
 * testOrSkip(Deno.uid() === 0 ? undefined : "needs root", {
 *   name: "binds a transparent socket",
 *   fn() {},
 * });
 * ```
 * @module
 */

/** The line that says a test was skipped, and why. */
export function skipLine(name: string, why: string): string {
  return `SKIP ${name}: ${why}`;
}

/**
 * Registers `def`, ignored with its `SKIP` line printed when `why` gives a reason (a
 * non-empty string); run otherwise.
 */
export function testOrSkip(why: string | null | undefined, def: Deno.TestDefinition): void {
  if (why) console.log(skipLine(def.name, why));
  Deno.test({ ...def, ignore: Boolean(why) });
}
