import { deepStrictEqual as assertEquals, rejects } from "node:assert/strict";
import { ControlServer } from "./server.ts";

async function ask(path: string, text: string): Promise<unknown> {
  const conn = await Deno.connect({ transport: "unix", path });
  await conn.write(new TextEncoder().encode(text));
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(4096);
  for (let i = 0; i < 100; i++) {
    const n = await conn.read(buf);
    if (n === null) break;
    chunks.push(buf.slice(0, n));
  }
  conn.close();
  const all = new Uint8Array(chunks.reduce((a, c) => a + c.length, 0));
  let off = 0;
  for (const c of chunks) all.set(c, (off += c.length) - c.length);
  return JSON.parse(new TextDecoder().decode(all));
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("ControlServer answers each request line with the handler's result or its error", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/k/krelay.sock`;
    const server = await ControlServer.listen(path, (req) => {
      if ((req as { cmd: string }).cmd === "fail") return Promise.reject(new Error("no way"));
      return Promise.resolve({ echo: req });
    });
    try {
      assertEquals(await ask(path, '{"cmd":"status"}\n'), {
        ok: true,
        result: { echo: { cmd: "status" } },
      });
      assertEquals(await ask(path, '{"cmd":"fail"}\n'), { ok: false, error: "no way" });
      assertEquals(await ask(path, "not json\n"), { ok: false, error: "the request is not JSON" });
      assertEquals((await Deno.stat(path)).mode! & 0o777, 0o600);
    } finally {
      await server.close();
    }
    await rejects(Deno.stat(path));
  });
});

Deno.test("ControlServer refuses to start where another one answers, and replaces a stale socket", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/krelay.sock`;
    const first = await ControlServer.listen(path, () => Promise.resolve(1));
    await rejects(
      ControlServer.listen(path, () => Promise.resolve(2)),
      /another krelay is running/,
    );
    await first.close();
    // A socket file nobody listens on, as a crashed run leaves it (a process that bound it and
    // died; Deno's own close would remove the file).
    const bind = `import socket; socket.socket(socket.AF_UNIX).bind("${path}")`;
    assertEquals((await new Deno.Command("python3", { args: ["-c", bind] }).output()).code, 0);
    assertEquals((await Deno.lstat(path)).isSocket, true);
    const second = await ControlServer.listen(path, () => Promise.resolve(2));
    assertEquals(await ask(path, "{}\n"), { ok: true, result: 2 });
    await second.close();
  });
});

Deno.test("ControlServer leaves a busy socket alone: EAGAIN is not stale", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/krelay.sock`;
    // A live server that does not accept, its backlog full: further connects get EAGAIN.
    const busy = new Deno.Command("python3", {
      args: [
        "-c",
        `import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.bind("${path}"); s.listen(0)
held = []
for i in range(64):
    c = socket.socket(socket.AF_UNIX); c.setblocking(False)
    try: c.connect("${path}")
    except BlockingIOError: break
    held.append(c)
print("busy", flush=True); time.sleep(30)`,
      ],
      stdout: "piped",
    }).spawn();
    try {
      const reader = busy.stdout.pipeThrough(new TextDecoderStream()).getReader();
      assertEquals((await reader.read()).value?.trim(), "busy");
      await rejects(
        ControlServer.listen(path, () => Promise.resolve(2)),
        /cannot be checked .*nothing was changed/,
      );
      assertEquals((await Deno.lstat(path)).isSocket, true, "the busy socket stays");
      reader.cancel();
    } finally {
      busy.kill();
      await busy.status;
    }
  });
});

Deno.test("ControlServer survives descriptor exhaustion: clients closed, then answered again", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/krelay.sock`;
    const fixture = new URL("./_fd_limit_fixture.ts", import.meta.url).pathname;
    const child = new Deno.Command("bash", {
      args: [
        "-c",
        `ulimit -n 200 && exec "$0" run -A --no-prompt "$1" "$2"`,
        Deno.execPath(),
        fixture,
        path,
      ],
      stdin: "piped",
      stdout: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    const out = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const writer = child.stdin.getWriter();
    const next = async () => (await out.read()).value?.trim();
    try {
      assertEquals(await next(), "full");
      // At the limit: each client is accepted with the reserve fd and closed without answer.
      for (let i = 0; i < 3; i++) {
        await rejects(ask(path, '{"cmd":"status"}\n'));
      }
      await writer.write(new TextEncoder().encode("go\n"));
      assertEquals(await next(), "free");
      assertEquals(await ask(path, '{"cmd":"status"}\n'), { ok: true, result: "pong" });
      await writer.write(new TextEncoder().encode("go\n"));
      const counters = JSON.parse((await next())!);
      assertEquals(counters.bursts, 1);
      assertEquals(counters.refused >= 3, true, `refused ${counters.refused}`);
    } finally {
      await writer.close().catch(() => {});
      out.cancel();
      await child.status;
    }
  });
});
