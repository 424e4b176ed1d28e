/**
 * Assembles krelay's application files for the single file and the .deb, offline: `deno bundle`
 * of the entry point and of the worker modules (each a module graph of its own), with the
 * few module-relative paths the bundle cannot keep pointed at the files shipped beside it, the
 * packet-script API (for the type check of scripts) and the kernel module's sources.
 *
 * Usage: deno run -A tools/dist/bundle.ts OUT_DIR
 *
 * @module
 */

const root = new URL("../../", import.meta.url).pathname;

/** Entry module -> bundle file name. */
export const ENTRIES: [string, string][] = [
  ["main.ts", "main.js"],
  // Loaded by `new Worker(...)`, which the bundler does not follow.
  ["src/relay/relay_thread.ts", "relay_thread.js"],
  // The daemon's relay threads, which can hold SYNs (src/daemon/thread_gate.ts).
  ["src/daemon/gate_thread.ts", "gate_thread.js"],
  ["src/script/worker_runtime.ts", "worker_runtime.js"],
];

/**
 * Module-relative URLs in the bundle and what they become. Each must occur exactly as often as
 * said, so that a moved or renamed file fails the build instead of the product.
 */
export const PATCHES: { file: string; from: string; to: string; count: number }[] = [
  {
    file: "main.js",
    from: 'new URL("./relay_thread.ts", import.meta.url)',
    to: 'new URL("./relay_thread.js", import.meta.url)',
    count: 1,
  },
  {
    file: "main.js",
    from: 'new URL("./gate_thread.ts", import.meta.url)',
    to: 'new URL("./gate_thread.js", import.meta.url)',
    count: 1,
  },
  {
    file: "main.js",
    from: 'new URL("./worker_runtime.ts", import.meta.url)',
    to: 'new URL("./worker_runtime.js", import.meta.url)',
    count: 1,
  },
  // The lab starts krelay as this very file (the launcher exports its path as KRELAY_SELF).
  {
    file: "main.js",
    from: 'new URL("../../krelay", import.meta.url).pathname',
    to: 'Deno.env.get("KRELAY_SELF")',
    count: 1,
  },
  // No repository: the lab's installer is absent and skipped; the sources of krelay.ko are
  // shipped in kmod/ beside the bundle.
  {
    file: "main.js",
    from: 'new URL("../../", import.meta.url).pathname',
    to: 'new URL("./", import.meta.url).pathname',
    count: 1,
  },
  {
    file: "main.js",
    from: 'new URL("../../kmod/", import.meta.url).pathname',
    to: 'new URL("./kmod/", import.meta.url).pathname',
    count: 1,
  },
];

/** Files shipped as they are: the script API beside the bundle, where check.ts looks for it. */
export const COPIES: [string, string][] = [["src/script/api.ts", "api.ts"]];

/** Applies {@link PATCHES} to `text` of `file`; throws when a count differs. */
export function patch(file: string, text: string): string {
  for (const p of PATCHES.filter((p) => p.file === file)) {
    const n = text.split(p.from).length - 1;
    if (n !== p.count) {
      throw new Error(`${file}: expected ${p.count} of ${p.from}, found ${n} (a file moved?)`);
    }
    text = text.replaceAll(p.from, p.to);
  }
  return text;
}

/** The kernel module's files: kmod/Makefile, kmod/*.c, kmod/*.h and kmod/tools/*.c. */
export async function kmodFiles(): Promise<string[]> {
  const files: string[] = [];
  for (const dir of ["kmod", "kmod/tools"]) {
    for await (const e of Deno.readDir(`${root}${dir}`)) {
      if (!e.isFile) continue;
      if (e.name === "Makefile" || /\.[ch]$/.test(e.name)) files.push(`${dir}/${e.name}`);
    }
  }
  return files.sort();
}

async function bundle(out: string): Promise<void> {
  await Deno.mkdir(out, { recursive: true });
  for (const [entry, name] of ENTRIES) {
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["bundle", "--quiet", "--platform", "deno", "-o", `${out}/${name}`, `${root}${entry}`],
      cwd: root,
      stdout: "inherit",
      stderr: "inherit",
    }).output();
    if (!r.success) throw new Error(`deno bundle ${entry} failed`);
    const text = await Deno.readTextFile(`${out}/${name}`);
    const patched = patch(name, text);
    // Whatever else is relative to the bundle's own URL would point into nothing.
    const left = [...patched.matchAll(/new URL\("([^"]*)", import\.meta\.url\)/g)]
      .map((m) => m[1]).filter((u) =>
        ![
          "./relay_thread.js",
          "./gate_thread.js",
          "./worker_runtime.js",
          "./",
          "./kmod/",
          "./api.ts",
        ].includes(u)
      );
    if (left.length > 0) throw new Error(`${name}: unhandled module-relative URLs: ${left}`);
    await Deno.writeTextFile(`${out}/${name}`, patched);
  }
  for (const [from, to] of COPIES) await Deno.copyFile(`${root}${from}`, `${out}/${to}`);
  for (const f of await kmodFiles()) {
    await Deno.mkdir(`${out}/${f.slice(0, f.lastIndexOf("/"))}`, { recursive: true });
    await Deno.copyFile(`${root}${f}`, `${out}/${f}`);
  }
}

if (import.meta.main) {
  if (Deno.args.length !== 1) {
    console.error("usage: bundle.ts OUT_DIR");
    Deno.exit(2);
  }
  await bundle(Deno.args[0]);
}
