/**
 * The NFQUEUE netlink wire format, in pure TypeScript (no FFI): parse the kernel's
 * NFQNL_MSG_PACKET, NLMSG_ERROR and NLMSG_DONE messages out of a receive buffer, and encode
 * verdict messages into a reusable batch buffer so that many verdicts leave in one send().
 *
 * Netlink headers are in host order (little-endian here), NFQA attribute values in network
 * order (big-endian), attributes are 4-byte aligned and their type is masked with 0x3fff.
 * Nothing here throws on kernel bytes or reads past the end it is given.
 *
 * About 400 lines on purpose: the kernel's constants, the parser and the encoder of one wire
 * format, each needing the others' offsets; about a third are the constants' documentation.
 *
 * @module
 */

import type { Hook, QueuedPacket } from "./queue.ts";

// --- netlink (linux/netlink.h) ---

/** Size of `struct nlmsghdr`. */
export const NLMSG_HDRLEN = 16;
/** Size of `struct nlattr`. */
export const NLA_HDRLEN = 4;
/** Size of `struct nfgenmsg`, the header every nfnetlink message carries after nlmsghdr. */
export const NFGENMSG_LEN = 4;
/** Bits of `nla_type` that hold the type (the rest are NLA_F_NESTED, NLA_F_NET_BYTEORDER). */
export const NLA_TYPE_MASK = 0x3fff;

/** No operation. */
export const NLMSG_NOOP = 1;
/** An error or, with error 0, an acknowledgement. */
export const NLMSG_ERROR = 2;
/** End of a multipart message. */
export const NLMSG_DONE = 3;
/** Data lost. */
export const NLMSG_OVERRUN = 4;

/** nlmsg_flags: a request. */
export const NLM_F_REQUEST = 0x1;
/** nlmsg_flags: ask the kernel for an acknowledgement. */
export const NLM_F_ACK = 0x4;

// --- nfnetlink_queue (linux/netfilter/nfnetlink_queue.h) ---

/** The nfnetlink subsystem id of NFQUEUE; message types are `(subsys << 8) | msg`. */
export const NFNL_SUBSYS_QUEUE = 3;
/** A queued packet, kernel to user space. */
export const NFQNL_MSG_PACKET = 0;
/** A verdict, user space to kernel. */
export const NFQNL_MSG_VERDICT = 1;
/** Queue configuration. */
export const NFQNL_MSG_CONFIG = 2;
/** One verdict for every packet up to an id. */
export const NFQNL_MSG_VERDICT_BATCH = 3;

