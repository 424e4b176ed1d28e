/**
 * A throwaway VM for tests that need a kernel of their own: Debian's 6.1 kernel under qemu
 * (TCG: KVM does not work on these machines), a small busybox initramfs, the host's /usr and
 * the repository read-only over 9p, and a guest script whose output, exit code and dmesg come
 * back. Nothing is ever loaded into the host kernel.
 *
 * - {@link vmMissing} installs what is missing (tests/vm/deps.sh, apt-get) and says why the VM
 *   cannot run here, or undefined.
 * - {@link buildKmod} builds kmod/ (krelay.ko with W=1, and krelay-nat) in a temporary copy.
 * - {@link runVm} boots, runs a script, and always kills qemu (by PID) and removes its files.
 * - {@link dmesgProblems} lists the lines of a dmesg that a clean run must not have.
 *
 * The guest has: busybox in /bbin; the host's /usr (so ip, iptables, dnsmasq, dig, curl,
 * nginx, modprobe with /lib/modules, glibc; Deno runs from the repository); the repository at
 * its host path; /kmod/krelay.ko and /kmod/krelay-nat when built; loopback up, no other NIC
 * (make veths and namespaces as you like). The script runs as root with `KRELAY_VM_REPO` set.
 *
 * @example
 * ```ts
 * import { runVm, vmMissing } from "./vm.ts";
 * const why = await vmMissing();
 * if (!why) {
 *   const r = await runVm({ script: "#!/bin/sh\nuname -r\n" });
 *   console.log(r.code, r.output);
 * }
 * ```
 * Command line: `deno run -A tests/vm/vm.ts [--kmod] [--bin FILE.c]... [--timeout S] SCRIPT`
 * boots with the module (--kmod) and static tools compiled from FILE.c, prints the serial
 * console to stderr, and exits with the script's code.
 * @module
 */

const HERE = new URL(".", import.meta.url).pathname;
/** The repository root (tests/vm/../..). */
export const REPO = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");

/** Markers the guest's /init prints on the serial console. */
export const MARK = { booted: "KRELAY-VM-BOOTED", exit: "KRELAY-VM-EXIT", fail: "KRELAY-VM-FAIL" };

async function run(
  cmd: string,
  args: string[],
  opts: { cwd?: string; timeoutMs?: number } = {},
): Promise<{ code: number; out: string; err: string }> {
  const child = new Deno.Command(cmd, {
    args,
    cwd: opts.cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
  }, opts.timeoutMs ?? 600_000);
  try {
    const r = await child.output();
    const dec = new TextDecoder();
    return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
  } finally {
    clearTimeout(timer);
  }
}

let hostCache: Promise<{ kver?: string; why?: string }> | undefined;

/**
 * Why the VM cannot run on this machine (not root, packages that cannot be installed, no 6.1
 * kernel image with headers), or undefined. Installs missing packages with apt-get once per
 * process; `extraDeps` are more `command:package` pairs (for example "dig:dnsutils").
 */
export async function vmMissing(extraDeps: string[] = []): Promise<string | undefined> {
  return (await vmHost(extraDeps)).why;
}

/** The 6.1 kernel version the VM boots (after {@link vmMissing} said it can run). */
export async function vmKernel(): Promise<string> {
  const { kver, why } = await vmHost([]);
  if (!kver) throw new Error(`VM unavailable: ${why}`);
  return kver;
}

function vmHost(extraDeps: string[]): Promise<{ kver?: string; why?: string }> {
  if (extraDeps.length > 0) return probeHost(extraDeps);
  hostCache ??= probeHost([]);
  return hostCache;
}

async function probeHost(extraDeps: string[]): Promise<{ kver?: string; why?: string }> {
  if (Deno.build.os !== "linux" || Deno.build.arch !== "x86_64") {
    return { why: "needs Linux on x86_64" };
  }
  if (Deno.uid() !== 0) return { why: "needs root (to install qemu and the 6.1 kernel)" };
  const r = await run("bash", [`${HERE}deps.sh`, ...extraDeps], { timeoutMs: 1_800_000 });
  if (r.code !== 0) return { why: r.err.trim() || `deps.sh failed (${r.code})` };
  const kver = r.out.trim().split("\n").pop();
  return kver ? { kver } : { why: "no 6.1 kernel found" };
}

