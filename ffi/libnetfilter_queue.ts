/**
 * Thin `Deno.dlopen` bindings to the callback-free message builders of libnetfilter_queue
 * (`nfq_nlmsg_*`). No logic: the library is opened on first use, so importing this module
 * needs neither the library nor the FFI permission. `mnl_attr_put_u32`, which the config
 * messages also use, lives in {@link ./libmnl.ts}.
 *
 * @module
 */

const symbols = {
  /**
   * `struct nlmsghdr *nfq_nlmsg_put(char *buf, int type, uint32_t queue_num)`: writes an
   * nlmsghdr (NLM_F_REQUEST, seq 0) and an nfgenmsg for `queue_num` at the start of `buf`.
   */
  nfq_nlmsg_put: { parameters: ["buffer", "i32", "u32"], result: "pointer" },
  /** `void nfq_nlmsg_cfg_put_cmd(struct nlmsghdr *nlh, uint16_t pf, uint8_t cmd)`. */
  nfq_nlmsg_cfg_put_cmd: { parameters: ["buffer", "u16", "u8"], result: "void" },
  /** `void nfq_nlmsg_cfg_put_params(struct nlmsghdr *nlh, uint8_t mode, int range)`. */
  nfq_nlmsg_cfg_put_params: { parameters: ["buffer", "u8", "i32"], result: "void" },
  /** `void nfq_nlmsg_cfg_put_qmaxlen(struct nlmsghdr *nlh, uint32_t qmaxlen)`. */
  nfq_nlmsg_cfg_put_qmaxlen: { parameters: ["buffer", "u32"], result: "void" },
} as const satisfies Deno.ForeignLibraryInterface;

/** The libnetfilter_queue symbols above. */
export type Libnfq = Deno.DynamicLibrary<typeof symbols>["symbols"];

let lib: Deno.DynamicLibrary<typeof symbols> | undefined;

/** Opens libnetfilter_queue.so.1 once and returns its symbols. Throws when it is missing. */
export function libnetfilterQueue(): Libnfq {
  lib ??= Deno.dlopen("libnetfilter_queue.so.1", symbols);
  return lib.symbols;
}
