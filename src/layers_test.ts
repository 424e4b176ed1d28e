// The architecture as a test: each folder imports only folders of lower layers (and itself).
// docs/design/architecture.md draws the same table; a new folder must be given a layer here.
import { deepStrictEqual as assertEquals } from "node:assert/strict";

/** Layer of each folder (src/NAME, or ffi); lower layers know nothing of higher ones. */
export const LAYERS: Record<string, number> = {
  ffi: 1,
  system: 2,
  packet: 2,
  config: 3,
  nat: 3,
  queue: 4,
  steering: 4,
  kmod: 4,
  relay: 4,
  script: 4,
  daemon: 5,
  control: 6,
  lab: 6,
  cli: 7,
};

const ROOT = new URL("../", import.meta.url).pathname;
const IMPORT = /(?:from|import)\s*\(?\s*["'](\.{1,2}\/[^"']+)["']/g;

function folderOf(path: string): string | undefined {
  const rel = path.slice(ROOT.length).split("/");
  if (rel[0] === "ffi") return "ffi";
  return rel[0] === "src" && rel.length > 2 ? rel[1] : undefined;
}

async function* sources(dir: string): AsyncGenerator<string> {
  for await (const e of Deno.readDir(dir)) {
    const path = `${dir}/${e.name}`;
    // Tests and their fixtures (`_name`) may reach across layers.
    if (e.name.startsWith("_")) continue;
    if (e.isDirectory) yield* sources(path);
    else if (e.name.endsWith(".ts") && !e.name.endsWith("_test.ts")) yield path;
  }
}

Deno.test("every folder has a layer, and imports only from lower layers", async () => {
  const wrong: string[] = [];
  for (const dir of [`${ROOT}src`, `${ROOT}ffi`]) {
    for await (const file of sources(dir)) {
      const from = folderOf(file);
      if (from === undefined) continue;
      if (LAYERS[from] === undefined) wrong.push(`${from}/ has no layer`);
      for (const m of (await Deno.readTextFile(file)).matchAll(IMPORT)) {
        const target = new URL(m[1], `file://${file}`).pathname;
        const to = folderOf(target);
        if (to === undefined || to === from) continue;
        if (!(LAYERS[to] < LAYERS[from])) {
          wrong.push(
            `${file.slice(ROOT.length)} (${from}, ${LAYERS[from]}) imports ${to} (${LAYERS[to]})`,
          );
        }
      }
    }
  }
  assertEquals([...new Set(wrong)], []);
});