/** A built module and tool, in a temporary folder that {@link KmodBuild.remove} deletes. */
export interface KmodBuild {
  /** Folder with krelay.ko and krelay-nat. */
  dir: string;
  /** Compiler output of the module build (W=1), for the warning check. */
  log: string;
  remove(): void;
}

/** Builds kmod/ with W=1 against `kver` in a temporary copy (never in the tree). */
export async function buildKmod(kver: string): Promise<KmodBuild> {
  const dir = await Deno.makeTempDir({ prefix: "krelay-kmod-" });
  const remove = () => {
    try {
      Deno.removeSync(dir, { recursive: true });
    } catch {
      // Already removed.
    }
  };
  try {
    await Deno.mkdir(`${dir}/src/tools`, { recursive: true });
    const sources = ["Makefile", "tools/krelay-nat.c"];
    for await (const e of Deno.readDir(`${REPO}/kmod`)) {
      if (e.isFile && /\.[ch]$/.test(e.name)) sources.push(e.name);
    }
    for (const f of sources) {
      await Deno.copyFile(`${REPO}/kmod/${f}`, `${dir}/src/${f}`);
    }
    const r = await run("make", ["-C", `${dir}/src`, `KVER=${kver}`, "W=1", "all"], {
      timeoutMs: 300_000,
    });
    if (r.code !== 0) throw new Error(`kmod build failed:\n${r.out}\n${r.err}`);
    await Deno.copyFile(`${dir}/src/krelay.ko`, `${dir}/krelay.ko`);
    await Deno.copyFile(`${dir}/src/tools/krelay-nat`, `${dir}/krelay-nat`);
    return { dir, log: r.out + r.err, remove };
  } catch (e) {
    remove();
    throw e;
  }
}

/**
 * Compiles one C file into a static binary (for the guest's /kmod: no libraries to load over
 * 9p) in a temporary folder; `remove()` deletes it.
 */
export async function buildStatic(src: string): Promise<{ path: string; remove(): void }> {
  const dir = await Deno.makeTempDir({ prefix: "krelay-bin-" });
  const remove = () => Deno.removeSync(dir, { recursive: true });
  const path = `${dir}/${src.replace(/^.*\//, "").replace(/\.c$/, "")}`;
  const r = await run("gcc", ["-static", "-O2", "-Wall", "-Wextra", "-Werror", "-o", path, src]);
  if (r.code !== 0) {
    remove();
    throw new Error(`gcc ${src} failed:\n${r.err}`);
  }
  return { path, remove };
}

/** What {@link runVm} takes. */
export interface VmOptions {
  /** The guest script (with its #! line; /bin/sh and /bin/bash exist). */
  script: string;
  /** Folder with krelay.ko and krelay-nat to put in the guest's /kmod. */
  kmodDir?: string;
  /** More host files (static binaries) to put in the guest's /kmod, which is on its PATH. */
  bins?: string[];
  /** Seconds the guest script may run (default 120). */
  scriptTimeoutSec?: number;
  /** Seconds until the guest must say it booted (default 180). */
  bootTimeoutSec?: number;
  /** Guest memory in MiB (default 1024) and CPUs (default 2). */
  memoryMb?: number;
  cpus?: number;
  /** Files to put in the exchange folder (/xfer in the guest) before boot. */
  files?: Record<string, string | Uint8Array>;
  /** Called with each chunk of serial console output (for live logs). */
  onSerial?: (text: string) => void;
}

/** What came back from the VM. */
export interface VmResult {
  /** The script's exit code; undefined when it never finished (see `failure`). */
  code?: number;
  /** The script's stdout and stderr, interleaved. */
  output: string;
  /** The guest kernel's log after the script. */
  dmesg: string;
  /** Everything on the serial console (boot, output, kernel messages). */
  serial: string;
  /** Why the run did not complete: boot watchdog, hard timeout, guest init failure. */
  failure?: string;
  /** Files the script left in /xfer, by name (text). */
  files: Record<string, string>;
  durationMs: number;
}

/**
 * Boots the VM, runs `script` in it, and returns its output, exit code and dmesg. qemu runs
 * under `timeout` with a boot watchdog; whatever happens, qemu is killed by PID and the
 * temporary files are removed before this returns.
 */
