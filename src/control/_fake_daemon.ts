/**
 * A fake `krelay run` control socket for tests: a real Unix socket server in a temp dir that
 * records each request line and answers it as told. No root needed.
 *
 * @module
 */

/**
 * A stand-in for `krelay run`: answers each connection with `answer(requestLine)`, written as
 * is; null: reads the request and never answers.
 */
export class FakeDaemon {
  readonly requests: string[] = [];
  readonly #listener: Deno.Listener;
  readonly #open = new Set<Deno.Conn>();
  readonly #served: Promise<void>;

  constructor(readonly path: string, answer: (line: string) => string | null) {
    this.#listener = Deno.listen({ transport: "unix", path });
    this.#served = this.#serve(answer);
  }

  async #serve(answer: (line: string) => string | null): Promise<void> {
    try {
      for await (const conn of this.#listener) {
        this.#open.add(conn);
        this.#reply(conn, answer).catch(() => {}).finally(() => {
          this.#open.delete(conn);
          closeQuietly(conn);
        });
      }
    } catch {
      // Closed.
    }
  }

  async #reply(conn: Deno.Conn, answer: (line: string) => string | null): Promise<void> {
    const buffer = new Uint8Array(4096);
    let text = "";
    while (!text.includes("\n")) {
      const n = await conn.read(buffer);
      if (n === null) break;
      text += new TextDecoder().decode(buffer.subarray(0, n));
    }
    this.requests.push(text);
    const reply = answer(text.trimEnd());
    if (reply === null) {
      // Hold the connection until the client gives up.
      await conn.read(buffer).catch(() => null);
      return;
    }
    const bytes = new TextEncoder().encode(reply);
    for (let done = 0; done < bytes.length;) done += await conn.write(bytes.subarray(done));
  }

  /** Stops listening and ends every connection. */
  async close(): Promise<void> {
    this.#listener.close();
    for (const conn of this.#open) closeQuietly(conn);
    await this.#served;
  }
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}

/** Runs `fn` with a temp dir, removed afterwards. */
export async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "krelay-client-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Runs `fn` against a fake daemon answering with `answer`. */
export function withDaemon(
  answer: (line: string) => string | null,
  fn: (path: string, daemon: FakeDaemon) => Promise<void>,
): Promise<void> {
  return withDir(async (dir) => {
    const daemon = new FakeDaemon(`${dir}/krelay.sock`, answer);
    try {
      await fn(daemon.path, daemon);
    } finally {
      await daemon.close();
    }
  });
}
