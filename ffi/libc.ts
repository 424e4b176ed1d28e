/**
 * Thin `Deno.dlopen` bindings to the few libc calls the NFQUEUE datapath needs. No logic:
 * the library is opened on first use, so importing this module needs neither libc nor the
 * FFI permission.
 *
 * Two deliberate signature choices, both for the per-packet path:
 * - `recv` takes its buffer as a raw address (`usize`, a JS number): the caller receives
 *   each datagram at an offset inside one large buffer without creating a view per call.
 * - `recv` and `send` return `i32` rather than `isize`: a 64-bit result comes back as a
 *   BigInt (an allocation per call); a netlink datagram length always fits in 32 bits.
 *
 * @module
 */

const symbols = {
  /** `ssize_t recv(int fd, void *buf, size_t len, int flags)`; `buf` is an address. */
  recv: { parameters: ["i32", "usize", "usize", "i32"], result: "i32" },
  /** `ssize_t send(int fd, const void *buf, size_t len, int flags)`. */
  send: { parameters: ["i32", "buffer", "usize", "i32"], result: "i32" },
  /**
   * `int poll(struct pollfd *fds, nfds_t nfds, int timeout)`, run off the JS thread so
   * awaiting it leaves the event loop free.
   */
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32", nonblocking: true },
  /** `int setsockopt(int fd, int level, int optname, const void *optval, socklen_t optlen)`. */
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  /** `int socket(int domain, int type, int protocol)`. */
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  /** `int close(int fd)`. */
  close: { parameters: ["i32"], result: "i32" },
  /** `int *__errno_location(void)`: the calling thread's errno. */
  __errno_location: { parameters: [], result: "pointer" },
  /** `char *strerror(int errnum)`. */
  strerror: { parameters: ["i32"], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

type RawSymbols = Deno.DynamicLibrary<typeof symbols>["symbols"];

/**
 * The libc symbols above. Their 64-bit integer parameters (`usize`, `u64`) are typed
 * `number` here: Deno converts a JS number at run time although its types say bigint, and a
 * number spares a BigInt allocation per call. Values stay below 2^53 (lengths, addresses).
 */
export interface Libc extends Omit<RawSymbols, "recv" | "send" | "poll"> {
  /** `recv(2)` into the memory at address `buf`; -1 with errno set on error. */
  recv(fd: number, buf: number, len: number, flags: number): number;
  /** `send(2)` of the first `len` bytes of `buf`; -1 with errno set on error. */
  send(fd: number, buf: BufferSource | null, len: number, flags: number): number;
  /** `poll(2)` on an array of `struct pollfd`, off the JS thread. */
  poll(fds: BufferSource | null, nfds: number, timeout: number): Promise<number>;
}

let lib: Deno.DynamicLibrary<typeof symbols> | undefined;

/** Opens libc.so.6 once and returns its symbols. Throws when FFI is not permitted. */
export function libc(): Libc {
  lib ??= Deno.dlopen("libc.so.6", symbols);
  return lib.symbols as unknown as Libc;
}
