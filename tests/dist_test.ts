/**
 * The distribution (tools/dist.sh), built once for this file into a temporary directory:
 * - dist/krelay, the single file, copied to an empty directory and run there with an empty
 *   environment (`env -i`): version, config check, and in the lab `krelay run` relaying real
 *   dig and curl with a packet script type-checked without the repository, driven by its own
 *   `status` and `script` commands;
 * - the .deb: its files, control fields and conffile, and lintian.
 * The single file's launcher and the .deb's /usr/bin/krelay pass Deno the launcher's flags.
 */

import { deepStrictEqual as assertEquals, match, ok as assert } from "node:assert/strict";
import pkg from "../package.json" with { type: "json" };
import { LAB_ADDR } from "../src/lab/addresses.ts";
import { run } from "../src/lab/process.ts";
import { startServers } from "../src/lab/servers.ts";
import { waitFor } from "../src/lab/wait.ts";
import type { ScriptInfo } from "../src/script/host.ts";
import { dig } from "./support/dig.ts";
import { krelayRules, LAB_FLAGS } from "./support/krelay.ts";
import { findCommand, labTest, requiringTest } from "./support/requirements.ts";

const root = new URL("../", import.meta.url).pathname;
const VERSION = pkg.version;
const DEB_NAME = `krelay_${VERSION}_amd64.deb`;

interface Dist {
  dir: string;
  single: string;
  deb: string;
}

let built: Promise<Dist> | undefined;

/** Builds the single file and the .deb once for every test of this file. */
function dist(): Promise<Dist> {
  built ??= (async () => {
    const dir = await Deno.makeTempDir({ prefix: "krelay-dist-" });
    globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
    const r = await run(["bash", `${root}tools/dist.sh`], {
      env: { DIST_OUT: dir, DIST_DEB_COMPRESSION: "gzip" },
      timeoutMs: 300_000,
    });
    if (!r.success) throw new Error(`tools/dist.sh failed:\n${r.stdout}\n${r.stderr}`);
    return { dir, single: `${dir}/krelay`, deb: `${dir}/${DEB_NAME}` };
  })();
  return built;
}

/** The flags the ./krelay launcher gives `deno run` (tools/run_flags.sh). */
async function launcherFlags(): Promise<string[]> {
  const r = await run([
    "bash",
    "-c",
    `. '${root}tools/run_flags.sh' && printf '%s\\n' "\${KRELAY_RUN_FLAGS[@]}"`,
  ], { check: true });
  return r.stdout.split("\n").filter((l) => l !== "");
}

/** Runs `file args...` from `cwd` with nothing in its environment. */
async function bare(file: string, cwd: string, args: string[], timeoutMs = 90_000) {
  return await run(["env", "-i", "-C", cwd, file, ...args], { timeoutMs });
}

/**
 * The single file copied to a directory of its own, with an empty working directory beside
 * it; the cache it unpacks into (as root with no environment: /var/cache/krelay/<version>-<hash>)
 * is removed afterwards when this test made it.
 */
async function withCopy(fn: (bin: string, cwd: string) => Promise<void>): Promise<void> {
  const { single } = await dist();
  const dir = await Deno.makeTempDir({ prefix: "krelay-copy-" });
  const cachesBefore = new Set(await listCaches());
  const baseBefore = await Deno.stat(cacheBase()).then(() => true, () => false);
  try {
    await Deno.mkdir(`${dir}/bin`);
    await Deno.mkdir(`${dir}/empty`);
    await Deno.copyFile(single, `${dir}/bin/krelay`);
    await Deno.chmod(`${dir}/bin/krelay`, 0o755);
    await fn(`${dir}/bin/krelay`, `${dir}/empty`);
    assertEquals([...Deno.readDirSync(`${dir}/empty`)], [], "krelay wrote into its working dir");
  } finally {
    await Deno.remove(dir, { recursive: true });
    if (!baseBefore) await Deno.remove(cacheBase(), { recursive: true }).catch(() => {});
    for (const c of await listCaches()) {
      if (!cachesBefore.has(c)) await Deno.remove(c, { recursive: true });
    }
  }
}

