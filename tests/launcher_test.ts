/**
 * The `./krelay` launcher's install step, run from a scratch copy with a stand-in `npm` and
 * `deno` (shell scripts that record how they were called), so no registry is asked.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";

const root = new URL("../", import.meta.url).pathname;

interface Run {
  code: number;
  stderr: string;
  /** The stand-ins' calls, one line each: "npm <args>" or "deno <args>". */
  calls: string[];
}

/**
 * A copy of the launcher in a scratch project: `deno` installed or not, the install stamp
 * current or stale, and an `npm` that succeeds or fails.
 */
async function launch(
  opts: { deno: boolean; stale: boolean; npmFails: boolean; hardNofile?: number },
  args: string[],
): Promise<Run> {
  const dir = await Deno.makeTempDir({ prefix: "krelay-launcher-" });
  try {
    const log = `${dir}/calls`;
    await Deno.mkdir(`${dir}/tools`);
    await Deno.mkdir(`${dir}/node_modules/.bin`, { recursive: true });
    await Deno.mkdir(`${dir}/bin`);
    await Deno.copyFile(`${root}krelay`, `${dir}/krelay`);
    for (const f of ["v8_flags.sh", "run_flags.sh", "npm_deps.sh", "nofile.sh"]) {
      await Deno.copyFile(`${root}tools/${f}`, `${dir}/tools/${f}`);
    }
    const stub = async (path: string, name: string, code: number) => {
      await Deno.writeTextFile(path, `#!/bin/sh\necho "${name} $*" >> '${log}'\nexit ${code}\n`);
      await Deno.chmod(path, 0o755);
    };
    await stub(`${dir}/bin/npm`, "npm", opts.npmFails ? 1 : 0);
    if (opts.deno) await stub(`${dir}/node_modules/.bin/deno`, "deno", 0);
    await Deno.writeTextFile(`${dir}/package-lock.json`, "{}");
    await Deno.writeTextFile(`${dir}/node_modules/.package-lock.json`, "{}");
    // The stamp older or newer than the lock file.
    const t = Date.now() / 1000;
    await Deno.utime(`${dir}/package-lock.json`, t, t);
    const s = opts.stale ? t - 60 : t + 60;
    await Deno.utime(`${dir}/node_modules/.package-lock.json`, s, s);
    const limit = opts.hardNofile === undefined ? "" : `ulimit -Hn ${opts.hardNofile} && `;
    const out = await new Deno.Command("bash", {
      args: ["-c", `${limit}exec bash "$0" "$@"`, `${dir}/krelay`, ...args],
      env: { PATH: `${dir}/bin:${Deno.env.get("PATH")}` },
      stdout: "null",
      stderr: "piped",
    }).output();
    const calls = await Deno.readTextFile(log).catch(() => "");
    return {
      code: out.code,
      stderr: new TextDecoder().decode(out.stderr),
      calls: calls.split("\n").filter((l) => l !== ""),
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("launcher: a current install runs Deno at once, without npm", async () => {
  const r = await launch({ deno: true, stale: false, npmFails: false }, ["status"]);
  assertEquals(r.code, 0);
  assertEquals(r.calls.length, 1);
  assert(r.calls[0].startsWith("deno run "), r.calls[0]);
  assert(r.calls[0].endsWith("main.ts status"), r.calls[0]);
});

Deno.test("launcher: a stale install is updated, bounded in time and from the cache first", async () => {
  const r = await launch({ deno: true, stale: true, npmFails: false }, ["status"]);
  assertEquals(r.code, 0);
  assertEquals(r.calls.length, 2);
  const npm = r.calls[0].split(" ");
  assertEquals(npm.slice(0, 2), ["npm", "install"]);
  for (const flag of ["--prefer-offline", "--fetch-retries=1"]) assert(npm.includes(flag), flag);
  const timeout = npm.find((a) => a.startsWith("--fetch-timeout="));
  assert(timeout !== undefined && Number(timeout.split("=")[1]) <= 60_000, String(timeout));
  assert(r.calls[1].startsWith("deno run "), r.calls[1]);
});

Deno.test("launcher: a failed update goes on with the Deno already installed, and says so", async () => {
  const r = await launch({ deno: true, stale: true, npmFails: true }, ["status"]);
  assertEquals(r.code, 0);
  assert(r.stderr.includes("npm install failed"), r.stderr);
  assert(r.calls[1]?.endsWith("main.ts status"), r.calls.join("\n"));
});

Deno.test("launcher: a failed install with no Deno stops with a clear error", async () => {
  const r = await launch({ deno: false, stale: true, npmFails: true }, ["status"]);
  assertEquals(r.code, 1);
  assert(r.stderr.includes("Deno is not installed"), r.stderr);
  assertEquals(r.calls.map((c) => c.split(" ")[0]), ["npm"]);
});

Deno.test("launcher: a hard fd limit below krelay's need is taken whole, and run says so", async () => {
  const r = await launch(
    { deno: true, stale: false, npmFails: false, hardNofile: 20_000 },
    ["run", "--help"],
  );
  assertEquals(r.code, 0);
  assert(/open files limited to 20000 \(hard limit 20000\)/.test(r.stderr), r.stderr);
  const quiet = await launch(
    { deno: true, stale: false, npmFails: false, hardNofile: 20_000 },
    ["status"],
  );
  assertEquals(quiet.stderr.includes("open files limited"), false, quiet.stderr);
});
