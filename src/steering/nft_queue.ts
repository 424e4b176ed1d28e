/**
 * The NFQUEUE rule in krelay's own nftables table: the xtables NFQUEUE target (nft_compat),
 * put in the table's `queue` chain by a netlink message of krelay's own, since this kernel
 * lacks nft's native `queue` statement (CONFIG_NFT_QUEUE) and the `nft` tool writes no xtables
 * target. So the packets krelay must decide are queued from the table's own chains (nft.ts
 * jumps to `queue`), and no iptables chain, each a hook every packet passes, is needed for
 * them.
 *
 * The rule is inserted at the head of `queue`, before its `accept`: without the rule (krelay.ko
 * selects the packets, or the table was just made) a jump there accepts as before.
 *
 * @module
 */

import { libmnl } from "../../ffi/libmnl.ts";
import { NETLINK_NETFILTER } from "../../ffi/linux.ts";

const NLM_F_REQUEST = 0x1;
const NLM_F_ACK = 0x4;
const NLM_F_CREATE = 0x400;
const NLMSG_ERROR = 0x2;
const NFNL_MSG_BATCH_BEGIN = 0x10;
const NFNL_MSG_BATCH_END = 0x11;
const NFNL_SUBSYS_NFTABLES = 10;
const NFT_MSG_NEWRULE = 6;
const NFPROTO = { ip: 2, ip6: 10 } as const;
const NLA_F_NESTED = 0x8000;
// struct xt_NFQ_info_v3's flags.
const NFQ_FLAG_BYPASS = 0x1;

/** One netlink attribute: a type and either raw bytes or nested attributes. */
type Attr = [type: number, value: Uint8Array | Attr[]];

const text = (s: string) => new TextEncoder().encode(s + "\0");

function encodeAttrs(attrs: Attr[]): Uint8Array<ArrayBuffer> {
  const parts = attrs.map(([type, value]) => {
    const nested = !(value instanceof Uint8Array);
    const body = nested ? encodeAttrs(value) : value;
    const out = new Uint8Array(4 + body.length + ((4 - body.length % 4) % 4));
    const view = new DataView(out.buffer);
    view.setUint16(0, 4 + body.length, true);
    view.setUint16(2, nested ? type | NLA_F_NESTED : type, true);
    out.set(body, 4);
    return out;
  });
  return concat(parts);
}

function concat(parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A netlink message with its nfgenmsg header (family, version 0, res_id big-endian). */
function message(
  type: number,
  flags: number,
  seq: number,
  family: number,
  resId: number,
  body = new Uint8Array(),
): Uint8Array {
  const out = new Uint8Array(20 + body.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, out.length, true);
  view.setUint16(4, type, true);
  view.setUint16(6, flags, true);
  view.setUint32(8, seq, true);
  out[16] = family;
  view.setUint16(18, resId, false);
  out.set(body, 20);
  return out;
}

/** The family of krelay's tables: `ip`, or `ip6` for IPv6 clients. */
export type QueueFamily = keyof typeof NFPROTO;

/**
 * The netlink batch that inserts `-j NFQUEUE --queue-num queue --queue-bypass` at the head of
 * chain `chain` of table `family table`; only the rule's message asks for an acknowledgement.
 */
export function queueRuleBatch(
  table: string,
  chain: string,
  queue: number,
  seq = 1,
  family: QueueFamily = "ip",
): Uint8Array<ArrayBuffer> {
  // struct xt_NFQ_info_v3 { u16 queuenum; u16 queues_total; u16 flags; }, host order, padded.
  const info = new Uint8Array(8);
  const view = new DataView(info.buffer);
  view.setUint16(0, queue, true);
  view.setUint16(2, 1, true);
  view.setUint16(4, NFQ_FLAG_BYPASS, true);
  const rev = new Uint8Array(4);
  new DataView(rev.buffer).setUint32(0, 3, false);
  const target: Attr[] = [[1, text("NFQUEUE")], [2, rev], [3, info]];
  const rule = encodeAttrs([
    [1, text(table)],
    [2, text(chain)],
    [4, [[1, [[1, text("target")], [2, target]]]]],
  ]);
  const subsys = NFNL_SUBSYS_NFTABLES << 8;
  return concat([
    message(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq, 0, NFNL_SUBSYS_NFTABLES),
    message(
      subsys | NFT_MSG_NEWRULE,
      NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK,
      seq + 1,
      NFPROTO[family],
      0,
      rule,
    ),
    message(NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq + 2, 0, NFNL_SUBSYS_NFTABLES),
  ]);
}

/** The errno of the first netlink error message in `reply` (0: acknowledged). */
export function ackError(reply: Uint8Array): number | undefined {
  const view = new DataView(reply.buffer, reply.byteOffset, reply.byteLength);
  for (let at = 0; at + 16 <= reply.length;) {
    const len = view.getUint32(at, true);
    if (len < 16) return undefined;
    if (view.getUint16(at + 4, true) === NLMSG_ERROR && len >= 20) {
      return Math.abs(view.getInt32(at + 16, true));
    }
    at += (len + 3) & ~3;
  }
  return undefined;
}

/**
 * Inserts the NFQUEUE rule in chain `chain` of `family table` (which must exist) through a
 * netfilter netlink socket; throws with the kernel's errno when it refuses.
 */
export function insertQueueRule(
  table: string,
  chain: string,
  queue: number,
  family: QueueFamily = "ip",
): void {
  const mnl = libmnl();
  const nl = mnl.mnl_socket_open(NETLINK_NETFILTER);
  if (nl === null) throw new Error("nft queue rule: cannot open a netfilter netlink socket");
  try {
    if (mnl.mnl_socket_bind(nl, 0, 0) < 0) throw new Error("nft queue rule: bind failed");
    const batch = queueRuleBatch(table, chain, queue, 1, family);
    if (Number(mnl.mnl_socket_sendto(nl, batch, BigInt(batch.length))) !== batch.length) {
      throw new Error("nft queue rule: send failed");
    }
    const reply = new Uint8Array(8192);
    const n = Number(mnl.mnl_socket_recvfrom(nl, reply, BigInt(reply.length)));
    if (n < 0) throw new Error("nft queue rule: no answer from the kernel");
    const errno = ackError(reply.subarray(0, n));
    if (errno !== 0) {
      throw new Error(`nft queue rule refused by the kernel (errno ${errno ?? "unknown"})`);
    }
  } finally {
    mnl.mnl_socket_close(nl);
  }
}