/** Where the single file unpacks itself with no environment (see tools/dist/launcher.sh.in). */
function cacheBase(): string {
  return Deno.uid() === 0 ? "/var/cache/krelay" : `/tmp/krelay-cache-${Deno.uid()}`;
}

/** The single file's unpacked builds for this version. */
async function listCaches(): Promise<string[]> {
  const base = cacheBase();
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(base)) {
      if (e.name.startsWith(`${VERSION}-`)) out.push(`${base}/${e.name}`);
    }
  } catch {
    // No cache yet.
  }
  return out;
}

requiringTest(
  "dist/krelay runs from an empty directory with an empty environment",
  ["bash", "cmd:env"],
  async () => {
    const before = new Set(await listCaches());
    await withCopy(async (bin, cwd) => {
      const version = await bare(bin, cwd, ["--version"]);
      assertEquals([version.code, version.stdout], [0, `krelay ${VERSION}\n`], version.stderr);
      const json = await bare(bin, cwd, ["version", "--json"]);
      assertEquals(JSON.parse(json.stdout).krelay, VERSION);
      assertEquals(JSON.parse(json.stdout).deno, pkg.devDependencies.deno);
      // One unpacked build, found again by the second start.
      assertEquals((await listCaches()).filter((c) => !before.has(c)).length, 1);
      const good = `${cwd}/../good.toml`;
      await Deno.writeTextFile(good, 'real_ip = "203.0.113.10"\n');
      const check = await bare(bin, cwd, ["config", "check", good]);
      assertEquals(check.code, 0, check.stderr);
      match(check.stdout, /^real_ip += 203\.0\.113\.10$/m);
      const bad = await bare(bin, cwd, ["config", "check", good, "--gport", "0"]);
      assertEquals(bad.code, 2);
      match(bad.stderr, /gport: must be 1-65535/);
      const api = await bare(bin, cwd, ["script", "api"]);
      assertEquals(
        api.stdout.trimEnd(),
        (await Deno.readTextFile(`${root}src/script/api.ts`)).trimEnd(),
      );
      const unknown = await bare(bin, cwd, ["frobnicate"]);
      assertEquals(unknown.code, 2);
    });
  },
);

requiringTest(
  "dist/krelay refuses a damaged copy instead of running it",
  ["bash", "cmd:env"],
  async () => {
    await withCopy(async (bin, cwd) => {
      const bytes = await Deno.readFile(bin);
      bytes[bytes.length - 100] ^= 0xff;
      await Deno.writeFile(bin, bytes);
      const r = await bare(bin, cwd, ["--version"]);
      assertEquals(r.code, 1);
      match(r.stderr, /is damaged/);
    });
  },
);

requiringTest(
  "dist/krelay and the .deb's /usr/bin/krelay give Deno the launcher's flags",
  ["bash", "cmd:dpkg-deb"],
  async () => {
    const { single, deb } = await dist();
    const flags = await launcherFlags();
    const header = new TextDecoder().decode((await Deno.readFile(single)).subarray(0, 8192));
    const usrBin = await run([
      "sh",
      "-c",
      `dpkg-deb --fsys-tarfile '${deb}' | tar -xOf - ./usr/bin/krelay`,
    ], {
      check: true,
    });
    for (const text of [header, usrBin.stdout]) {
      const exec = text.split("\n").find((l) => l.startsWith('exec "$dir/deno" run '));
      assert(exec !== undefined, "no exec line");
      for (const f of flags) assert(exec.includes(` '${f}' `), `${f} missing from ${exec}`);
    }
  },
);

