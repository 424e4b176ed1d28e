// The command line as a user meets it, through the real launcher (./krelay) as a subprocess:
// version, usage errors, `config check` and the bash completion. No root, no daemon.
import { deepStrictEqual as assertEquals, match, ok } from "node:assert/strict";
import pkg from "../../package.json" with { type: "json" };

const KRELAY = new URL("../../krelay", import.meta.url).pathname;

async function krelay(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(KRELAY, { args, stdout: "piped", stderr: "piped" }).output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

async function withFile(text: string, fn: (path: string) => Promise<void>): Promise<void> {
  const path = await Deno.makeTempFile({ prefix: "krelay-config-", suffix: ".toml" });
  try {
    await Deno.writeTextFile(path, text);
    await fn(path);
  } finally {
    await Deno.remove(path);
  }
}

Deno.test("krelay --version and version --json print package.json's version", async () => {
  assertEquals(await krelay(["--version"]), {
    code: 0,
    stdout: `krelay ${pkg.version}\n`,
    stderr: "",
  });
  const json = await krelay(["version", "--json"]);
  assertEquals(json.code, 0, json.stderr);
  const v = JSON.parse(json.stdout);
  assertEquals(v.krelay, pkg.version);
  match(v.deno, /^\d+\.\d+\.\d+/);
  match(v.v8, /^\d+\.\d+/);
});

Deno.test("an unknown command, option or missing argument is a usage error (exit 2)", async () => {
  const run = await krelay(["frobnicate"]);
  assertEquals(run.code, 2);
  match(run.stderr, /unknown command 'frobnicate'/);
  match(run.stderr, /\(see krelay --help\)/);
  const option = await krelay(["run", "--frobnicate"]);
  assertEquals(option.code, 2);
  match(option.stderr, /unknown option '--frobnicate'/);
  match(option.stderr, /\(see krelay run --help\)/);
  assertEquals((await krelay(["completion"])).code, 2);
  assertEquals((await krelay(["config", "check", "--gport"])).code, 2);
});

Deno.test("krelay config check prints the effective configuration of a good file", async () => {
  await withFile('real_ip = "203.0.113.10"\nudp_ports = [53, 5353]\n', async (path) => {
    const run = await krelay(["config", "check", path, "--gport", "16001"]);
    assertEquals(run.code, 0, run.stderr);
    match(run.stdout, /^real_ip += 203\.0\.113\.10$/m);
    match(run.stdout, /^udp_ports += 53,5353$/m);
    match(run.stdout, /^gport += 16001$/m);
    match(run.stdout, /^tcp_ports += 80$/m);
    const json = await krelay(["config", "check", path, "--json", "--no-relay-cpu-affinity"]);
    assertEquals(json.code, 0, json.stderr);
    const config = JSON.parse(json.stdout);
    assertEquals([config.real_ip, config.relay_cpu_affinity], ["203.0.113.10", false]);
  });
});

Deno.test("krelay config check lists every error of a bad file and exits 2", async () => {
  await withFile('real_ip = "nowhere"\ngport = 70000\nudp_port = [53]\n', async (path) => {
    const run = await krelay(["config", "check", path]);
    assertEquals([run.code, run.stdout], [2, ""]);
    match(run.stderr, /is not valid/);
    match(run.stderr, /real_ip: must be an IPv4 or IPv6 address/);
    match(run.stderr, /gport: must be 1-65535/);
    match(run.stderr, /unknown key: udp_port/);
  });
  await withFile("real_ip = [", async (path) => {
    const run = await krelay(["config", "check", path]);
    assertEquals(run.code, 2);
    match(run.stderr, new RegExp(`config file ${path}`));
  });
  const flags = await krelay(["config", "check", "--gport", "0"]);
  assertEquals(flags.code, 2);
  match(flags.stderr, /gport: must be 1-65535/);
});

Deno.test("krelay completion bash completes commands, subcommands and flags in bash", async () => {
  const run = await krelay(["completion", "bash"]);
  assertEquals(run.code, 0, run.stderr);
  const complete = async (line: string) => {
    const words = line.split(" ");
    const script = `${run.stdout}\nCOMP_WORDS=(${words.map((w) => `'${w}'`).join(" ")})\n` +
      `COMP_CWORD=${words.length - 1}\n_krelay\necho "\${COMPREPLY[*]}"\n`;
    const out = await new Deno.Command("bash", { args: ["-c", script], stdout: "piped" }).output();
    return new TextDecoder().decode(out.stdout).trim().split(" ");
  };
  assertEquals(await complete("krelay con"), ["config"]);
  assertEquals((await complete("krelay config ")).sort(), ["check", "get", "set"]);
  assertEquals(await complete("krelay config check --no-relay-cpu"), ["--no-relay-cpu-affinity"]);
  ok((await complete("krelay run --")).includes("--real-ip"));
  const bad = await krelay(["completion", "tcsh"]);
  assertEquals(bad.code, 2);
});
