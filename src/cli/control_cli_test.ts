// The real CLI (./krelay) as a subprocess, against no daemon or a fake one on a Unix socket in
// a temp dir: exit codes, stdout and stderr as a user or a script sees them. No root needed.
import { deepStrictEqual as assertEquals, match, ok } from "node:assert/strict";
import { withDaemon, withDir } from "../control/_fake_daemon.ts";
import { sampleNat, sampleReport } from "../control/_report_fixture.ts";

const KRELAY = new URL("../../krelay", import.meta.url).pathname;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `./krelay args...` with the test's environment and `env`; stdout is a pipe. */
async function krelay(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const out = await new Deno.Command(KRELAY, { args, env, stdout: "piped", stderr: "piped" })
    .output();
  const decoder = new TextDecoder();
  return {
    code: out.code,
    stdout: decoder.decode(out.stdout),
    stderr: decoder.decode(out.stderr),
  };
}

/** A fake daemon answering every command with `result`. */
function answering(result: unknown): (line: string) => string {
  return () => JSON.stringify({ ok: true, result }) + "\n";
}

Deno.test("krelay status exits 1 and says krelay is not running when no daemon runs", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/none.sock`;
    const run = await krelay(["status", "--socket", path]);
    assertEquals(run, {
      code: 1,
      stdout: "",
      stderr: `krelay status: krelay is not running (no control socket at ${path})\n`,
    });
  });
});

Deno.test("krelay nat, config, start and stop say krelay is not running too", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/none.sock`;
    const commands: [string, string[]][] = [
      ["nat", ["nat"]],
      ["config get", ["config", "get"]],
      ["config set", ["config", "set", "gport", "16001"]],
      ["start", ["start"]],
      ["stop", ["stop"]],
    ];
    for (const [name, args] of commands) {
      const run = await krelay([...args, "--socket", path]);
      assertEquals(run, {
        code: 1,
        stdout: "",
        stderr: `krelay ${name}: krelay is not running (no control socket at ${path})\n`,
      });
    }
  });
});

Deno.test("krelay status shows the report, without colours into a pipe", async () => {
  await withDaemon(answering(sampleReport()), async (path, daemon) => {
    const run = await krelay(["status", "--socket", path]);
    assertEquals(run.code, 0, run.stderr);
    match(run.stdout, /uptime +1h 02m 03s/);
    match(run.stdout, /ENOBUFS.* 19 /);
    match(run.stdout, /udp_ports += 53,5353/);
    ok(!run.stdout.includes("\x1b["), "no colours");
    assertEquals(daemon.requests, ['{"cmd":"status"}\n']);
  });
});

Deno.test("krelay status --json prints the status report", async () => {
  await withDaemon(answering(sampleReport()), async (path) => {
    const run = await krelay(["status", "--json", "--socket", path]);
    assertEquals(run.code, 0, run.stderr);
    assertEquals(JSON.parse(run.stdout), sampleReport());
  });
});

Deno.test("krelay status finds the socket in KRELAY_SOCKET", async () => {
  await withDaemon(answering(sampleReport()), async (path) => {
    const run = await krelay(["status"], { KRELAY_SOCKET: path });
    assertEquals(run.code, 0, run.stderr);
    match(run.stdout, /pid +4242/);
  });
});

Deno.test("krelay nat prints one row per entry and a count; --json the array", async () => {
  await withDaemon(answering(sampleNat()), async (path, daemon) => {
    const run = await krelay(["nat", "--socket", path]);
    assertEquals(run.code, 0, run.stderr);
    match(run.stdout, /udp .*198\.51\.100\.10:40000/);
    match(run.stdout, /tcp .* 20001 .*established/);
    match(run.stdout, /2 NAT entries \(1 udp, 1 tcp\)\n$/);
    const json = await krelay(["nat", "--json", "--socket", path]);
    assertEquals(JSON.parse(json.stdout), sampleNat());
    assertEquals(daemon.requests, ['{"cmd":"nat"}\n', '{"cmd":"nat"}\n']);
  });
});

Deno.test("krelay config get prints every key = value", async () => {
  await withDaemon(answering(sampleReport().config), async (path, daemon) => {
    const run = await krelay(["config", "get", "--socket", path]);
    assertEquals(run.code, 0, run.stderr);
    match(run.stdout, /^real_ip += 203\.0\.113\.10$/m);
    match(run.stdout, /^tcp_ports += 80,8080$/m);
    assertEquals(daemon.requests, ['{"cmd":"config-get"}\n']);
  });
});

