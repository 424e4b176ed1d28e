import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { skipLine } from "./skip.ts";

const root = new URL("../../", import.meta.url).pathname;

/** Every test file under `dir`, recursively, as paths from the repository root. */
function testFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync(`${root}${dir}`)) {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory && e.name !== "node_modules") out.push(...testFiles(path));
    else if (e.isFile && e.name.endsWith("_test.ts")) out.push(path);
  }
  return out;
}

Deno.test("skipLine() is the line .ci/run collects", () => {
  assertEquals(skipLine("a test", "needs root"), "SKIP a test: needs root");
  assertEquals(/^SKIP /.test(skipLine("x", "y")), true);
});

Deno.test("no test is ignored without its SKIP line: ignore only through testOrSkip()", () => {
  const offenders = ["src", "tests", "tools"].flatMap(testFiles)
    .filter((f) => !f.startsWith("tests/support/"))
    .filter((f) => /\bignore\s*:|\.ignore\(/.test(Deno.readTextFileSync(`${root}${f}`)));
  assertEquals(offenders, []);
});
