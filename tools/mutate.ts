/**
 * A small mutation check: deliberate defects the tests must catch. Each mutant names a file,
 * the exact text to find there (once), its replacement, and the tests that must then FAIL.
 * The tree is copied to a temporary directory; the named tests are first run unmutated (they
 * must pass), then each mutant is applied alone and its tests run. Prints a table, and exits
 * non-zero when a mutant survives (its tests passed), its text is no longer found, or the
 * unmutated tests fail.
 *
 * `deno task mutate` runs them all (a few minutes); `deno task mutate NAME...` only those.
 *
 * @module
 */

import Table from "cli-table3";

/** A deliberate defect and the tests that must catch it. */
export interface Mutant {
  name: string;
  /** Path from the repository root. */
  file: string;
  /** Exact text, found once in the file. */
  find: string;
  replace: string;
  /** Test files that must fail with the mutant, and an optional `--filter` for them. */
  tests: string[];
  filter?: string;
}

/** The defects: each one a real mistake the named tests once let through, or could. */
export const MUTANTS: readonly Mutant[] = [
  {
    name: "sandbox: script process may use the network on 127.0.0.1",
    file: "src/script/script_worker.ts",
    find: `        "--no-prompt",\n`,
    replace: `        "--allow-net=127.0.0.1",\n        "--no-prompt",\n`,
    tests: ["src/script/sandbox_test.ts"],
  },
  {
    name: "sandbox: script process may read files",
    file: "src/script/script_worker.ts",
    find: `        "--no-prompt",\n`,
    replace: `        "--allow-read",\n        "--no-prompt",\n`,
    tests: ["src/script/sandbox_test.ts"],
  },
  {
    name: "sandbox: script process may write, run, load FFI, read env",
    file: "src/script/script_worker.ts",
    find: `        "--no-prompt",\n`,
    replace:
      `        "--allow-write", "--allow-run", "--allow-ffi", "--allow-env",\n        "--no-prompt",\n`,
    tests: ["src/script/sandbox_test.ts"],
  },
  {
    name: "sandbox: a script may start workers",
    file: "src/script/worker_runtime.ts",
    find: "\nforbidWorkers();\n",
    replace: "\n",
    tests: ["src/script/sandbox_test.ts"],
  },
  {
    name: "UDP: unreplied flow expires at a tenth of udp_timeout",
    file: "src/nat/udp_nat.ts",
    find: "timeoutMs: s.udpTimeoutMs,",
    replace: "timeoutMs: s.udpTimeoutMs / 10,",
    tests: ["src/nat/rewriter_test.ts"],
  },
  {
    name: "UDP: unreplied flow lives twice udp_timeout",
    file: "src/nat/udp_nat.ts",
    find: "timeoutMs: s.udpTimeoutMs,",
    replace: "timeoutMs: s.udpTimeoutMs * 2,",
    tests: ["src/nat/rewriter_test.ts"],
  },
  {
    name: "UDP: stream expires at a tenth of udp_stream_timeout",
    file: "src/nat/udp_nat.ts",
    find: "entry.timeoutMs = this.settings().udpStreamTimeoutMs;",
    replace: "entry.timeoutMs = this.settings().udpStreamTimeoutMs / 10;",
    tests: ["src/nat/rewriter_test.ts"],
  },
  {
    name: "UDP: reply matched without the server's address",
    file: "src/nat/udp_nat.ts",
    find: "return `u<${server}:${port}>${client}:${clientPort}`;",
    replace: "return `u<${port}>${client}:${clientPort}`;",
    tests: ["src/nat/rewriter_test.ts"],
  },
  {
    name: "UDP: reply matched without the server's port",
    file: "src/nat/udp_nat.ts",
    find: "return `u<${server}:${port}>${client}:${clientPort}`;",
    replace: "return `u<${server}>${client}:${clientPort}`;",
    tests: ["src/nat/rewriter_test.ts"],
  },
  {
    name: "NAT table: an entry expires at its timeout, not after",
    file: "src/nat/nat_table.ts",
    find: "if (this.options.now() - entry.lastSeen > entry.timeoutMs) {",
    replace: "if (this.options.now() - entry.lastSeen >= entry.timeoutMs) {",
    tests: ["src/nat/nat_table_test.ts", "src/nat/rewriter_test.ts"],
  },
  {
    name: "TCP relay: idle timeout 15 times as long",
    file: "src/relay/pump.ts",
    find: "now - this.#lastMoveSeen >= timeoutMs",
    replace: "now - this.#lastMoveSeen >= timeoutMs * 15",
    tests: ["src/relay/pump_test.ts"],
    filter: "idle",
  },
  {
    name: "TCP relay: idle timeout at half its length",
    file: "src/relay/pump.ts",
    find: "now - this.#lastMoveSeen >= timeoutMs",
    replace: "now - this.#lastMoveSeen >= timeoutMs / 2",
    tests: ["src/relay/pump_test.ts"],
    filter: "idle",
  },
  {
    name: "metrics: udp_request shows the UDP replies",
    file: "src/control/metrics.ts",
    find: `["packets.udpRequests", "udp_request"],`,
    replace: `["packets.udpReplies", "udp_request"],`,
    tests: ["src/control/metrics_test.ts"],
  },
  {
    name: "metrics: to_client bytes show the bytes to the server",
    file: "src/control/metrics.ts",
    find: `["tcp.bytesToClient", "to_client"]`,
    replace: `["tcp.bytesToServer", "to_client"]`,
    tests: ["src/control/metrics_test.ts"],
  },
  {
    name: "metrics: a counter left out",
    file: "src/control/metrics.ts",
    find: `["nat.expired", "expired"], `,
    replace: "",
    tests: ["src/control/metrics_test.ts"],
  },
  {
    name: "script budget: 15 times too long",
    file: "src/script/host.ts",
    find: "await worker.run(jobs, policy.budgetMs);",
    replace: "await worker.run(jobs, policy.budgetMs * 15);",
    tests: ["src/script/host_test.ts"],
    filter: "budget",
  },
  {
    name: "script budget: a tenth as long",
    file: "src/script/host.ts",
    find: "await worker.run(jobs, policy.budgetMs);",
    replace: "await worker.run(jobs, policy.budgetMs / 10);",
    tests: ["src/script/host_test.ts"],
    filter: "budget",
  },
];

