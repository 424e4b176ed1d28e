/**
 * Thin `Deno.dlopen` bindings to libmnl (the minimalistic netlink library). No logic: the
 * library is opened on first use, so importing this module needs neither libmnl nor the FFI
 * permission.
 *
 * @module
 */

const symbols = {
  /** `struct mnl_socket *mnl_socket_open(int bus)`; null on error (errno set). */
  mnl_socket_open: { parameters: ["i32"], result: "pointer" },
  /** `int mnl_socket_bind(struct mnl_socket *nl, unsigned int groups, pid_t pid)`. */
  mnl_socket_bind: { parameters: ["pointer", "u32", "i32"], result: "i32" },
  /** `int mnl_socket_get_fd(const struct mnl_socket *nl)`. */
  mnl_socket_get_fd: { parameters: ["pointer"], result: "i32" },
  /** `unsigned int mnl_socket_get_portid(const struct mnl_socket *nl)`. */
  mnl_socket_get_portid: { parameters: ["pointer"], result: "u32" },
  /** `ssize_t mnl_socket_sendto(const struct mnl_socket *nl, const void *req, size_t siz)`. */
  mnl_socket_sendto: { parameters: ["pointer", "buffer", "usize"], result: "isize" },
  /** `ssize_t mnl_socket_recvfrom(const struct mnl_socket *nl, void *buf, size_t siz)`. */
  mnl_socket_recvfrom: { parameters: ["pointer", "buffer", "usize"], result: "isize" },
  /** `int mnl_socket_close(struct mnl_socket *nl)`: closes the fd and frees `nl`. */
  mnl_socket_close: { parameters: ["pointer"], result: "i32" },
  /**
   * `void mnl_attr_put_u32(struct nlmsghdr *nlh, uint16_t type, uint32_t data)`: appends an
   * attribute in host byte order (NFQUEUE config flags must be byte-swapped first).
   */
  mnl_attr_put_u32: { parameters: ["buffer", "u16", "u32"], result: "void" },
} as const satisfies Deno.ForeignLibraryInterface;

/** The libmnl symbols above. */
export type Libmnl = Deno.DynamicLibrary<typeof symbols>["symbols"];

let lib: Deno.DynamicLibrary<typeof symbols> | undefined;

/** Opens libmnl.so.0 once and returns its symbols. Throws when it is missing. */
export function libmnl(): Libmnl {
  lib ??= Deno.dlopen("libmnl.so.0", symbols);
  return lib.symbols;
}