labTest(
  "dist/krelay, copied anywhere and run with an empty environment, relays DNS and HTTP with a script",
  ["iptables", "nft", "dnsmasq", "nginx", "dig", "curl", "libnetfilter_queue", "cmd:env"],
  async (lab) => {
    await withCopy(async (bin, cwd) => {
      const { srv1 } = await startServers(lab);
      // A script elsewhere, importing the API by its bare name: checked against the API file
      // shipped inside the single file.
      const script = `${lab.runDir}/count.ts`;
      await Deno.writeTextFile(
        script,
        'import type { Packet, ScriptContext, Verdict } from "krelay/script";\n' +
          "export function match(_p: Packet, ctx: ScriptContext): boolean {\n" +
          '  return ctx.hook === "request";\n}\n' +
          'export function target(_p: Packet): Verdict {\n  return "accept";\n}\n',
      );
      const socket = `${lab.runDir}/dist.sock`;
      const proc = lab.spawn("relay", "krelay-dist", [
        "env",
        "-i",
        "-C",
        cwd,
        bin,
        "run",
        ...LAB_FLAGS,
        "--log-json",
        "--control-socket",
        socket,
        "--script",
        script,
        "--on",
        "udp:53,tcp:80",
      ]);
      await waitFor(async () => {
        if (!proc.running) throw new Error(`krelay exited early:\n${await proc.logTail(30)}`);
        return (await proc.readLog()).includes("relaying on");
      }, { timeoutMs: 60_000, what: "dist/krelay to start" });

      // The running process is the unpacked Deno with the launcher's flags and no environment
      // but what the launcher set.
      const cmdline = (await Deno.readTextFile(`/proc/${proc.pid}/cmdline`)).split("\0");
      for (const f of await launcherFlags()) assert(cmdline.includes(f), `${f} not in ${cmdline}`);
      assert(cmdline.some((a) => a.endsWith("/app/main.js")), cmdline.join(" "));
      const environ = (await Deno.readTextFile(`/proc/${proc.pid}/environ`)).split("\0")
        .filter((e) => e !== "").map((e) => e.split("=")[0]).sort();
      assertEquals(environ, [
        "DENO_DIR",
        "DENO_NO_PACKAGE_JSON",
        "DENO_NO_UPDATE_CHECK",
        "KRELAY_SELF",
        "PATH",
        "PWD", // the shell's own
      ]);

      const answer = await dig(lab, LAB_ADDR.relay, ["lab.example"], { tries: 2 });
      assertEquals(answer.stdout.trim(), LAB_ADDR.dnsAnswer);
      const q = await srv1.dns.waitForQuery((q) => q.name === "lab.example", 5_000);
      assertEquals(q.client, LAB_ADDR.client);
      const curl = await lab.exec("client", [
        "curl",
        "-sS",
        "--max-time",
        "5",
        `http://${LAB_ADDR.relay}/`,
      ], { timeoutMs: 15_000 });
      assertEquals(curl.stdout, srv1.web.indexText, curl.stderr);
      const hit = await srv1.web.waitForRequest(() => true, 5_000);
      assertEquals(hit.remoteAddr, LAB_ADDR.client);

      // Its own control commands, from the empty directory with no environment either.
      const status = await bare(bin, cwd, ["status", "--json", "--socket", socket]);
      assertEquals(status.code, 0, status.stderr);
      assertEquals(JSON.parse(status.stdout).state, "started");
      const list = await bare(bin, cwd, ["script", "list", "--json", "--socket", socket]);
      const [info] = JSON.parse(list.stdout) as ScriptInfo[];
      assertEquals([info.name, info.state, info.errors], ["count", "enabled", 0]);
      assert(info.matched >= 2, `matched ${info.matched}`);
      // A script that fails the type check is refused with the compiler's message.
      const badFile = `${lab.runDir}/bad.ts`;
      await Deno.writeTextFile(
        badFile,
        'import type { Packet } from "krelay/script";\n' +
          "export function match(p: Packet): string {\n  return p.protocol;\n}\n",
      );
      const bad = await bare(bin, cwd, ["script", "load", "bad", badFile, "--socket", socket]);
      assertEquals(bad.code, 1);
      match(bad.stderr, /not assignable/);

      assertEquals((await proc.stop(15_000)).code, 0);
      assertEquals(await krelayRules(lab), []);
    });
  },
  { timeoutMs: 180_000 },
);