/** How a mutant fared. */
export type Outcome = "killed" | "SURVIVED" | "NOT FOUND" | "AMBIGUOUS";

/** Where `find` is in `text`: its one index, or why it cannot be applied. */
export function locate(text: string, find: string): number | "NOT FOUND" | "AMBIGUOUS" {
  const at = text.indexOf(find);
  if (at < 0) return "NOT FOUND";
  if (text.indexOf(find, at + 1) >= 0) return "AMBIGUOUS";
  return at;
}

const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const deno = Deno.execPath();

/** Copies the tracked and untracked (not ignored) files to a new temporary directory. */
async function copyTree(): Promise<string> {
  const ls = await new Deno.Command("git", {
    args: ["ls-files", "-z", "--cached", "--others", "--exclude-standard"],
    cwd: root,
    stdout: "piped",
  }).output();
  if (!ls.success) throw new Error("git ls-files failed");
  const dir = await Deno.makeTempDir({ prefix: "krelay-mutate-" });
  for (const file of new TextDecoder().decode(ls.stdout).split("\0").filter((f) => f)) {
    let info: Deno.FileInfo;
    try {
      info = await Deno.lstat(`${root}/${file}`);
    } catch {
      continue; // deleted in the work tree, not yet in the index
    }
    if (!info.isFile) continue;
    const to = `${dir}/${file}`;
    await Deno.mkdir(to.slice(0, to.lastIndexOf("/")), { recursive: true });
    await Deno.copyFile(`${root}/${file}`, to);
  }
  await Deno.symlink(await Deno.realPath(`${root}/node_modules`), `${dir}/node_modules`);
  return dir;
}

/** Runs `tests` in `dir`; resolves with whether they passed, and the output's tail. */
async function runTests(dir: string, tests: string[], filter?: string) {
  const args = ["test", "--allow-all", "--no-prompt", ...(filter ? ["--filter", filter] : [])];
  const out = await new Deno.Command(deno, {
    args: [...args, ...tests],
    cwd: dir,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  return { passed: out.success, tail: text.trim().split("\n").slice(-15).join("\n") };
}

async function main(names: string[]): Promise<number> {
  const chosen = names.length ? MUTANTS.filter((m) => names.some((n) => m.name.includes(n))) : [
    ...MUTANTS,
  ];
  if (chosen.length === 0) {
    console.error(`no mutant matches ${names.join(", ")}`);
    return 2;
  }
  const dir = await copyTree();
  let status = 0;
  try {
    // The unmutated tree first: a mutant "killed" by tests that fail anyway proves nothing.
    const groups = new Map<string, Mutant>();
    for (const m of chosen) groups.set(`${m.tests.join(" ")}|${m.filter ?? ""}`, m);
    for (const m of groups.values()) {
      const base = await runTests(dir, m.tests, m.filter);
      if (!base.passed) {
        console.error(`the unmutated tests fail: ${m.tests.join(" ")}\n${base.tail}`);
        return 1;
      }
    }
    const table = new Table({
      head: ["mutant", "file", "tests", "result", "s"],
      style: { head: [], border: [], compact: true },
    });
    for (const m of chosen) {
      const path = `${dir}/${m.file}`;
      const original = await Deno.readTextFile(path);
      const at = locate(original, m.find);
      let outcome: Outcome;
      const started = performance.now();
      if (typeof at !== "number") {
        outcome = at;
      } else {
        await Deno.writeTextFile(
          path,
          original.slice(0, at) + m.replace + original.slice(at + m.find.length),
        );
        try {
          const r = await runTests(dir, m.tests, m.filter);
          outcome = r.passed ? "SURVIVED" : "killed";
        } finally {
          await Deno.writeTextFile(path, original);
        }
      }
      if (outcome !== "killed") status = 1;
      const tests = m.tests.map((t) => t.slice(t.lastIndexOf("/") + 1)).join(" ") +
        (m.filter ? ` (${m.filter})` : "");
      table.push([
        m.name,
        m.file,
        tests,
        outcome,
        ((performance.now() - started) / 1000).toFixed(0),
      ]);
      console.error(`${outcome}: ${m.name}`);
    }
    console.log(table.toString());
    const killed = table.filter((row) => (row as string[])[3] === "killed").length;
    console.log(`${killed} of ${chosen.length} mutants killed`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  return status;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
