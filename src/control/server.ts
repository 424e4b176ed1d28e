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
/** How long the accept loop waits after a failed accept. */
const ACCEPT_RETRY_MS = 50;

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A descriptor held so that one can be given up to accept (and close) a client at the limit. */
function openReserve(): Deno.FsFile | undefined {
  try {
    return Deno.openSync("/dev/null");
  } catch {
    return undefined;
  }
}

/** Answers one parsed request. Thrown errors become `{ ok: false, error: message }`. */
export type ControlHandler = (request: unknown) => Promise<unknown>;

/** A listening control socket. */
export class ControlServer {
  #closed = false;
  #exhaustion = { refused: 0, bursts: 0 };
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

  /**
   * Descriptor exhaustion: accepts that failed with EMFILE/ENFILE since start, and bursts of
   * them (each logged once).
   */
  get fdExhaustion(): { refused: number; bursts: number } {
    return { ...this.#exhaustion };
  }

  async #serve(): Promise<void> {
    // The accept loop outlives any error: at the fd limit a waiting client is accepted with
    // the reserve descriptor and closed (it gets an answer, not a hang), and the loop waits
    // a little before trying again; the burst is counted and logged once.
    let reserve = openReserve();
    let inBurst = false;
    while (!this.#closed) {
      let conn: Deno.Conn;
      try {
        conn = await this.listener.accept();
      } catch (e) {
        if (this.#closed) break;
        const code = (e as { code?: string }).code;
        if (code !== "EMFILE" && code !== "ENFILE") {
          log.error("control socket accept failed: {error}", { error: String(e) });
          await delay(ACCEPT_RETRY_MS);
          continue;
        }
        this.#exhaustion.refused++;
        if (!inBurst) {
          inBurst = true;
          this.#exhaustion.bursts++;
          log.warning(
            "control socket: no file descriptor left ({code}); closing clients until some " +
              "are free",
            { code },
          );
        }
        reserve?.close();
        reserve = undefined;
        try {
          (await this.listener.accept()).close();
        } catch {
          // Still none: the delay below.
        }
        await delay(ACCEPT_RETRY_MS);
        reserve = openReserve();
        continue;
      }
      if (inBurst && reserve !== undefined) {
        inBurst = false;
        log.info("control socket: file descriptors free again after {n} refused clients", {
          n: this.#exhaustion.refused,
        });
      }
      reserve ??= openReserve();
      this.#answer(conn).catch((e) => log.debug("control client: {error}", { error: String(e) }));
    }
    reserve?.close();
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

/**
 * Removes a socket file nothing listens on (connect refused: ECONNREFUSED). Any other answer
 * leaves it alone: a connection means another krelay runs; EAGAIN (its backlog is full, it is
 * busy) or EACCES (not ours to judge) may be a live krelay too, so starting is refused with the
 * reason and the file stays.
 */
export async function removeStale(path: string): Promise<void> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.lstat(path);
  } catch {
    return;
  }
  if (!info.isSocket) {
    throw new Error(`${path} exists and is not a socket: remove it or set control_socket`);
  }
  let conn: Deno.Conn | undefined;
  try {
    conn = await Deno.connect({ transport: "unix", path });
  } catch (e) {
    if (!(e instanceof Deno.errors.ConnectionRefused)) {
      throw new Error(
        `the control socket ${path} exists and cannot be checked (${(e as Error).message}): ` +
          "another krelay may be running and busy; nothing was changed",
      );
    }
    await Deno.remove(path);
    log.info("removed the control socket a stopped krelay left at {path}", { path });
    return;
  }
  conn.close();
  throw new Error(`another krelay is running (its control socket ${path} answers)`);
}
