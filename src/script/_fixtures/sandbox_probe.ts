/**
 * Test fixture: tries what the sandbox must deny (files, network, subprocesses, FFI,
 * environment, dynamic import, workers) and logs one line per attempt, `sandbox <what>: <outcome>`.
 *
 * The outcome is `denied` only for the permission error itself (`NotCapable`, or
 * `PermissionDenied`; for an import, the TypeError saying which permission it requires); anything else, success or another error, is reported as such, so a test
 * expecting `denied` fails when a permission is granted. The attempts must be able to succeed:
 * the network ones go to a live listener and the import to a real module, both given by the
 * test through {@link probeScript}, which writes the script a worker loads.
 *
 * @module
 */

/** Where the probe's attempts go: things that exist, so only the sandbox can stop them. */
export interface ProbeTargets {
  /** A live HTTP listener (the network attempts connect and fetch `/` there). */
  hostname: string;
  port: number;
  /** A file URL of a real module, for the dynamic import. */
  module: string;
  /** A file that exists, to read. */
  file: string;
}

/** The outcome of one attempt. */
function outcome(e: unknown): string {
  if (e instanceof Deno.errors.NotCapable) return "denied (NotCapable)";
  if (e instanceof Deno.errors.PermissionDenied) return "denied (PermissionDenied)";
  // A dynamic import refused for want of a permission is a TypeError (Deno 2.9) saying so.
  if (e instanceof TypeError && /^Requires (read|import) access to /.test(e.message)) {
    return "denied (TypeError: Requires access)";
  }
  return `FAILED OTHERWISE (${(e as Error)?.name}: ${(e as Error)?.message})`;
}

async function attempt(what: string, fn: () => unknown): Promise<void> {
  try {
    await fn();
    console.log(`sandbox ${what}: ALLOWED`);
  } catch (e) {
    console.log(`sandbox ${what}: ${outcome(e)}`);
  }
}

/** The attempts, one line each. */
export async function probe(t: ProbeTargets): Promise<void> {
  await attempt("read", () => Deno.readTextFileSync(t.file));
  await attempt("write", () => Deno.writeTextFileSync("/tmp/krelay-sandbox-probe", "x"));
  await attempt("fetch", async () => {
    const res = await fetch(`http://${t.hostname}:${t.port}/`);
    await res.body?.cancel();
  });
  await attempt("connect", async () => {
    (await Deno.connect({ hostname: t.hostname, port: t.port })).close();
  });
  await attempt("listen", () => Deno.listen({ hostname: "127.0.0.1", port: 0 }).close());
  await attempt("run", () => new Deno.Command("true").outputSync());
  await attempt("ffi", () => Deno.dlopen("libc.so.6", {}).close());
  await attempt("env", () => Deno.env.get("HOME"));
  await attempt("import", () => import(t.module));
  await attempt("worker", () => new Worker("data:application/javascript,", { type: "module" }));
}

/** Whether an outcome the probe logged is the permission error (and nothing else). */
export function isDenied(outcome: string): boolean {
  return /^denied \((NotCapable|PermissionDenied|TypeError: Requires access)\)$/.test(outcome);
}

/** Every attempt {@link probe} makes. */
export const ATTEMPTS = [
  "read",
  "write",
  "fetch",
  "connect",
  "listen",
  "run",
  "ffi",
  "env",
  "import",
  "worker",
] as const;

/**
 * The text of a script that runs the probe against `t` while it loads, then accepts every
 * packet: write it to a file and load that. (A script takes no arguments; this is how the test
 * gives it the listener's port.)
 */
export function probeScript(t: ProbeTargets): string {
  return [
    `import { probe } from ${JSON.stringify(import.meta.url)};`,
    `await probe(${JSON.stringify(t)});`,
    `/** Accepts. */`,
    `export function target(): "accept" {`,
    `  return "accept";`,
    `}`,
    "",
  ].join("\n");
}