/** Full nlmsg_type of a queued packet. */
export const NFQ_TYPE_PACKET = (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET;
/** Full nlmsg_type of a verdict. */
export const NFQ_TYPE_VERDICT = (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_VERDICT;

/** struct nfqnl_msg_packet_hdr: packet_id (be32), hw_protocol (be16), hook (u8). */
export const NFQA_PACKET_HDR = 1;
/** struct nfqnl_msg_verdict_hdr: verdict (be32), id (be32). */
export const NFQA_VERDICT_HDR = 2;
/** be32 nfmark. */
export const NFQA_MARK = 3;
/** be32 input interface index. */
export const NFQA_IFINDEX_INDEV = 5;
/** be32 output interface index. */
export const NFQA_IFINDEX_OUTDEV = 6;
/** The packet bytes (from the network header on). */
export const NFQA_PAYLOAD = 10;
/** be32 length of the packet when the payload was cut to the copy range. */
export const NFQA_CAP_LEN = 13;
/** be32 skb flags (NFQA_SKB_*). */
export const NFQA_SKB_INFO = 14;

/** NFQA_SKB_INFO: the L4 checksum is partial (CHECKSUM_PARTIAL). */
export const NFQA_SKB_CSUMNOTREADY = 1;
/** NFQA_SKB_INFO: a GSO super-packet. */
export const NFQA_SKB_GSO = 2;

/** NFQA_CFG_CMD command: nothing. */
export const NFQNL_CFG_CMD_NONE = 0;
/** NFQA_CFG_CMD command: bind this socket to the queue (EPERM when another socket holds it). */
export const NFQNL_CFG_CMD_BIND = 1;
/** NFQA_CFG_CMD command: release the queue (closing the socket does it too). */
export const NFQNL_CFG_CMD_UNBIND = 2;
/** NFQA_CFG_CMD command: obsolete, a no-op since Linux 3.8. */
export const NFQNL_CFG_CMD_PF_BIND = 3;
/** NFQA_CFG_CMD command: obsolete, a no-op since Linux 3.8. */
export const NFQNL_CFG_CMD_PF_UNBIND = 4;

/** NFQA_CFG_PARAMS copy mode: nothing. */
export const NFQNL_COPY_NONE = 0;
/** NFQA_CFG_PARAMS copy mode: metadata only. */
export const NFQNL_COPY_META = 1;
/** NFQA_CFG_PARAMS copy mode: metadata and packet bytes up to the copy range. */
export const NFQNL_COPY_PACKET = 2;

/** Config attribute: struct nfqnl_msg_config_cmd. */
export const NFQA_CFG_CMD = 1;
/** Config attribute: struct nfqnl_msg_config_params (copy range, copy mode). */
export const NFQA_CFG_PARAMS = 2;
/** Config attribute: be32 queue length. */
export const NFQA_CFG_QUEUE_MAXLEN = 3;
/** Config attribute: be32 mask of the NFQA_CFG_F_* flags to change. */
export const NFQA_CFG_MASK = 4;
/** Config attribute: be32 values of those flags. */
export const NFQA_CFG_FLAGS = 5;

/** NFQA_CFG_FLAGS: accept packets instead of dropping them when the queue is full. */
export const NFQA_CFG_F_FAIL_OPEN = 1;
/** NFQA_CFG_FLAGS: attach conntrack information. */
export const NFQA_CFG_F_CONNTRACK = 2;
/** NFQA_CFG_FLAGS: queue GSO super-packets whole instead of segmenting them. */
export const NFQA_CFG_F_GSO = 4;

/** Size of a verdict message without payload: nlmsghdr + nfgenmsg + NFQA_VERDICT_HDR. */
export const VERDICT_MSG_LEN = NLMSG_HDRLEN + NFGENMSG_LEN + NLA_HDRLEN + 8;
/** The largest payload an NFQA_PAYLOAD attribute can carry (nla_len is 16 bits). */
export const MAX_VERDICT_PAYLOAD = 0xffff - NLA_HDRLEN;

/** Rounds up to the netlink alignment (4 bytes). */
export function nlAlign(n: number): number {
  return (n + 3) & ~3;
}

/** What one netlink message turned out to be (the result of {@link parseMessage}). */
export const MessageKind = {
  /** An NFQNL_MSG_PACKET: {@link ParsedMessage.packet} is set. */
  Packet: 1,
  /** An NLMSG_ERROR: {@link ParsedMessage.errno} is the positive errno, 0 for an ack. */
  Error: 2,
  /** An NLMSG_DONE. */
  Done: 3,
  /** Any other well-formed message (NLMSG_NOOP, other nfnetlink types): nothing to do. */
  Other: 4,
  /** Fewer bytes remain than a header or the message's own length needs. Stop reading. */
  Truncated: 5,
  /** Invalid contents. `size` skips the message, or is 0 when its framing is broken. */
  Malformed: 6,
} as const;
/** One of the {@link MessageKind} values. */
export type MessageKind = typeof MessageKind[keyof typeof MessageKind];

/**
 * The reusable result of {@link parseMessage}: one object is filled again for every message,
 * so parsing allocates nothing but the {@link QueuedPacket} and its payload view.
 */
export class ParsedMessage {
  /** What the message is. */
  kind: MessageKind = MessageKind.Truncated;
  /** Bytes to advance to the next message (aligned); 0 when the rest cannot be read. */
  size = 0;
  /** nlmsg_type of the message (0 when truncated). */
  type = 0;
  /** nlmsg_flags of the message. */
  flags = 0;
  /** nlmsg_seq of the message: an ack carries the seq of its request. */
  seq = 0;
  /** For {@link MessageKind.Error}: the positive errno, 0 for an acknowledgement. */
  errno = 0;
  /** For {@link MessageKind.Packet}: the packet, its bytes a view into the buffer. */
  packet: QueuedPacket | null = null;
  /** For {@link MessageKind.Truncated} and {@link MessageKind.Malformed}: why. */
  reason = "";
}

/**
 * Parses the netlink message at `offset` of `buf`, reading no byte at or beyond `end`, and
 * fills `out`. Never throws on kernel bytes: bad input gives {@link MessageKind.Truncated}
 * or {@link MessageKind.Malformed} with a reason.
 *
 * @param view a DataView over exactly the bytes of `buf` (pass one to avoid creating it).
 * @returns `out.kind`
 *
 * @example Reading every message of a received datagram
 * ```ts ignore
 * const out = new ParsedMessage();
 * for (let off = 0; off < n; off += out.size) {
 *   if (parseMessage(buf, off, n, out) === MessageKind.Packet) handle(out.packet!);
 *   if (out.size === 0) break;
 * }
 * ```
 */
export function parseMessage(
  buf: Uint8Array,
  offset: number,
  end: number,
  out: ParsedMessage,
  view: DataView = new DataView(buf.buffer, buf.byteOffset, buf.byteLength),
): MessageKind {
  out.size = 0;
  out.type = 0;
  out.flags = 0;
  out.seq = 0;
  out.errno = 0;
  out.packet = null;
  out.reason = "";
  if (end > buf.length) end = buf.length;
  if (offset < 0 || end - offset < NLMSG_HDRLEN) {
    return fail(out, MessageKind.Truncated, "fewer bytes than a netlink header");
  }
  const len = view.getUint32(offset, true);
  out.type = view.getUint16(offset + 4, true);
  out.flags = view.getUint16(offset + 6, true);
  out.seq = view.getUint32(offset + 8, true);
  if (len < NLMSG_HDRLEN) {
    return fail(out, MessageKind.Malformed, `nlmsg_len ${len} is shorter than its header`);
  }
  if (len > end - offset) {
    return fail(out, MessageKind.Truncated, `nlmsg_len ${len} but ${end - offset} bytes left`);
  }
  // The last message of a datagram may lack its trailing padding.
  const size = Math.min(nlAlign(len), end - offset);
  const msgEnd = offset + len;

  switch (out.type) {
    case NFQ_TYPE_PACKET:
      out.size = size;
      return parsePacket(buf, view, offset + NLMSG_HDRLEN, msgEnd, out);
    case NLMSG_ERROR:
      out.size = size;
      if (len < NLMSG_HDRLEN + 4) {
        return fail(out, MessageKind.Malformed, "NLMSG_ERROR without an error code", size);
      }
      out.errno = 0 - view.getInt32(offset + NLMSG_HDRLEN, true); // not -x: no -0 for an ack
      out.kind = MessageKind.Error;
      return out.kind;
    case NLMSG_DONE:
      out.size = size;
      out.kind = MessageKind.Done;
      return out.kind;
    default:
      out.size = size;
      out.kind = MessageKind.Other;
      return out.kind;
  }
}

/** Parses the body of an NFQNL_MSG_PACKET (nfgenmsg and attributes) in [start, end). */
function parsePacket(
  buf: Uint8Array,
  view: DataView,
  start: number,
  end: number,
  out: ParsedMessage,
): MessageKind {
  if (end - start < NFGENMSG_LEN) {
    return fail(out, MessageKind.Malformed, "packet message without nfgenmsg", out.size);
  }
  const queue = view.getUint16(start + 2, false);
  let id = -1;
  let hook = 0;
  let skbInfo = 0;
  let indev = 0;
  let outdev = 0;
  let payloadStart = start;
  let payloadEnd = start;
  let a = start + NFGENMSG_LEN;
  while (end - a >= NLA_HDRLEN) {
    const alen = view.getUint16(a, true);
    const atype = view.getUint16(a + 2, true) & NLA_TYPE_MASK;
    if (alen < NLA_HDRLEN || alen > end - a) {
      return fail(
        out,
        MessageKind.Malformed,
        `attribute ${atype} has length ${alen} with ${end - a} bytes left`,
        out.size,
      );
    }
    const v = a + NLA_HDRLEN;
    const vlen = alen - NLA_HDRLEN;
    switch (atype) {
      case NFQA_PACKET_HDR:
        if (vlen < 7) return short(out, "NFQA_PACKET_HDR", vlen);
        id = view.getUint32(v, false);
        hook = view.getUint8(v + 6);
        break;
      case NFQA_PAYLOAD:
        payloadStart = v;
        payloadEnd = v + vlen;
        break;
      case NFQA_SKB_INFO:
        if (vlen < 4) return short(out, "NFQA_SKB_INFO", vlen);
        skbInfo = view.getUint32(v, false);
        break;
      case NFQA_IFINDEX_INDEV:
        if (vlen < 4) return short(out, "NFQA_IFINDEX_INDEV", vlen);
        indev = view.getUint32(v, false);
        break;
      case NFQA_IFINDEX_OUTDEV:
        if (vlen < 4) return short(out, "NFQA_IFINDEX_OUTDEV", vlen);
        outdev = view.getUint32(v, false);
        break;
    }
    a += nlAlign(alen);
  }
  if (id < 0) {
    return fail(out, MessageKind.Malformed, "packet message without NFQA_PACKET_HDR", out.size);
  }
  out.packet = {
    id,
    queue,
    hook: hook as Hook,
    bytes: buf.subarray(payloadStart, payloadEnd),
    checksumPartial: (skbInfo & NFQA_SKB_CSUMNOTREADY) !== 0,
    gso: (skbInfo & NFQA_SKB_GSO) !== 0,
    indev,
    outdev,
  };
  out.kind = MessageKind.Packet;
  return out.kind;
}

function fail(out: ParsedMessage, kind: MessageKind, reason: string, size = 0): MessageKind {
  out.kind = kind;
  out.reason = reason;
  out.size = size;
  out.packet = null;
  return kind;
}

function short(out: ParsedMessage, name: string, vlen: number): MessageKind {
  return fail(out, MessageKind.Malformed, `${name} value of ${vlen} bytes is too short`, out.size);
}

/** Bytes one verdict message takes in a batch, with a payload of `payloadLength` bytes or none. */
export function verdictSize(payloadLength = -1, withMark = false): number {
  const mark = withMark ? NLA_HDRLEN + 4 : 0;
  return payloadLength < 0
    ? VERDICT_MSG_LEN + mark
    : VERDICT_MSG_LEN + mark + NLA_HDRLEN + nlAlign(payloadLength);
}

/**
 * A reusable buffer of back-to-back NFQNL_MSG_VERDICT messages, sent to the kernel in one
 * send(). Append verdicts, send `buffer.subarray(0, length)`, then {@link clear}.
 *
 * @example
 * ```ts ignore
 * const batch = new VerdictBatch(128 * 1024);
 * batch.append(0, 42, Verdict.Accept);
 * batch.append(0, 43, Verdict.Accept, rewrittenBytes);
 * send(fd, batch.buffer, batch.length);
 * batch.clear();
 * ```
 */
export class VerdictBatch {
  /** The encoded messages are `buffer[0, length)`. */
  readonly buffer: Uint8Array<ArrayBuffer>;
  /** Bytes used. */
  length = 0;
  /** Messages appended since the last {@link clear}. */
  count = 0;
  readonly #view: DataView;

  /**
   * Creates an empty batch.
   *
   * @param capacity bytes; at least {@link verdictSize} of the largest verdict to append.
   */
  constructor(capacity: number) {
    this.buffer = new Uint8Array(capacity);
    this.#view = new DataView(this.buffer.buffer);
  }

  /**
   * Appends a verdict for packet `id` of `queue`, carrying `payload` as the new packet bytes
   * when given. Returns false, appending nothing, when it does not fit.
   *
   * @throws RangeError when `payload` is longer than {@link MAX_VERDICT_PAYLOAD}.
   */
  append(
    queue: number,
    id: number,
    verdict: number,
    payload?: Uint8Array,
    mark?: number,
  ): boolean {
    const plen = payload === undefined ? -1 : payload.length;
    if (plen > MAX_VERDICT_PAYLOAD) {
      throw new RangeError(`payload of ${plen} bytes exceeds ${MAX_VERDICT_PAYLOAD}`);
    }
    const size = verdictSize(plen, mark !== undefined);
    const o = this.length;
    if (o + size > this.buffer.length) return false;
    const v = this.#view;
    // nlmsghdr, host order. seq and portid 0: no ack is asked for, and 0 is the kernel.
    v.setUint32(o, size, true);
    v.setUint16(o + 4, NFQ_TYPE_VERDICT, true);
    v.setUint16(o + 6, NLM_F_REQUEST, true);
    v.setUint32(o + 8, 0, true);
    v.setUint32(o + 12, 0, true);
    // nfgenmsg: AF_UNSPEC, NFNETLINK_V0, res_id = queue (big-endian).
    v.setUint8(o + 16, 0);
    v.setUint8(o + 17, 0);
    v.setUint16(o + 18, queue, false);
    // NFQA_VERDICT_HDR
    v.setUint16(o + 20, NLA_HDRLEN + 8, true);
    v.setUint16(o + 22, NFQA_VERDICT_HDR, true);
    v.setUint32(o + 24, verdict, false);
    v.setUint32(o + 28, id, false);
    let p = o + VERDICT_MSG_LEN;
    if (mark !== undefined) {
      // NFQA_MARK sets the packet's mark (skb->mark), big-endian like every NFQA value.
      v.setUint16(p, NLA_HDRLEN + 4, true);
      v.setUint16(p + 2, NFQA_MARK, true);
      v.setUint32(p + 4, mark >>> 0, false);
      p += NLA_HDRLEN + 4;
    }
    if (payload !== undefined) {
      v.setUint16(p, NLA_HDRLEN + plen, true);
      v.setUint16(p + 2, NFQA_PAYLOAD, true);
      this.buffer.set(payload, p + NLA_HDRLEN);
      // The buffer is reused: clear the padding explicitly.
      for (let i = p + NLA_HDRLEN + plen; i < o + size; i++) this.buffer[i] = 0;
    }
    this.length = o + size;
    this.count++;
    return true;
  }

  /** Empties the batch (the buffer is kept). */
  clear(): void {
    this.length = 0;
    this.count = 0;
  }
}
