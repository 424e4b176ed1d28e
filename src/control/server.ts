/**
 * The control socket: a Unix stream socket, readable and writable by root only, on which each
 * connection carries one JSON request line and gets one JSON response line.
 *
 * A socket file left by a crashed run is removed; one that answers belongs to a krelay that is
 * running, and starting a second is refused.
 *
 * @module
 */

import { dirname } from "node:path";
import { logger } from "../system/log.ts";
import type { Response } from "./protocol.ts";

const log = logger("control");

/** Longest request accepted, and how long a client may take to send it. */
const MAX_REQUEST = 64 * 1024;
const REQUEST_TIMEOUT_MS = 5_000;

/** Answers one parsed request. Thrown errors become `{ ok: false, error: message }`. */
export type ControlHandler = (request: unknown) => Promise<unknown>;

/** A listening control socket. */
export class ControlServer {
  #closed = false;
  readonly #served: Promise<void>;

  private constructor(
    readonly path: string,
    private readonly listener: Deno.Listener,
    private readonly handle: ControlHandler,
  ) {
    this.#served = this.#serve();
  }

  /** Listens on `path`; throws a clear error when another krelay answers there. */
  static async listen(path: string, handle: ControlHandler): Promise<ControlServer> {
    await removeStale(path);
    await Deno.mkdir(dirname(path), { recursive: true, mode: 0o700 });
    const listener = Deno.listen({ transport: "unix", path });
    await Deno.chmod(path, 0o600);
    return new ControlServer(path, listener, handle);
  }

  /** Stops serving and removes the socket file. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.listener.close();
    await this.#served;
    await Deno.remove(this.path).catch(() => {});
  }

  async #serve(): Promise<void> {
    try {
      for await (const conn of this.listener) {
        this.#answer(conn).catch((e) => log.debug("control client: {error}", { error: String(e) }));
      }
    } catch (e) {
      if (!this.#closed) log.error("control socket failed: {error}", { error: String(e) });
    }
  }

  async #answer(conn: Deno.Conn): Promise<void> {
    let response: Response;
    try {
      const line = await readLine(conn);
      let request: unknown;
      try {
        request = JSON.parse(line);
      } catch {
        throw new Error("the request is not JSON");
      }
      response = { ok: true, result: await this.handle(request) };
    } catch (e) {
      response = { ok: false, error: (e as Error).message };
    }
    try {
      const bytes = new TextEncoder().encode(JSON.stringify(response) + "\n");
      for (let off = 0; off < bytes.length;) off += await conn.write(bytes.subarray(off));
    } finally {
      conn.close();
    }
  }
}

async function readLine(conn: Deno.Conn): Promise<string> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  const buf = new Uint8Array(4096);
  const deadline = setTimeout(() => conn.close(), REQUEST_TIMEOUT_MS);
  try {
    while (size < MAX_REQUEST) {
      const n = await conn.read(buf);
      if (n === null) break;
      const chunk = buf.slice(0, n);
      chunks.push(chunk);
      size += n;
      if (chunk.includes(10)) break;
    }
  } finally {
    clearTimeout(deadline);
  }
  const all = new Uint8Array(size);
  let off = 0;
  for (const c of chunks) {
    all.set(c, off);
    off += c.length;
  }
  const text = new TextDecoder().decode(all);
  const end = text.indexOf("\n");
  if (end < 0 && size >= MAX_REQUEST) throw new Error("the request is too long");
  return end < 0 ? text : text.slice(0, end);
}

/** Removes a socket file no process answers on; refuses when one does. */
async function removeStale(path: string): Promise<void> {
  try {
    await Deno.lstat(path);
  } catch {
    return;
  }
  let conn: Deno.Conn | undefined;
  try {
    conn = await Deno.connect({ transport: "unix", path });
  } catch {
    await Deno.remove(path);
    log.info("removed the control socket a stopped krelay left at {path}", { path });
    return;
  }
  conn.close();
  throw new Error(`another krelay is running (its control socket ${path} answers)`);
}
