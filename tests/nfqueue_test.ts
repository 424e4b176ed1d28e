/**
 * End-to-end tests of NfqueueDatapath against the real kernel queue. Each test creates a
 * network namespace `krt-nfq-<random>`, adds an iptables NFQUEUE rule inside it only, runs
 * tests/fixtures/nfqueue_fixture.ts (the datapath) and tests/fixtures/udp_probe.ts (a UDP
 * sender and receiver) there as subprocesses, and deletes the namespace at the end.
 * Skipped, with the reason printed, when not root or when iptables, ip or the libraries are
 * missing.
 */

import { deepStrictEqual as assertEquals, match, ok } from "node:assert/strict";
import { Hook } from "../src/queue/queue.ts";
import { testOrSkip } from "./support/skip.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const DENO = Deno.execPath();

function findBinary(name: string): string | null {
  for (const dir of ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]) {
    try {
      if (Deno.statSync(`${dir}/${name}`).isFile) return `${dir}/${name}`;
    } catch { /* not there */ }
  }
  return null;
}

function skipReason(): string | null {
  try {
    if (Deno.build.os !== "linux") return "NFQUEUE needs Linux";
    if (Deno.uid() !== 0) return "not root (network namespaces and iptables need it)";
    for (const bin of ["ip", "iptables"]) {
      if (findBinary(bin) === null) return `${bin} is missing (apt-get install iproute2 iptables)`;
    }
    for (const lib of ["libmnl.so.0", "libnetfilter_queue.so.1"]) {
      try {
        Deno.dlopen(lib, {}).close();
      } catch {
        return `${lib} is missing (apt-get install libmnl0 libnetfilter-queue1)`;
      }
    }
  } catch (e) {
    return `cannot check the prerequisites (${(e as Error).message}); run with --allow-all`;
  }
  return null;
}

const skip = skipReason();

/** Runs a command to completion (killed after `timeoutMs`) and returns its stdout. */
async function run(cmd: string[], timeoutMs = 20_000): Promise<string> {
  const out = await new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(timeoutMs),
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    const stderr = new TextDecoder().decode(out.stderr);
    throw new Error(`${cmd.join(" ")} failed (${out.code}): ${stderr.trim() || stdout.trim()}`);
  }
  return stdout;
}

/** Runs a Deno fixture inside `ns` to completion and parses its JSON output. */
async function runFixture(ns: string, script: string, args: string[]): Promise<unknown> {
  const stdout = await run(["ip", "netns", "exec", ns, DENO, "run", "-A", script, ...args]);
  return JSON.parse(stdout.trim().split("\n").at(-1)!);
}

/** A long-running fixture in a namespace, talked to by lines on stdin and stdout. */
class Fixture {
  readonly #child: Deno.ChildProcess;
  readonly #stdout: ReadableStreamDefaultReader<string>;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;
  readonly #stderr: Promise<string>;
  #pending = "";

  constructor(ns: string, args: string[]) {
    this.#child = new Deno.Command("ip", {
      args: ["netns", "exec", ns, DENO, "run", "-A", "tests/fixtures/nfqueue_fixture.ts", ...args],
      cwd: ROOT,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#stdout = this.#child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    this.#stdin = this.#child.stdin.getWriter();
    this.#stderr = new Response(this.#child.stderr).text();
  }

  /** The next stdout line as JSON; throws (with the fixture's stderr) after `timeoutMs`. */
  async line(timeoutMs = 10_000): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (let i = 0; i < 10_000; i++) {
      const nl = this.#pending.indexOf("\n");
      if (nl >= 0) {
        const line = this.#pending.slice(0, nl);
        this.#pending = this.#pending.slice(nl + 1);
        return JSON.parse(line);
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<null>((resolve) => {
        timer = setTimeout(() => resolve(null), Math.max(0, deadline - Date.now()));
      });
      const chunk = await Promise.race([this.#stdout.read(), timeout]);
      clearTimeout(timer);
      if (chunk === null || chunk.done) break;
      this.#pending += chunk.value;
    }
    await this.stop();
    throw new Error(`fixture gave no line in ${timeoutMs} ms; stderr: ${await this.#stderr}`);
  }

  async write(text: string): Promise<void> {
    await this.#stdin.write(new TextEncoder().encode(text));
  }

  /** Closes stdin, waits up to 5 s for the exit, then kills the process by its PID. */
  async stop(): Promise<void> {
    await this.#stdin.close().catch(() => {});
    let timer: ReturnType<typeof setTimeout> | undefined;
    const exited = await Promise.race([
      this.#child.status.then(() => true),
      new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(false), 5000)),
    ]);
    clearTimeout(timer);
    if (!exited) {
      try {
        this.#child.kill("SIGKILL");
      } catch { /* already gone */ }
    }
    await this.#child.status;
    await this.#stdout.cancel().catch(() => {});
    await this.#stderr;
  }
}

/** Runs `fn` in a fresh namespace with lo up, and an NFQUEUE rule for UDP to `port`. */
async function withQueue(fn: (ns: string, queue: number, port: number) => Promise<void>) {
  const ns = `krt-nfq-${crypto.randomUUID().slice(0, 8)}`;
  const queue = 1000 + Math.floor(Math.random() * 1000);
  const port = 20000 + Math.floor(Math.random() * 20000);
  await run(["ip", "netns", "add", ns]);
  try {
    await run(["ip", "-n", ns, "link", "set", "lo", "up"]);
    await run([
      ...["ip", "netns", "exec", ns, "iptables", "-w", "5", "-t", "raw", "-A", "OUTPUT"],
      ...["-p", "udp", "--dport", `${port}`, "-j", "NFQUEUE", "--queue-num", `${queue}`],
      "--queue-bypass",
    ]);
    await fn(ns, queue, port);
  } finally {
    await run(["ip", "netns", "del", ns]).catch((e) => console.error(e.message));
  }
}

