/**
 * The client side of the control protocol: one request per connection to `krelay run`'s Unix
 * socket, one answer line back. Every failure becomes an Error whose message is what the user
 * should read ("krelay is not running ...").
 *
 * @example
 * ```ts
 * import { request } from "./client.ts";
 * import type { StatusReport } from "./protocol.ts";
 * const report = await request<StatusReport>("/run/krelay/krelay.sock", { cmd: "status" });
 * console.log(report.state);
 * ```
 * @module
 */

import type { Request } from "./protocol.ts";

/** Where the daemon listens unless told otherwise (the config key `control_socket`). */
export const DEFAULT_SOCKET = "/run/krelay/krelay.sock";

/** How long a request may take by default, from connecting to the last byte of the answer. */
export const DEFAULT_TIMEOUT_MS = 5_000;

/**
 * The largest answer accepted. A full NAT table (`nat_max_entries` up to millions) is the big
 * one; beyond this the answer could not be parsed as one string anyway.
 */
export const MAX_ANSWER_BYTES = 256 * 1024 * 1024;

/** Options of {@link request}. */
export interface RequestOptions {
  /** The whole exchange (connect, send, answer) must finish within this; default 5 s. */
  timeoutMs?: number;
}

/**
 * Sends `req` to the daemon at `socketPath` and resolves with the answer's `result`. Rejects with
 * an Error whose message is meant for the user: the daemon is not running (no socket, or a stale
 * one), the socket is not accessible, no answer in time, a malformed answer, or the daemon's own
 * refusal (`{ok: false, error}`), whose text is passed on as is.
 */
export async function request<T>(
  socketPath: string,
  req: Request,
  options: RequestOptions = {},
): Promise<T> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  let conn: Deno.UnixConn | undefined;
  let timedOut = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  // Closing the connection on timeout also ends a pending read or write.
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      timedOut = true;
      closeQuietly(conn);
      reject(new Error(`krelay did not answer on ${socketPath} within ${seconds(timeoutMs)} s`));
    }, timeoutMs);
  });
  const exchange = async (): Promise<T> => {
    try {
      conn = await Deno.connect({ transport: "unix", path: socketPath });
    } catch (e) {
      throw await connectError(e, socketPath);
    }
    // The timer may have fired while connecting.
    if (timedOut) closeQuietly(conn);
    await writeAll(conn, new TextEncoder().encode(JSON.stringify(req) + "\n"));
    return parseAnswer<T>(await readLine(conn, socketPath), socketPath);
  };
  const work = exchange();
  // Once the timeout has won, the exchange's own failure (a closed connection) is moot.
  work.catch(() => {});
  try {
    return await Promise.race([work, timeout]);
  } catch (e) {
    if (timedOut) return await timeout;
    throw e;
  } finally {
    clearTimeout(timer);
    closeQuietly(conn);
  }
}

/** "5" for 5000 ms, "0.25" for 250 ms. */
function seconds(ms: number): string {
  return String(Math.round(ms) / 1000);
}

function closeQuietly(conn: Deno.UnixConn | undefined): void {
  try {
    conn?.close();
  } catch {
    // Already closed.
  }
}

/** Explains a failed connect to the user (exported so that tests can check every case). */
export async function connectError(error: unknown, socketPath: string): Promise<Error> {
  if (error instanceof Deno.errors.NotFound) {
    return new Error(`krelay is not running (no control socket at ${socketPath})`);
  }
  if (error instanceof Deno.errors.ConnectionRefused) {
    // A regular file also refuses; only a socket left behind means a crashed or stopped daemon.
    const isSocket = await Deno.lstat(socketPath).then((i) => i.isSocket, () => true);
    return new Error(
      isSocket
        ? `krelay is not running (stale control socket at ${socketPath})`
        : `cannot reach ${socketPath}: not a socket`,
    );
  }
  if (error instanceof Deno.errors.PermissionDenied) {
    return new Error(`cannot reach ${socketPath}: permission denied (run as root)`);
  }
  if (error instanceof Deno.errors.NotCapable) {
    // Deno's own permissions (the launcher allows sockets under /run and /tmp), not the file's.
    return new Error(`cannot reach ${socketPath}: not allowed to krelay (${error.message})`);
  }
  return new Error(`cannot reach ${socketPath}: ${(error as Error).message}`);
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  for (let done = 0; done < data.length;) done += await conn.write(data.subarray(done));
}

/** Reads up to the first newline (or the end), bounded by {@link MAX_ANSWER_BYTES}. */
async function readLine(conn: Deno.Conn, socketPath: string): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  const buffer = new Uint8Array(64 * 1024);
  for (;;) {
    const n = await conn.read(buffer);
    if (n === null) break;
    const chunk = buffer.subarray(0, n);
    const newline = chunk.indexOf(0x0a);
    chunks.push(chunk.slice(0, newline === -1 ? n : newline));
    size += newline === -1 ? n : newline;
    if (newline !== -1) break;
    if (size > MAX_ANSWER_BYTES) {
      throw new Error(
        `krelay sent a malformed answer on ${socketPath}: longer than ${MAX_ANSWER_BYTES} bytes`,
      );
    }
  }
  const line = new Uint8Array(size);
  let offset = 0;
  for (const c of chunks) {
    line.set(c, offset);
    offset += c.length;
  }
  return line;
}

/** Checks the answer's shape and unwraps it. */
function parseAnswer<T>(line: Uint8Array, socketPath: string): T {
  const malformed = (why: string) =>
    new Error(`krelay sent a malformed answer on ${socketPath}: ${why}`);
  const text = new TextDecoder().decode(line).trim();
  if (text === "") {
    throw new Error(`krelay closed the connection on ${socketPath} without answering`);
  }
  let answer: unknown;
  try {
    answer = JSON.parse(text);
  } catch {
    throw malformed(`not JSON: ${excerpt(text)}`);
  }
  if (typeof answer !== "object" || answer === null || Array.isArray(answer)) {
    throw malformed(`not an object: ${excerpt(text)}`);
  }
  const { ok, result, error } = answer as Record<string, unknown>;
  if (ok === true) return result as T;
  if (ok === false && typeof error === "string") {
    throw new Error(error.trim() === "" ? "krelay refused without saying why" : error);
  }
  throw malformed(`neither {ok: true, result} nor {ok: false, error}: ${excerpt(text)}`);
}

/** The start of a long text, enough to recognize it. */
function excerpt(text: string): string {
  return text.length > 80 ? `${text.slice(0, 80)}...` : text;
}
