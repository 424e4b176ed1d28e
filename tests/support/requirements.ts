/**
 * Test helpers for what needs root or kernel features: {@link missing} says why a test
 * cannot run here, and {@link labTest} registers a test that runs with a fresh lab, or is
 * ignored (with one `SKIP <name>: <reason>` line) when a requirement is missing.
 *
 * @example
 * ```ts
 * import { labTest } from "./requirements.ts";
 * labTest("the client reaches the server", ["curl"], async (lab) => {
 *   await lab.exec("client", ["curl", "-sS", "http://203.0.113.10/"], { check: true });
 * });
 * ```
 * @module
 */

import { cleanupStale } from "../../src/lab/cleanup.ts";
import { randomTestPrefix } from "../../src/lab/names.ts";
import { Lab } from "../../src/lab/topology.ts";
import { allowedCpus } from "../../src/system/cpu_affinity.ts";
import { skipLine, testOrSkip } from "./skip.ts";

/** Commands the helpers know by name, each checked on the PATH (and the sbin directories). */
const COMMANDS = {
  ip: "ip",
  ss: "ss",
  sysctl: "sysctl",
  bash: "bash",
  iptables: "iptables",
  nft: "nft",
  dnsmasq: "dnsmasq",
  nginx: "nginx",
  dig: "dig",
  curl: "curl",
  qemu: "qemu-system-x86_64",
} as const;

/** Shared libraries the helpers know by name, checked by loading them. */
const LIBRARIES = {
  libnetfilter_queue: "libnetfilter_queue.so.1",
  libmnl: "libmnl.so.0",
} as const;

/**
 * Something a test needs: "root" (uid 0 with CAP_NET_ADMIN and CAP_SYS_ADMIN, what network
 * namespaces take), "two-cpus" (that many this process may run on), a known command or
 * library, or any other command as `cmd:<name>`.
 */
export type Requirement =
  | "root"
  | "two-cpus"
  | keyof typeof COMMANDS
  | keyof typeof LIBRARIES
  | `cmd:${string}`;

/** What every lab needs, whatever the test asks for. */
export const LAB_BASE: readonly Requirement[] = ["root", "ip", "ss", "sysctl", "bash"];

/** Real DNS and web servers and clients, and krelay's queue: what most lab tests need. */
export const LAB_PEERS: readonly Requirement[] = [
  "iptables",
  "dnsmasq",
  "nginx",
  "dig",
  "curl",
  "libnetfilter_queue",
];

const cache = new Map<Requirement, string | undefined>();

/**
 * Why the tests needing `needs` cannot run here (one reason per missing thing, joined by
 * "; "), or undefined when everything is present.
 */
export function missing(needs: readonly Requirement[]): string | undefined {
  const reasons: string[] = [];
  for (const need of needs) {
    if (!cache.has(need)) cache.set(need, check(need));
    const why = cache.get(need);
    if (why) reasons.push(why);
  }
  return reasons.length > 0 ? reasons.join("; ") : undefined;
}

function check(need: Requirement): string | undefined {
  if (need === "root") return checkRoot();
  if (need === "two-cpus") {
    const n = allowedCpus().length;
    return n >= 2 ? undefined : `needs two CPUs, this process may use ${n}`;
  }
  if (need in LIBRARIES) return checkLibrary(LIBRARIES[need as keyof typeof LIBRARIES]);
  const cmd = need.startsWith("cmd:") ? need.slice(4) : COMMANDS[need as keyof typeof COMMANDS];
  if (!cmd) return `unknown requirement "${need}"`;
  return findCommand(cmd) ? undefined : `${cmd} is not installed`;
}

const CAP_NET_ADMIN = 12;
const CAP_SYS_ADMIN = 21;

function checkRoot(): string | undefined {
  if (Deno.uid() !== 0) return "needs root";
  try {
    const status = Deno.readTextFileSync("/proc/self/status");
    const hex = /^CapEff:\s*([0-9a-f]+)/m.exec(status)?.[1];
    if (hex === undefined) return undefined;
    const caps = BigInt(`0x${hex}`);
    for (
      const [bit, name] of [[CAP_NET_ADMIN, "CAP_NET_ADMIN"], [CAP_SYS_ADMIN, "CAP_SYS_ADMIN"]]
    ) {
      if (((caps >> BigInt(bit)) & 1n) === 0n) return `root lacks ${name}`;
    }
  } catch {
    // No /proc: let the lab itself fail with a clearer message.
  }
  return undefined;
}