/** Sends `messages` to 127.0.0.1:port inside `ns` and returns what arrived. */
async function probe(ns: string, port: number, messages: string[]): Promise<string[]> {
  const r = await runFixture(ns, "tests/fixtures/udp_probe.ts", [
    ...["--port", `${port}`, "--send", messages.join(","), "--wait-ms", "500"],
  ]) as { received: string[] };
  return r.received;
}

interface Seen {
  id: number;
  queue: number;
  hook: number;
  checksumPartial: boolean;
  gso: boolean;
  indev: number;
  outdev: number;
  text: string;
}

interface ServeSummary {
  stats: { received: number; verdicts: number; enobufs: number; errors: number };
  seen: Seen[];
  afterClose: number;
  reopened: boolean;
}

/** Serves the queue with the fixture while `messages` are probed; returns both sides. */
async function serveAndProbe(
  ns: string,
  queue: number,
  port: number,
  gso: boolean,
  messages: string[],
): Promise<{ arrived: string[]; summary: ServeSummary }> {
  const fixture = new Fixture(ns, ["--queue", `${queue}`, "--mode", "serve", "--gso", `${gso}`]);
  try {
    assertEquals(await fixture.line(), { ready: true });
    const arrived = await probe(ns, port, messages);
    await fixture.write("stop\n");
    const summary = await fixture.line() as unknown as ServeSummary;
    return { arrived, summary };
  } finally {
    await fixture.stop();
  }
}

testOrSkip(skip, {
  name: "NfqueueDatapath accepts, drops and mangles UDP datagrams the kernel queued",
  fn: () =>
    withQueue(async (ns, queue, port) => {
      const sent = ["hello", "drop-me", "mangle-me", "bye"];
      const { arrived, summary } = await serveAndProbe(ns, queue, port, true, sent);
      assertEquals(arrived.sort(), ["Mangle-me", "bye", "hello"]);
      assertEquals(summary.seen.map((s) => s.text).sort(), [...sent].sort());
      assertEquals(summary.stats, { received: 4, verdicts: 4, enobufs: 0, errors: 0 });
      for (const s of summary.seen) {
        assertEquals(s.queue, queue);
        assertEquals(s.hook, Hook.LocalOut);
        assertEquals([s.indev, s.outdev], [0, 1]); // output on lo (ifindex 1)
        // With F_GSO the kernel leaves lo's offloaded UDP checksum partial.
        assertEquals(s.checksumPartial, true);
      }
      assertEquals(new Set(summary.seen.map((s) => s.id)).size, 4);
      assertEquals(summary.afterClose, 0); // close() during receive(): it resolved to []
      assertEquals(summary.reopened, true); // close() released the queue
    }),
});

testOrSkip(skip, {
  name: "NfqueueDatapath with gso off gets complete checksums, and mangling still works",
  fn: () =>
    withQueue(async (ns, queue, port) => {
      const { arrived, summary } = await serveAndProbe(ns, queue, port, false, [
        "one",
        "mangle-two",
      ]);
      assertEquals(arrived.sort(), ["Mangle-two", "one"]);
      assertEquals(summary.seen.map((s) => s.checksumPartial), [false, false]);
      assertEquals(summary.stats.errors, 0);
    }),
});

testOrSkip(skip, {
  name: "NfqueueDatapath.open() names the queue and EPERM when another process holds it",
  fn: () =>
    withQueue(async (ns, queue) => {
      const holder = new Fixture(ns, ["--queue", `${queue}`, "--mode", "serve"]);
      try {
        assertEquals(await holder.line(), { ready: true });
        const r = await runFixture(ns, "tests/fixtures/nfqueue_fixture.ts", [
          ...["--queue", `${queue}`, "--mode", "open-only"],
        ]) as { error: string | null; fdsBefore: number; fdsAfter: number };
        ok(r.error !== null, "the second open succeeded");
        match(r.error, new RegExp(`queue ${queue}\\b`));
        match(r.error, /EPERM/);
        assertEquals(r.fdsAfter, r.fdsBefore, "the failed open left a descriptor open");
      } finally {
        await holder.stop();
      }
    }),
});

testOrSkip(skip, {
  name: "NfqueueDatapath counts ENOBUFS when its socket overflows, and keeps receiving",
  fn: () =>
    withQueue(async (ns, queue, port) => {
      const fixture = new Fixture(ns, ["--queue", `${queue}`, "--mode", "enobufs"]);
      try {
        assertEquals(await fixture.line(), { ready: true });
        await runFixture(ns, "tests/fixtures/udp_probe.ts", [
          ...["--port", `${port}`, "--flood", "300", "--wait-ms", "0"],
        ]);
        await fixture.write("go\n");
        const r = await fixture.line() as {
          stats: { enobufs: number; errors: number };
          accepted: number;
        };
        ok(r.stats.enobufs >= 1, `no ENOBUFS counted: ${JSON.stringify(r)}`);
        ok(r.accepted >= 1, `nothing received after ENOBUFS: ${JSON.stringify(r)}`);
        assertEquals(r.stats.errors, 0);
      } finally {
        await fixture.stop();
      }
    }),
});
