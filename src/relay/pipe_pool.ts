/**
 * Pipes for splice(2), shared by all connections: a direction borrows one only while bytes
 * are in flight through it and gives it back empty, so an idle connection holds no pipe (and
 * no file descriptors beyond its two sockets).
 *
 * @module
 */

import { libc } from "../../ffi/libc.ts";
import { errno } from "../system/errno.ts";
import { SocketError } from "./socket.ts";
import { F_SETPIPE_SZ, O_CLOEXEC, O_NONBLOCK } from "../../ffi/linux.ts";

/** A pipe: read end, write end. */
export interface Pipe {
  readonly r: number;
  readonly w: number;
}

/** A free list of empty pipes of one size. */
export class PipePool {
  readonly #free: Pipe[] = [];
  readonly #fds = new Int32Array(2);
  #open = 0;
  #closed = false;

  /**
   * @param size bytes a pipe holds (the kernel rounds it to pages; above
   *   /proc/sys/fs/pipe-max-size the default 64 KiB stays)
   * @param keep empty pipes kept for reuse; more are closed when given back
   */
  constructor(readonly size: number, private readonly keep = 64) {}

  /** Pipes open now, lent or free. */
  get open(): number {
    return this.#open;
  }

  /** Pipes lent out now (bytes in flight through them). */
  get lent(): number {
    return this.#open - this.#free.length;
  }

  /** An empty pipe; throws a {@link SocketError} (EMFILE...) when none can be made. */
  take(): Pipe {
    const pipe = this.#free.pop();
    if (pipe !== undefined) return pipe;
    if (libc().pipe2(this.#fds, O_NONBLOCK | O_CLOEXEC) < 0) {
      throw new SocketError("pipe2", errno());
    }
    const made = { r: this.#fds[0], w: this.#fds[1] };
    // Best effort: a bigger pipe moves more per splice call.
    libc().fcntl(made.w, F_SETPIPE_SZ, this.size);
    this.#open++;
    return made;
  }

  /** Returns a pipe: `empty` ones are reused, others (bytes left in them) closed. */
  give(pipe: Pipe, empty: boolean): void {
    if (empty && !this.#closed && this.#free.length < this.keep) {
      this.#free.push(pipe);
      return;
    }
    libc().close(pipe.r);
    libc().close(pipe.w);
    this.#open--;
  }

  /** Closes the free pipes (lent ones are closed when given back). */
  close(): void {
    this.#closed = true;
    for (const pipe of this.#free.splice(0)) {
      libc().close(pipe.r);
      libc().close(pipe.w);
      this.#open--;
    }
  }
}
