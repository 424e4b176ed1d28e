/**
 * Test fixture: a one-connection TCP backend in a python3 process, so that it runs while the
 * test's own thread is busy (its bytes can arrive before the relay looks) and can shape its
 * segments (MSG_MORE, then shutdown: bytes and FIN in one segment).
 *
 * @module
 */

/** A backend on 127.0.0.1; `stop()` ends the process. */
export interface PythonBackend {
  port: number;
  stop(): Promise<void>;
}

/**
 * Starts python3 running `onAccept`, a statement run with the accepted socket as `c` (and
 * `socket` imported), after which the backend waits for the peer to close.
 */
export async function pythonBackend(onAccept: string): Promise<PythonBackend> {
  const program = [
    "import socket, sys",
    "s = socket.socket()",
    "s.bind(('127.0.0.1', 0))",
    "s.listen(1)",
    "print(s.getsockname()[1], flush=True)",
    "c, _ = s.accept()",
    onAccept,
    "c.settimeout(10)",
    "while c.recv(65536): pass",
  ].join("\n");
  const child = new Deno.Command("python3", {
    args: ["-c", program],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error("python3 backend exited before listening");
    text += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  return {
    port: Number(text.trim()),
    stop: async () => {
      try {
        child.kill("SIGTERM");
      } catch {
        // already gone
      }
      await child.stdout.cancel();
      await child.status;
    },
  };
}