export async function runVm(opts: VmOptions): Promise<VmResult> {
  const kver = await vmKernel();
  const started = Date.now();
  const scriptTimeout = opts.scriptTimeoutSec ?? 120;
  // TCG usually boots well within a minute here, but on a busy shared machine a CI run once
  // did not within 60 s: a slow boot is not what these tests are about.
  const bootTimeout = opts.bootTimeoutSec ?? 180;
  const hardTimeout = bootTimeout + scriptTimeout + 30;
  const tmp = await Deno.makeTempDir({ prefix: "krelay-vm-" });
  const xfer = `${tmp}/xfer`;
  const cpio = `${tmp}/initramfs.cpio`;
  const pidfile = `${tmp}/qemu.pid`;
  let child: Deno.ChildProcess | undefined;
  let serial = "";
  let failure: string | undefined;
  try {
    await Deno.mkdir(xfer);
    await Deno.writeTextFile(`${xfer}/guest.sh`, opts.script, { mode: 0o755 });
    await Deno.chmod(`${xfer}/guest.sh`, 0o755);
    for (const [name, data] of Object.entries(opts.files ?? {})) {
      if (typeof data === "string") await Deno.writeTextFile(`${xfer}/${name}`, data);
      else await Deno.writeFile(`${xfer}/${name}`, data);
    }
    const b = await run("bash", [
      `${HERE}initramfs.sh`,
      cpio,
      kver,
      opts.kmodDir ?? "",
      ...(opts.bins ?? []),
    ], {
      timeoutMs: 120_000,
    });
    if (b.code !== 0) throw new Error(`initramfs build failed: ${b.err}`);

    const append = [
      "console=ttyS0",
      "quiet",
      "panic=-1",
      `KRELAY_VM_REPO=${REPO}`,
      `KRELAY_VM_TIMEOUT=${scriptTimeout}`,
    ].join(" ");
    const share = (path: string, tag: string, ro: boolean) =>
      `local,path=${path},mount_tag=${tag},security_model=none${ro ? ",readonly=on" : ""}`;
    child = new Deno.Command("timeout", {
      args: [
        "-k",
        "5",
        String(hardTimeout),
        "qemu-system-x86_64",
        "-accel",
        "tcg,thread=multi",
        "-cpu",
        "max",
        "-smp",
        String(opts.cpus ?? 2),
        "-m",
        `${opts.memoryMb ?? 1024}M`,
        "-kernel",
        `/boot/vmlinuz-${kver}`,
        "-initrd",
        cpio,
        "-append",
        append,
        "-nographic",
        "-no-reboot",
        "-nodefaults",
        "-serial",
        "stdio",
        "-monitor",
        "none",
        "-pidfile",
        pidfile,
        "-virtfs",
        share("/usr", "usr", true),
        "-virtfs",
        share(REPO, "repo", true),
        "-virtfs",
        share(xfer, "xfer", false),
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();

    const proc = child;
    let booted = false;
    const watchdog = setTimeout(() => {
      if (!booted) {
        failure = `boot watchdog: no ${MARK.booted} within ${bootTimeout}s`;
        killQemu(proc, pidfile, tmp);
      }
    }, bootTimeout * 1000);
    const hard = setTimeout(() => {
      failure ??= `hard timeout: the VM ran for more than ${hardTimeout}s`;
      killQemu(proc, pidfile, tmp);
    }, (hardTimeout + 10) * 1000);
    const dec = new TextDecoder();
    const stderr = new Response(proc.stderr).text();
    try {
      for await (const chunk of proc.stdout) {
        const text = dec.decode(chunk, { stream: true }).replaceAll("\r", "");
        serial += text;
        opts.onSerial?.(text);
        if (!booted && serial.includes(MARK.booted)) booted = true;
      }
      const status = await proc.status;
      const err = await stderr;
      if (status.code === 124 || status.code === 137) {
        failure ??= `hard timeout: the VM ran for more than ${hardTimeout}s`;
      } else if (status.code !== 0 && !serial.includes(MARK.exit)) {
        failure ??= `qemu exited with ${status.code}: ${err.trim()}`;
      }
    } finally {
      clearTimeout(watchdog);
      clearTimeout(hard);
    }
    const guestFail = new RegExp(`${MARK.fail} (.*)`).exec(serial)?.[1];
    if (guestFail) failure ??= `guest init: ${guestFail}`;

    const files: Record<string, string> = {};
    for await (const e of Deno.readDir(xfer)) {
      if (e.isFile && e.name !== "guest.sh") {
        files[e.name] = await Deno.readTextFile(`${xfer}/${e.name}`);
      }
    }
    const rcText = files.rc?.trim();
    const code = rcText !== undefined && /^\d+$/.test(rcText) ? Number(rcText) : undefined;
    if (code === undefined) failure ??= "the guest script did not finish";
    // busybox timeout ends the script with SIGTERM: 128 + 15.
    if (code === 143) failure ??= `the guest script timed out after ${scriptTimeout}s`;
    return {
      code,
      output: files.output ?? "",
      dmesg: files.dmesg ?? "",
      serial,
      failure,
      files,
      durationMs: Date.now() - started,
    };
  } finally {
    if (child) {
      killQemu(child, pidfile, tmp);
      await Promise.race([
        child.status.catch(() => undefined),
        new Promise((r) => setTimeout(r, 10_000)),
      ]);
    }
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}

/** Kills qemu by its PID (checked to be ours) and the `timeout` wrapper around it. */
function killQemu(child: Deno.ChildProcess, pidfile: string, tmp: string): void {
  try {
    const pid = Number(Deno.readTextFileSync(pidfile).trim());
    const cmdline = Deno.readTextFileSync(`/proc/${pid}/cmdline`);
    if (pid > 1 && cmdline.includes("qemu-system") && cmdline.includes(tmp)) {
      Deno.kill(pid, "SIGKILL");
    }
  } catch {
    // No pidfile yet, or qemu already gone.
  }
  try {
    child.kill("SIGKILL");
  } catch {
    // Already exited.
  }
}

/**
 * The dmesg lines that show a kernel problem: BUG, WARNING, Oops, a call trace, a panic,
 * lockups, or taint other than the expected out-of-tree/unsigned-module messages.
 */
export function dmesgProblems(dmesg: string): string[] {
  const allowed = [
    /loading out-of-tree module taints kernel/,
    /module verification failed: signature and\/or required key missing - tainting kernel/,
  ];
  // Case matters: "BUG:" is a problem, "report a bug" in a boot message is not.
  const bad =
    /\bBUG[: ]|WARNING:|Oops|Call Trace|Kernel panic|general protection fault|soft lockup|hard LOCKUP|blocked for more than|RIP:|refcount_t:|use-after-free|KASAN|UBSAN|list_(add|del) corruption|double free/;
  const taint = /taint/i;
  return dmesg.split("\n").filter((l) =>
    (bad.test(l) || taint.test(l)) && !allowed.some((a) => a.test(l))
  );
}

if (import.meta.main) {
  const args = [...Deno.args];
  let kmod = false;
  let timeout = 120;
  const sources: string[] = [];
  while (args[0]?.startsWith("--")) {
    const a = args.shift()!;
    if (a === "--kmod") kmod = true;
    else if (a === "--timeout") timeout = Number(args.shift());
    else if (a === "--bin") sources.push(args.shift()!);
    else throw new Error(`unknown option ${a}`);
  }
  if (args.length !== 1) {
    console.error(
      "usage: deno run -A tests/vm/vm.ts [--kmod] [--bin FILE.c]... [--timeout S] SCRIPT",
    );
    Deno.exit(2);
  }
  const why = await vmMissing();
  if (why) {
    console.error(`VM unavailable: ${why}`);
    Deno.exit(77);
  }
  const build = kmod ? await buildKmod(await vmKernel()) : undefined;
  const bins: { path: string; remove(): void }[] = [];
  let code = 1;
  try {
    for (const src of sources) bins.push(await buildStatic(src));
    const r = await runVm({
      script: await Deno.readTextFile(args[0]),
      kmodDir: build?.dir,
      bins: bins.map((b) => b.path),
      scriptTimeoutSec: timeout,
      onSerial: (t) => Deno.stderr.writeSync(new TextEncoder().encode(t)),
    });
    const how = r.failure ? `: ${r.failure}` : "";
    console.log(`--- exit ${r.code ?? "none"} in ${r.durationMs} ms${how}`);
    const problems = dmesgProblems(r.dmesg);
    if (problems.length > 0) console.log(`--- dmesg problems:\n${problems.join("\n")}`);
    code = r.code ?? 1;
  } finally {
    build?.remove();
    for (const b of bins) b.remove();
  }
  Deno.exit(code);
}
