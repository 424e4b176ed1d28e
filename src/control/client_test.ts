// A real Unix socket server in a temp dir stands in for the daemon; no root needed.
import { deepStrictEqual as assertEquals, ok, rejects } from "node:assert/strict";
import { withDaemon, withDir } from "./_fake_daemon.ts";
import { connectError, request } from "./client.ts";
import type { Request } from "./protocol.ts";
import { testOrSkip } from "../../tests/support/skip.ts";

const STATUS: Request = { cmd: "status" };

Deno.test("request() sends one JSON line and returns the result", async () => {
  await withDaemon(
    () => JSON.stringify({ ok: true, result: { key: "gport", from: 16000, to: 16001 } }) + "\n",
    async (path, daemon) => {
      const req: Request = { cmd: "config-set", key: "gport", value: "16001" };
      assertEquals(await request(path, req), { key: "gport", from: 16000, to: 16001 });
      assertEquals(daemon.requests, [JSON.stringify(req) + "\n"]);
    },
  );
});

Deno.test("request() reads an answer larger than one read", async () => {
  const big = Array.from({ length: 20_000 }, (_, i) => ({ client: `198.51.100.10:${i}` }));
  await withDaemon(() => JSON.stringify({ ok: true, result: big }) + "\n", async (path) => {
    assertEquals(await request(path, { cmd: "nat" }), big);
  });
});

Deno.test("request() takes an answer closed without a newline", async () => {
  await withDaemon(() => JSON.stringify({ ok: true, result: "started" }), async (path) => {
    assertEquals(await request(path, { cmd: "start" }), "started");
  });
});

Deno.test("request() passes the daemon's refusal on as is", async () => {
  const error = "udp_timeout: must be more than 0 seconds";
  await withDaemon(() => JSON.stringify({ ok: false, error }) + "\n", async (path) => {
    await rejects(
      request(path, { cmd: "config-set", key: "udp_timeout", value: "0" }),
      (e: Error) => e.message === error,
    );
  });
});

Deno.test("request() says krelay is not running when there is no socket file", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/krelay.sock`;
    await rejects(request(path, STATUS), {
      message: `krelay is not running (no control socket at ${path})`,
    });
  });
});

Deno.test("request() says krelay is not running when the socket is stale", async () => {
  await withDir(async (dir) => {
    // A second name for a socket whose listener is gone: what a crashed daemon leaves.
    const live = `${dir}/live.sock`;
    const stale = `${dir}/krelay.sock`;
    const listener = Deno.listen({ transport: "unix", path: live });
    await Deno.link(live, stale);
    listener.close();
    await rejects(request(stale, STATUS), {
      message: `krelay is not running (stale control socket at ${stale})`,
    });
  });
});

Deno.test("request() says a file that is not a socket is not a socket", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/krelay.sock`;
    await Deno.writeTextFile(path, "");
    await rejects(request(path, STATUS), { message: `cannot reach ${path}: not a socket` });
  });
});

/** Whether `setpriv` (util-linux) is there to drop root for the permission test. */
function hasSetpriv(): boolean {
  try {
    return new Deno.Command("setpriv", { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}

/**
 * The message request() rejects with, from a client run as nobody: root passes every permission
 * check on the socket file, so as root the client runs in a child process without it.
 */
async function requestAsNobody(path: string): Promise<string> {
  const denoDir = await Deno.makeTempDir({ prefix: "krelay-nobody-" });
  try {
    await Deno.chmod(denoDir, 0o777);
    const client = new URL("./client.ts", import.meta.url).href;
    const code = `import { request } from ${JSON.stringify(client)};\n` +
      `await request(${JSON.stringify(path)}, { cmd: "status" }).then(` +
      `() => console.log("answered"), (e) => console.log(e.message));`;
    const out = await new Deno.Command("setpriv", {
      args: ["--reuid=65534", "--regid=65534", "--clear-groups", Deno.execPath(), "eval", code],
      env: { DENO_DIR: denoDir, HOME: denoDir, NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const decoder = new TextDecoder();
    ok(out.success, decoder.decode(out.stderr));
    return decoder.decode(out.stdout).trim();
  } finally {
    await Deno.remove(denoDir, { recursive: true });
  }
}

const noNobody = Deno.uid() === 0 && !hasSetpriv();
testOrSkip(noNobody ? "root, and no setpriv to drop it" : undefined, {
  name: "request() says permission denied and to run as root",
  fn: async () => {
    await withDaemon(() => JSON.stringify({ ok: true, result: 1 }) + "\n", async (path) => {
      // As the daemon makes it: only its owner may connect. The temp dir must let nobody in.
      await Deno.chmod(path, 0o600);
      await Deno.chmod(path.slice(0, path.lastIndexOf("/")), 0o755);
      const expected = `cannot reach ${path}: permission denied (run as root)`;
      if (Deno.uid() === 0) {
        assertEquals(await requestAsNobody(path), expected);
      } else {
        await Deno.chmod(path, 0o000);
        await rejects(request(path, STATUS), { message: expected });
      }
    });
  },
});

Deno.test("connectError() says permission denied and to run as root", async () => {
  const error = await connectError(new Deno.errors.PermissionDenied("EACCES"), "/run/k.sock");
  assertEquals(error.message, "cannot reach /run/k.sock: permission denied (run as root)");
});

Deno.test("connectError() tells Deno's permissions from the file's", async () => {
  const error = await connectError(new Deno.errors.NotCapable("Requires write access"), "/x");
  assertEquals(error.message, "cannot reach /x: not allowed to krelay (Requires write access)");
});

Deno.test("connectError() passes other errors on with the path", async () => {
  const error = await connectError(new TypeError("path must be shorter than SUN_LEN"), "/x");
  assertEquals(error.message, "cannot reach /x: path must be shorter than SUN_LEN");
});

Deno.test("request() gives up when krelay does not answer in time", async () => {
  await withDaemon(() => null, async (path) => {
    const start = performance.now();
    await rejects(request(path, STATUS, { timeoutMs: 200 }), {
      message: `krelay did not answer on ${path} within 0.2 s`,
    });
    const took = performance.now() - start;
    ok(took >= 190 && took < 2_000, `took ${took} ms`);
  });
});

Deno.test("request() says so when the answer is not JSON", async () => {
  await withDaemon(() => "hello\n", async (path) => {
    await rejects(request(path, STATUS), {
      message: `krelay sent a malformed answer on ${path}: not JSON: hello`,
    });
  });
});

Deno.test("request() says so when the answer is JSON but not a response", async () => {
  await withDaemon(() => '{"state":"started"}\n', async (path) => {
    await rejects(request(path, STATUS), (e: Error) => {
      ok(e.message.startsWith(`krelay sent a malformed answer on ${path}: neither`), e.message);
      return true;
    });
  });
  await withDaemon(() => "[1,2]\n", async (path) => {
    await rejects(request(path, STATUS), {
      message: `krelay sent a malformed answer on ${path}: not an object: [1,2]`,
    });
  });
});

Deno.test("request() says so when krelay closes without answering", async () => {
  await withDaemon(() => "", async (path) => {
    await rejects(request(path, STATUS), {
      message: `krelay closed the connection on ${path} without answering`,
    });
  });
});

Deno.test("request() shortens a long malformed answer", async () => {
  await withDaemon(() => "x".repeat(10_000) + "\n", async (path) => {
    await rejects(request(path, STATUS), (e: Error) => {
      ok(e.message.endsWith(`not JSON: ${"x".repeat(80)}...`), e.message);
      return true;
    });
  });
});