function checkLibrary(soname: string): string | undefined {
  try {
    Deno.dlopen(soname, {}).close();
    return undefined;
  } catch (e) {
    if (e instanceof Deno.errors.NotCapable) return `loading ${soname} needs --allow-ffi`;
    return `${soname} is not installed`;
  }
}

/** The full path of a command on the PATH (or in an sbin directory), or undefined. */
export function findCommand(name: string): string | undefined {
  const dirs = (Deno.env.get("PATH") ?? "").split(":").filter((d) => d);
  dirs.push("/usr/local/sbin", "/usr/sbin", "/sbin");
  for (const dir of dirs) {
    const path = `${dir}/${name}`;
    try {
      const st = Deno.statSync(path);
      if (st.isFile && st.mode !== null && (st.mode & 0o111) !== 0) return path;
    } catch {
      // Not in this directory.
    }
  }
  return undefined;
}

/** Options for {@link labTest}. */
export interface LabTestOptions {
  /** Build the second server (`<prefix>-srv2`, 203.0.113.20) too. */
  secondServer?: boolean;
  /** Fail the test (and tear the lab down) when `fn` runs longer. Default 120 s. */
  timeoutMs?: number;
  /** Keep the run directory (logs, configs) when the test fails. Default true. */
  keepRunDirOnFailure?: boolean;
  /**
   * Deno's op and resource sanitizers. On by default: every subprocess the lab starts is
   * awaited by `down()`, so a leak they report is a real one. A test that starts its own
   * long-lived children or sockets may turn them off.
   */
  sanitize?: boolean;
}

let staleCleaned = false;

/**
 * Registers a Deno test that needs root or other things but builds its own labs (to test
 * the lab itself, say): ignored with one `SKIP <name>: <reason>` line when something in
 * `needs` is missing.
 */
export function requiringTest(
  name: string,
  needs: readonly Requirement[],
  fn: (t: Deno.TestContext) => Promise<void>,
): void {
  testOrSkip(missing(needs), { name, fn });
}

/**
 * Registers a Deno test that runs `fn` with a fresh, checked lab (prefix `krt-<random>`)
 * that is always torn down afterwards. When something in {@link LAB_BASE} or `needs` is
 * missing, the test is registered as ignored and `SKIP <name>: <reason>` is printed once.
 * The first lab test of a run also removes labs left by crashed runs (only `krt-` ones whose
 * owner is gone).
 */
export function labTest(
  name: string,
  needs: readonly Requirement[],
  fn: (lab: Lab, t: Deno.TestContext) => Promise<void>,
  opts: LabTestOptions = {},
): void {
  const why = missing([...LAB_BASE, ...needs]);
  if (why) {
    console.log(skipLine(name, why));
    Deno.test({ name, ignore: true, fn: () => {} });
    return;
  }
  const sanitize = opts.sanitize ?? true;
  Deno.test({
    name,
    sanitizeOps: sanitize,
    sanitizeResources: sanitize,
    async fn(t) {
      if (!staleCleaned) {
        staleCleaned = true;
        const removed = await cleanupStale(/^krt-/);
        if (removed.length > 0) console.log(`removed stale labs: ${removed.join(" ")}`);
      }
      const lab = new Lab({ prefix: randomTestPrefix(), secondServer: opts.secondServer });
      let failed = false;
      let failure: unknown;
      try {
        await lab.up();
        await withDeadline(fn(lab, t), opts.timeoutMs ?? 120_000, name);
      } catch (e) {
        failed = true;
        failure = e;
      }
      // Always torn down, even when the test failed; a teardown error never hides the
      // test's own failure.
      const keep = failed && (opts.keepRunDirOnFailure ?? true);
      try {
        await lab.down({ keepRunDir: keep });
        if (keep && exists(lab.runDir)) console.error(`lab run directory kept: ${lab.runDir}`);
      } catch (e) {
        if (!failed) throw e;
        console.error(`lab teardown also failed: ${e}`);
      }
      if (failed) throw failure;
    },
  });
}

async function withDeadline<T>(p: Promise<T>, ms: number, name: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${name}: no result after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}
