/**
 * Pipes for splice(2), shared by all connections: a direction borrows one only while bytes
 * are in flight through it and gives it back empty, so an idle connection holds no pipe (and
 * no file descriptors beyond its two sockets).
 *
 * Big pipes move more per splice call (fewer calls and wake-ups per byte), but the kernel
 * counts every pipe's capacity against its user: past /proc/sys/fs/pipe-user-pages-soft
 * (64 MiB by default), a process without CAP_SYS_RESOURCE gets 8 KiB pipes and cannot grow
 * them. So pipes are made at `size` only while the open ones stay within `budget` bytes, and
 * at `smallSize` beyond it; each pipe knows the capacity it got.
 *
 * @module
 */

import { libc } from "../../ffi/libc.ts";
import { errno } from "../system/errno.ts";
import { SocketError } from "./socket.ts";
import { F_GETPIPE_SZ, F_SETPIPE_SZ, O_CLOEXEC, O_NONBLOCK } from "../../ffi/linux.ts";

/** A pipe: read end, write end, and the bytes it holds at most. */
export interface Pipe {
  readonly r: number;
  readonly w: number;
  readonly size: number;
}

/** How a {@link PipePool} sizes its pipes. */
export interface PipeSizes {
  /**
   * Bytes a pipe holds (the kernel rounds it to pages; above /proc/sys/fs/pipe-max-size the
   * default 64 KiB stays).
   */
  size: number;
  /** Bytes of the pipes made once the open pipes hold `budget` bytes (default: `size`). */
  smallSize?: number;
  /** Capacity of all open pipes, lent or free, up to which pipes are made at `size`. */
  budget?: number;
  /** Empty pipes kept for reuse; more are closed when given back (default 64). */
  keep?: number;
}

/** A free list of empty pipes. */
export class PipePool {
  readonly #free: Pipe[] = [];
  readonly #fds = new Int32Array(2);
  #open = 0;
  /** Capacity of the open pipes, in bytes. */
  #capacity = 0;
  #closed = false;
  readonly #size: number;
  readonly #smallSize: number;
  readonly #budget: number;
  readonly #keep: number;

  /** `sizes`: a number is the size of every pipe (no budget), as before. */
  constructor(sizes: PipeSizes | number) {
    const s = typeof sizes === "number" ? { size: sizes } : sizes;
    this.#size = s.size;
    this.#smallSize = s.smallSize ?? s.size;
    this.#budget = s.budget ?? Infinity;
    this.#keep = s.keep ?? 64;
  }

  /** The most bytes a pipe of this pool holds (what a splice into an empty one may ask). */
  get size(): number {
    return this.#size;
  }

  /** Pipes open now, lent or free. */
  get open(): number {
    return this.#open;
  }

  /** Pipes lent out now (bytes in flight through them). */
  get lent(): number {
    return this.#open - this.#free.length;
  }

  /** Bytes the open pipes hold at most, lent or free. */
  get capacity(): number {
    return this.#capacity;
  }

  /** An empty pipe; throws a {@link SocketError} (EMFILE...) when none can be made. */
  take(): Pipe {
    const pipe = this.#free.pop();
    if (pipe !== undefined) return pipe;
    if (libc().pipe2(this.#fds, O_NONBLOCK | O_CLOEXEC) < 0) {
      throw new SocketError("pipe2", errno());
    }
    const r = this.#fds[0];
    const w = this.#fds[1];
    const wanted = this.#capacity + this.#size <= this.#budget ? this.#size : this.#smallSize;
    // Best effort: refused (past the user's pipe pages), the pipe keeps the size it was made
    // with, which F_GETPIPE_SZ tells.
    let size = libc().fcntl(w, F_SETPIPE_SZ, wanted);
    if (size <= 0) size = libc().fcntl(w, F_GETPIPE_SZ, 0);
    if (size <= 0) size = 4096;
    this.#open++;
    this.#capacity += size;
    return { r, w, size };
  }

  /** Returns a pipe: `empty` ones are reused, others (bytes left in them) closed. */
  give(pipe: Pipe, empty: boolean): void {
    if (empty && !this.#closed && this.#free.length < this.#keep) {
      this.#free.push(pipe);
      return;
    }
    this.#drop(pipe);
  }

  /** Closes the free pipes (lent ones are closed when given back). */
  close(): void {
    this.#closed = true;
    for (const pipe of this.#free.splice(0)) this.#drop(pipe);
  }

  #drop(pipe: Pipe): void {
    libc().close(pipe.r);
    libc().close(pipe.w);
    this.#open--;
    this.#capacity -= pipe.size;
  }
}
