/**
 * Thin `Deno.dlopen` bindings to the libc calls of the NFQUEUE datapath and of the TCP relay's
 * socket layer (sockets, epoll, splice). No logic:
 * the library is opened on first use, so importing this module needs neither libc nor the
 * FFI permission.
 *
 * Three deliberate signature choices, all for the per-packet and per-connection paths:
 * - 64-bit parameters (`usize`, `u64`) are passed as BigInts. A JS number there is accepted
 *   but takes V8's slow call path: 150-300 ns per call against 10-30 ns (measured with Deno
 *   2.9), far more than making the BigInt.
 * - `recv` takes its buffer as a raw address (`usize`): the caller receives each datagram at
 *   an offset inside one large buffer without creating a view per call.
 * - `recv`, `send`, `read`, `write` and `splice` return `i32` rather than `isize`: a 64-bit
 *   result comes back as a BigInt; lengths here always fit in 32 bits.
 *
 * @module
 */

const symbols = {
  /** `ssize_t recv(int fd, void *buf, size_t len, int flags)`; `buf` is an address. */
  recv: { parameters: ["i32", "usize", "usize", "i32"], result: "i32" },
  /**
   * `recv(2)` into a buffer: a socket read without read(2)'s file layers (the pump's reads of
   * a connection's bytes).
   */
  recvInto: { name: "recv", parameters: ["i32", "buffer", "usize", "i32"], result: "i32" },
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
  /** `int bind(int fd, const struct sockaddr *addr, socklen_t len)`. */
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  /** `int listen(int fd, int backlog)`. */
  listen: { parameters: ["i32", "i32"], result: "i32" },
  /** `int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)`. */
  accept4: { parameters: ["i32", "buffer", "buffer", "i32"], result: "i32" },
  /** `int connect(int fd, const struct sockaddr *addr, socklen_t len)`. */
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  /** `int getsockname(int fd, struct sockaddr *addr, socklen_t *len)`. */
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  /** `int getsockopt(int fd, int level, int optname, void *optval, socklen_t *optlen)`. */
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  /** `int shutdown(int fd, int how)`. */
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
  /** `int epoll_create1(int flags)`. */
  epoll_create1: { parameters: ["i32"], result: "i32" },
  /** `int epoll_ctl(int epfd, int op, int fd, struct epoll_event *event)`. */
  epoll_ctl: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  /** `int epoll_wait(int epfd, struct epoll_event *events, int max, int timeout)`, timeout 0. */
  epoll_wait: { parameters: ["i32", "buffer", "i32", "i32"], result: "i32" },
  /** The same, run off the JS thread so that awaiting it leaves the event loop free. */
  epoll_wait_async: {
    name: "epoll_wait",
    parameters: ["i32", "buffer", "i32", "i32"],
    result: "i32",
    nonblocking: true,
  },
  /**
   * `ssize_t splice(int in, loff_t *off_in, int out, loff_t *off_out, size_t len, unsigned
   * flags)`, offsets always null; `i32` result as for recv (a splice moves at most a pipe).
   */
  splice: { parameters: ["i32", "pointer", "i32", "pointer", "usize", "u32"], result: "i32" },
  /** `int pipe2(int fds[2], int flags)`. */
  pipe2: { parameters: ["buffer", "i32"], result: "i32" },
  /** `int fcntl(int fd, int cmd, int arg)` (F_SETPIPE_SZ). */
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  /** `int eventfd(unsigned initval, int flags)`. */
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  /** `ssize_t write(int fd, const void *buf, size_t len)` (eventfd wake-ups). */
  write: { parameters: ["i32", "buffer", "usize"], result: "i32" },
  /** `ssize_t read(int fd, void *buf, size_t len)` (eventfd wake-ups). */
  read: { parameters: ["i32", "buffer", "usize"], result: "i32" },
  /**
   * `long syscall(long number, ...)` with three arguments, for bpf(2), which libc does not
   * wrap: `syscall(SYS_bpf, cmd, attr, size)`. Rare calls (setup only), so BigInts are fine.
   */
  syscall: { parameters: ["i64", "i64", "buffer", "u64"], result: "i64" },
  /** `int sched_getaffinity(pid_t pid, size_t size, cpu_set_t *mask)`; pid 0: this thread. */
  sched_getaffinity: { parameters: ["i32", "usize", "buffer"], result: "i32" },
  /** `int sched_setaffinity(pid_t pid, size_t size, const cpu_set_t *mask)`. */
  sched_setaffinity: { parameters: ["i32", "usize", "buffer"], result: "i32" },
  /** `int open(const char *path, int flags)` (a network namespace's file). */
  open: { parameters: ["buffer", "i32"], result: "i32" },
  /** `unsigned if_nametoindex(const char *name)`: 0 when there is no such interface here. */
  if_nametoindex: { parameters: ["buffer"], result: "u32" },
  /** `int ioctl(int fd, unsigned long request, void *arg)` (an interface's link type). */
  ioctl: { parameters: ["i32", "u64", "buffer"], result: "i32" },
  /** `int *__errno_location(void)`: the calling thread's errno. */
  __errno_location: { parameters: [], result: "pointer" },
  /** `char *strerror(int errnum)`. */
  strerror: { parameters: ["i32"], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

type RawSymbols = Deno.DynamicLibrary<typeof symbols>["symbols"];

/**
 * The libc symbols above, with the 64-bit results of the calls that return a length narrowed
 * to `number` (see the module's notes).
 */
export interface Libc extends
  Omit<
    RawSymbols,
    "recv" | "recvInto" | "send" | "poll" | "epoll_wait_async" | "splice" | "write" | "read"
  > {
  /** `recv(2)` into the memory at address `buf`; -1 with errno set on error. */
  recv(fd: number, buf: bigint, len: bigint, flags: number): number;
  /** `recv(2)` into `buf`, at most `len` bytes; -1 with errno set on error. */
  recvInto(fd: number, buf: BufferSource | null, len: bigint, flags: number): number;
  /** `send(2)` of the first `len` bytes of `buf`; -1 with errno set on error. */
  send(fd: number, buf: BufferSource | null, len: bigint, flags: number): number;
  /** `poll(2)` on an array of `struct pollfd`, off the JS thread. */
  poll(fds: BufferSource | null, nfds: bigint, timeout: number): Promise<number>;
  /** `epoll_wait(2)` off the JS thread. */
  epoll_wait_async(
    epfd: number,
    events: BufferSource | null,
    max: number,
    timeout: number,
  ): Promise<number>;
  /** `splice(2)` without offsets; -1 with errno set on error. */
  splice(
    fdIn: number,
    offIn: null,
    fdOut: number,
    offOut: null,
    len: bigint,
    flags: number,
  ): number;
  /** `write(2)`. */
  write(fd: number, buf: BufferSource | null, len: bigint): number;
  /** `read(2)`. */
  read(fd: number, buf: BufferSource | null, len: bigint): number;
}

let lib: Deno.DynamicLibrary<typeof symbols> | undefined;

/** Opens libc.so.6 once and returns its symbols. Throws when FFI is not permitted. */
export function libc(): Libc {
  lib ??= Deno.dlopen("libc.so.6", symbols);
  return lib.symbols as unknown as Libc;
}
