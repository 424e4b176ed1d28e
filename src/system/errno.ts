/**
 * errno after a failed libc call through FFI, and its name and text for messages.
 *
 * The read is not atomic with the call: the runtime may run work of its own in between (a
 * GC step, installing code compiled on another thread) and leave its own errno, in practice
 * EAGAIN from a futex. Where EAGAIN already means "wait" (read, send, accept) that is what
 * the caller does; where a wrong errno would fail a connection, the caller checks the state
 * the call left instead (socket.ts's settleConnect).
 *
 * @module
 */

import { libc } from "../../ffi/libc.ts";

/** The errno values krelay names in messages. */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  EINTR: 4,
  EAGAIN: 11,
  ENOMEM: 12,
  EBUSY: 16,
  ENODEV: 19,
  EINVAL: 22,
  ENFILE: 23,
  EMFILE: 24,
  EPIPE: 32,
  EMSGSIZE: 90,
  EPROTONOSUPPORT: 93,
  EOPNOTSUPP: 95,
  EADDRINUSE: 98,
  EADDRNOTAVAIL: 99,
  ENETUNREACH: 101,
  ECONNABORTED: 103,
  ECONNRESET: 104,
  ENOBUFS: 105,
  ENOTCONN: 107,
  ETIMEDOUT: 110,
  ECONNREFUSED: 111,
  EHOSTUNREACH: 113,
  EALREADY: 114,
  EINPROGRESS: 115,
} as const;

/** The name of an errno value, "EPIPE"; "errno N" for one krelay does not name. */
export function errnoName(e: number): string {
  return Object.entries(Errno).find(([, v]) => v === e)?.[0] ?? `errno ${e}`;
}

let errnoView: Deno.UnsafePointerView | undefined;

/** The calling thread's errno, read right after a failed libc call. */
export function errno(): number {
  // __errno_location is per thread; this isolate always runs on the same thread.
  errnoView ??= new Deno.UnsafePointerView(libc().__errno_location()!);
  return errnoView.getInt32();
}

/** "EPERM (Operation not permitted)" for an errno value. */
export function errnoText(e: number): string {
  const name = errnoName(e);
  const msg = libc().strerror(e);
  return msg === null ? name : `${name} (${new Deno.UnsafePointerView(msg).getCString()})`;
}