requiringTest(
  "the .deb holds krelay, its runtime, unit, config, man page and module sources",
  ["cmd:dpkg-deb"],
  async () => {
    const { deb } = await dist();
    const list = await run(["dpkg-deb", "--contents", deb], { check: true });
    const paths = list.stdout.split("\n").filter((l) => l !== "").map((l) =>
      l.split(/\s+/).slice(5).join(" ").replace(/^\.\//, "/")
    );
    const files = new Set(paths.map((p) => p.split(" -> ")[0]));
    for (
      const f of [
        "/usr/bin/krelay",
        "/usr/lib/krelay/deno",
        "/usr/lib/krelay/app/main.js",
        "/usr/lib/krelay/app/relay_thread.js",
        "/usr/lib/krelay/app/gate_thread.js",
        "/usr/lib/krelay/app/worker_runtime.js",
        "/usr/lib/krelay/app/api.ts",
        "/lib/systemd/system/krelay.service",
        "/etc/krelay/krelay.toml",
        "/usr/share/man/man8/krelay.8.gz",
        "/usr/share/bash-completion/completions/krelay",
        "/usr/share/doc/krelay/copyright",
        `/usr/src/krelay-${VERSION}/dkms.conf`,
        `/usr/src/krelay-${VERSION}/Makefile`,
        `/usr/src/krelay-${VERSION}/krelay_abi.h`,
      ]
    ) assert(files.has(f), `${f} is not in the .deb:\n${[...files].join("\n")}`);
    // Every source file of kmod/ (however it is split) is shipped for DKMS.
    for (const dir of ["kmod", "kmod/tools"]) {
      for await (const e of Deno.readDir(`${root}${dir}`)) {
        if (!/\.[ch]$/.test(e.name)) continue;
        const f = `/usr/src/krelay-${VERSION}/${dir.slice(5)}${dir === "kmod" ? "" : "/"}${e.name}`;
        assert(files.has(f), `${f} is not in the .deb`);
      }
    }
    const field = async (name: string) =>
      (await run(["dpkg-deb", "--field", deb, name], { check: true })).stdout.trim();
    assertEquals(await field("Package"), "krelay");
    assertEquals(await field("Version"), VERSION);
    const depends = (await field("Depends")).split(",").map((d) => d.trim().split(" ")[0]);
    for (const d of ["libnetfilter-queue1", "libmnl0", "iptables", "nftables", "iproute2"]) {
      assert(depends.includes(d), `Depends lacks ${d}: ${depends}`);
    }
    const control = await run([
      "sh",
      "-c",
      `dpkg-deb --ctrl-tarfile '${deb}' | tar -xOf - ./conffiles`,
    ], {
      check: true,
    });
    assertEquals(control.stdout.trim(), "/etc/krelay/krelay.toml");
    const unit = await run([
      "sh",
      "-c",
      `dpkg-deb --fsys-tarfile '${deb}' | tar -xOf - ./lib/systemd/system/krelay.service`,
    ], { check: true });
    match(unit.stdout, /^ExecStart=\/usr\/bin\/krelay run --config \/etc\/krelay\/krelay.toml/m);
    match(unit.stdout, /^CapabilityBoundingSet=.*CAP_BPF/m);
  },
);

// lintian is large: installed here (as root, through apt-get) rather than for every lab run.
if (!findCommand("lintian") && Deno.uid() === 0 && findCommand("apt-get")) {
  await run([
    "apt-get",
    "-o",
    "DPkg::Lock::Timeout=300",
    "-y",
    "-q",
    "install",
    "--no-install-recommends",
    "lintian",
  ], {
    env: { DEBIAN_FRONTEND: "noninteractive" },
    timeoutMs: 600_000,
  });
}

requiringTest("lintian reports no error on the .deb", ["cmd:lintian", "cmd:dpkg-deb"], async () => {
  const { deb } = await dist();
  const r = await run(["lintian", "--no-tag-display-limit", deb], { timeoutMs: 180_000 });
  const errors = r.stdout.split("\n").filter((l) => l.startsWith("E:"));
  assertEquals(errors, [], r.stdout);
  // lintian exits 0 with warnings only, non-zero for errors (or when it could not run).
  assertEquals(r.code, 0, `${r.stdout}\n${r.stderr}`);
});
