/**
 * Test fixture: tries what the sandbox must deny (files, network, subprocesses, FFI,
 * environment, workers) when loaded, and logs one line per attempt: `sandbox <what>: denied|ALLOWED`.
 */

async function attempt(what: string, fn: () => unknown): Promise<void> {
  try {
    await fn();
    console.log(`sandbox ${what}: ALLOWED`);
  } catch (e) {
    console.log(`sandbox ${what}: denied (${(e as Error).name})`);
  }
}

await attempt("read", () => Deno.readTextFileSync("/etc/hostname"));
await attempt("write", () => Deno.writeTextFileSync("/tmp/krelay-sandbox-probe", "x"));
await attempt("fetch", () => fetch("http://127.0.0.1:8080/"));
await attempt("connect", () => Deno.connect({ hostname: "127.0.0.1", port: 8080 }));
await attempt("listen", () => Deno.listen({ port: 0 }));
await attempt("run", () => new Deno.Command("true").outputSync());
await attempt("ffi", () => Deno.dlopen("libc.so.6", {}));
await attempt("env", () => Deno.env.get("HOME"));
// Not a literal: `deno check` would follow it.
const hostname = ["file:", "", "", "etc", "hostname"].join("/");
await attempt("import", () => import(hostname));
await attempt("worker", () => new Worker("data:application/javascript,", { type: "module" }));

/** Accepts. */
export function target(): "accept" {
  return "accept";
}