Deno.test("krelay config get KEY prints the value alone, lists with commas", async () => {
  await withDaemon(answering({ udp_ports: [53, 5353] }), async (path, daemon) => {
    const run = await krelay(["config", "get", "udp_ports", "--socket", path]);
    assertEquals(run, { code: 0, stdout: "53,5353\n", stderr: "" });
    assertEquals(daemon.requests, ['{"cmd":"config-get","key":"udp_ports"}\n']);
  });
});

Deno.test("krelay config get --json prints the configuration, or one value, as JSON", async () => {
  const config = sampleReport().config;
  await withDaemon(answering(config), async (path) => {
    const run = await krelay(["config", "get", "--json", "--socket", path]);
    assertEquals(run.code, 0, run.stderr);
    assertEquals(JSON.parse(run.stdout), config);
  });
  await withDaemon(answering({ udp_ports: [53, 5353] }), async (path) => {
    const run = await krelay(["config", "get", "udp_ports", "--json", "--socket", path]);
    assertEquals(run, { code: 0, stdout: "[53,5353]\n", stderr: "" });
  });
});

Deno.test("krelay config get with an unknown key exits 2 listing the keys", async () => {
  await withDaemon(answering({}), async (path, daemon) => {
    const run = await krelay(["config", "get", "udp_port", "--socket", path]);
    assertEquals(run.code, 2);
    match(
      run.stderr,
      /^krelay config get: unknown key 'udp_port'; the keys are: real_ip, .*udp_ports/,
    );
    assertEquals(daemon.requests, []);
  });
});

Deno.test("krelay config set prints KEY: FROM -> TO", async () => {
  const change = { key: "udp_ports", from: [53], to: [53, 5353] };
  await withDaemon(answering(change), async (path, daemon) => {
    const run = await krelay(["config", "set", "udp_ports", "53,5353", "--socket", path]);
    assertEquals(run, { code: 0, stdout: "udp_ports: 53 -> 53,5353\n", stderr: "" });
    assertEquals(daemon.requests, [
      '{"cmd":"config-set","key":"udp_ports","value":"53,5353"}\n',
    ]);
  });
});

Deno.test("krelay config set exits 1 with krelay's refusal, a negative value sent as is", async () => {
  const error = "udp_timeout: must be more than 0 seconds";
  await withDaemon(() => JSON.stringify({ ok: false, error }) + "\n", async (path, daemon) => {
    const run = await krelay(["config", "set", "udp_timeout", "-5", "--socket", path]);
    assertEquals(run, { code: 1, stdout: "", stderr: `krelay config set: ${error}\n` });
    assertEquals(daemon.requests, [
      '{"cmd":"config-set","key":"udp_timeout","value":"-5"}\n',
    ]);
  });
});

Deno.test("krelay config set without a value is a usage error (exit 2)", async () => {
  const run = await krelay(["config", "set", "gport"]);
  assertEquals(run.code, 2);
  match(run.stderr, /missing required argument 'value'/);
});

Deno.test("krelay status with an unknown option is a usage error (exit 2)", async () => {
  const run = await krelay(["status", "--colour"]);
  assertEquals(run.code, 2);
  match(run.stderr, /unknown option '--colour'/);
});

Deno.test("krelay start and stop print the new state", async () => {
  await withDaemon((line) => {
    const state = JSON.parse(line).cmd === "start" ? "started" : "stopped";
    return JSON.stringify({ ok: true, result: { state } }) + "\n";
  }, async (path) => {
    assertEquals(await krelay(["start", "--socket", path]), {
      code: 0,
      stdout: "krelay started\n",
      stderr: "",
    });
    assertEquals(await krelay(["stop", "--socket", path]), {
      code: 0,
      stdout: "krelay stopped\n",
      stderr: "",
    });
  });
});

Deno.test("krelay status exits 1 when krelay does not answer within --timeout", async () => {
  await withDaemon(() => null, async (path) => {
    const run = await krelay(["status", "--timeout", "0.3", "--socket", path]);
    assertEquals(run, {
      code: 1,
      stdout: "",
      stderr: `krelay status: krelay did not answer on ${path} within 0.3 s\n`,
    });
  });
});

Deno.test("krelay --help lists the control commands", async () => {
  const run = await krelay(["--help"]);
  assertEquals(run.code, 0);
  for (const command of ["status", "nat", "config", "start", "stop", "run", "lab"]) {
    match(run.stdout, new RegExp(`^  ${command} `, "m"));
  }
});
