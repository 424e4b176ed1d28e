import { deepStrictEqual as assertEquals, ok as assert, rejects } from "node:assert/strict";
import { listensOn, parseSsListeners, waitFor, waitForLine, WaitTimeoutError } from "./wait.ts";

const SS_TCP = `LISTEN 0      4096   203.0.113.10:80        0.0.0.0:*
LISTEN 0      511          0.0.0.0:8080      0.0.0.0:*
LISTEN 0      128        127.0.0.53%lo:53    0.0.0.0:*
LISTEN 0      128             [::]:22           [::]:*
LISTEN 0      128                *:9000            *:*
`;

Deno.test("parseSsListeners() reads address and port, without brackets or %interface", () => {
  assertEquals(parseSsListeners(SS_TCP), [
    { address: "203.0.113.10", port: 80 },
    { address: "0.0.0.0", port: 8080 },
    { address: "127.0.0.53", port: 53 },
    { address: "::", port: 22 },
    { address: "*", port: 9000 },
  ]);
  assertEquals(parseSsListeners("UNCONN 0 0 203.0.113.10:53 0.0.0.0:*\n"), [
    { address: "203.0.113.10", port: 53 },
  ]);
  assertEquals(parseSsListeners("State Recv-Q\n\n"), []);
});

Deno.test("listensOn() matches the address, or any address for a wildcard bind", () => {
  const l = parseSsListeners(SS_TCP);
  assert(listensOn(l, 80, "203.0.113.10"));
  assert(!listensOn(l, 80, "203.0.113.20"));
  assert(listensOn(l, 80));
  assert(listensOn(l, 8080, "198.51.100.1"));
  assert(listensOn(l, 9000, "198.51.100.1"));
  assert(!listensOn(l, 81));
});

Deno.test("waitFor() returns once the check holds and times out otherwise", async () => {
  let n = 0;
  await waitFor(() => ++n >= 3, { intervalMs: 1, timeoutMs: 1000 });
  assertEquals(n, 3);
  const t0 = performance.now();
  await rejects(waitFor(() => false, { intervalMs: 10, timeoutMs: 60, what: "never" }), (e) => {
    assert(e instanceof WaitTimeoutError);
    assert(e.message.includes("never"));
    return true;
  });
  assert(performance.now() - t0 < 1000);
});

Deno.test("waitFor() counts a throwing check as false and stops at an abort reason", async () => {
  let n = 0;
  await waitFor(() => {
    if (++n < 2) throw new Error("not yet");
    return true;
  }, { intervalMs: 1 });
  await rejects(
    waitFor(() => false, { abort: () => "the server exited", timeoutMs: 5000 }),
    /the server exited/,
  );
});

Deno.test("waitForLine() returns the first matching line once it is written", async () => {
  const dir = await Deno.makeTempDir({ prefix: "krelay-wait-test-" });
  try {
    const path = `${dir}/log`;
    const writer = (async () => {
      await new Promise((r) => setTimeout(r, 30));
      await Deno.writeTextFile(path, "one\nready: yes\nready: again\n");
    })();
    assertEquals(
      await waitForLine(path, /^ready/, { intervalMs: 5, timeoutMs: 2000 }),
      "ready: yes",
    );
    await writer;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
