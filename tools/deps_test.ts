// Dependencies are declared once, in package.json (Deno resolves bare specifiers from it and
// node_modules, with nodeModulesDir "manual"), and every one declared is used.
import { deepStrictEqual as assertEquals } from "node:assert/strict";

const root = new URL("../", import.meta.url).pathname;

/** Every .ts file of the project outside node_modules and dist. */
async function* sources(dir = root): AsyncGenerator<string> {
  for await (const e of Deno.readDir(dir)) {
    const path = `${dir}${e.name}`;
    if (e.isDirectory && !["node_modules", "dist", ".git", ".lab"].includes(e.name)) {
      yield* sources(`${path}/`);
    } else if (e.isFile && e.name.endsWith(".ts")) yield path;
  }
}

Deno.test("deno.json declares no dependencies: package.json is the one list", async () => {
  const deno = JSON.parse(await Deno.readTextFile(`${root}deno.json`));
  assertEquals(deno.imports, undefined);
  assertEquals(deno.scopes, undefined);
});

Deno.test("every package.json dependency is imported somewhere, and nothing undeclared is", async () => {
  const pkg = JSON.parse(await Deno.readTextFile(`${root}package.json`));
  // Tools, not imports: the runtime itself and the Node type definitions.
  const notImported = new Set(["deno", "@types/node"]);
  const declared = Object.keys({ ...pkg.dependencies, ...pkg.devDependencies })
    .filter((d) => !notImported.has(d)).sort();
  const imported = new Set<string>();
  // `import ... from "x"`, `export ... from "x"` and the last line of a multi-line import.
  const spec = /^(?:import|export|\})[^"\n]*\sfrom\s+"((?:@[a-z0-9-]+\/)?[a-z0-9][^"]*)"/gm;
  for await (const file of sources()) {
    for (const m of (await Deno.readTextFile(file)).matchAll(spec)) {
      const s = m[1];
      if (/^(node|npm|jsr|data|https?|file):/.test(s)) continue;
      imported.add(s.startsWith("@") ? s.split("/").slice(0, 2).join("/") : s.split("/")[0]);
    }
  }
  assertEquals([...imported].sort(), declared);
});
