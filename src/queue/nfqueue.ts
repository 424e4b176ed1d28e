/**
 * The NFQUEUE datapath: one netlink socket bound to one kernel queue, driven through the
 * callback-free libmnl/libnetfilter_queue API over FFI.
 *
 * The receive loop keeps the event loop free and the FFI calls few: await one nonblocking
 * poll() on the socket, then drain every ready datagram with recv(MSG_DONTWAIT) on the JS
 * thread into one large buffer (each datagram at its own offset, so packets are views), and
 * send all verdicts of a batch concatenated in as few send() calls as possible.
 *
 * Longer than 400 lines: the queue's socket, its acknowledged configuration and its receive
 * and verdict loop share one buffer discipline; the wire format is netlink.ts, the kernel's
 * counters kernel_counters.ts.
 *
 * @module
 */

import { libc } from "../../ffi/libc.ts";
import { Errno, errno, errnoText } from "../system/errno.ts";
export { Errno, errnoText };
import { libmnl } from "../../ffi/libmnl.ts";
import { libnetfilterQueue } from "../../ffi/libnetfilter_queue.ts";
import {
  type Datapath,
  type DatapathStats,
  type PacketVerdict,
  type QueuedPacket,
  Verdict,
} from "./queue.ts";
import {
  MAX_VERDICT_PAYLOAD,
  MessageKind,
  NFQA_CFG_F_FAIL_OPEN,
  NFQA_CFG_F_GSO,
  NFQA_CFG_FLAGS,
  NFQA_CFG_MASK,
  NFQNL_CFG_CMD_BIND,
  NFQNL_COPY_PACKET,
  NFQNL_MSG_CONFIG,
  nlAlign,
  NLM_F_ACK,
  ParsedMessage,
  parseMessage,
  VerdictBatch,
  verdictSize,
} from "./netlink.ts";
import {
  AF_UNSPEC,
  MSG_DONTWAIT,
  MSG_TRUNC,
  NETLINK_CAP_ACK,
  NETLINK_NETFILTER,
  POLLIN,
  SO_RCVBUF,
  SO_RCVBUFFORCE,
  SO_SNDBUF,
  SO_SNDBUFFORCE,
  SOL_NETLINK,
  SOL_SOCKET,
} from "../../ffi/linux.ts";

/** Let the kernel choose the netlink port id (libmnl). */
export const MNL_SOCKET_AUTOPID = 0;

/** Keep each send() below this: a send larger than the socket's send buffer fails. */
export const SEND_BATCH_LIMIT = 128 * 1024;

/** Options of {@link NfqueueDatapath.open}. */
export interface NfqueueOptions {
  /** Queue number, 0-65535 (iptables `--queue-num`). */
  queue: number;
  /** Bytes of each packet copied to user space; default 0xffff (whole packets). */
  copyRange?: number;
  /** Packets the kernel holds for us before dropping (or accepting with failOpen); default 4096. */
  maxLen?: number;
  /** Receive GSO super-packets whole (NFQA_CFG_F_GSO); default true. */
  gso?: boolean;
  /** Accept instead of drop when the queue is full (NFQA_CFG_F_FAIL_OPEN); default false. */
  failOpen?: boolean;
  /** Socket receive buffer in bytes (SO_RCVBUFFORCE, else SO_RCVBUF); default 8 MiB. */
  rcvbuf?: number;
  /** Most packets one {@link NfqueueDatapath.receive} returns; default 256. */
  maxBatch?: number;
  /** Size of the receive buffer all packets of a batch share; default 2 MiB. */
  bufferSize?: number;
  /** How long open() waits for the kernel's acknowledgements; default 2000 ms. */
  ackTimeoutMs?: number;
}

const RECV_SLACK = 6 * 1024; // netlink and attribute headers around a payload, generously
const MAX_TIMEOUT_MS = 0x7fffffff;
// Batches taken without awaiting before receive() yields to the event loop through poll().
const MAX_SYNC_BATCHES = 8;

/** Swaps a u32 to network order for mnl_attr_put_u32, which writes host order. */
function htonl(x: number): number {
  return (((x & 0xff) << 24) | ((x & 0xff00) << 8) | ((x >>> 8) & 0xff00) | (x >>> 24)) >>> 0;
}

/**
 * A {@link Datapath} over one NFQUEUE queue.
 *
 * @example Accept everything on queue 5
 * ```ts ignore
 * const dp = await NfqueueDatapath.open({ queue: 5 });
 * try {
 *   for (let i = 0; i < 100; i++) {
 *     const packets = await dp.receive(200);
 *     dp.send(packets.map((packet) => ({ packet, verdict: Verdict.Accept, mangled: false })));
 *   }
 * } finally {
 *   dp.close();
 * }
 * ```
 */
export class NfqueueDatapath implements Datapath {
  /** The queue number this datapath is bound to. */
  readonly queue: number;
  #nl: Deno.PointerValue;
  readonly #fd: number;
  readonly #buf: Uint8Array;
  readonly #view: DataView;
  readonly #addr: bigint;
  readonly #minRoom: number;
  readonly #maxBatch: number;
  readonly #pollfd = new Uint8Array(8);
  readonly #batch = new VerdictBatch(SEND_BATCH_LIMIT + verdictSize(MAX_VERDICT_PAYLOAD));
  readonly #msg = new ParsedMessage();
  readonly #stats: DatapathStats = { received: 0, verdicts: 0, enobufs: 0, errors: 0 };
  #polling = false;
  /** Batches returned without an await since the last poll (see receive()). */
  #syncBatches = 0;
  #closed = false;

  private constructor(
    nl: Deno.PointerValue,
    fd: number,
    queue: number,
    opts: Required<NfqueueOptions>,
  ) {
    this.queue = queue;
    this.#nl = nl;
    this.#fd = fd;
    this.#minRoom = nlAlign(opts.copyRange) + RECV_SLACK;
    this.#maxBatch = opts.maxBatch;
    this.#buf = new Uint8Array(Math.max(opts.bufferSize, 2 * this.#minRoom));
    this.#view = new DataView(this.#buf.buffer);
    // recv() takes a raw address: the buffer is never resized, so its address is stable.
    this.#addr = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(this.#buf)));
    const pv = new DataView(this.#pollfd.buffer);
    pv.setInt32(0, fd, true);
    pv.setInt16(4, POLLIN, true);
  }

  /**
   * Opens a netlink socket, binds it to `options.queue` and configures the queue. The kernel
   * acknowledges every config message; a refusal (EPERM when another process holds the
   * queue) becomes a thrown Error naming the queue and errno, with the socket closed.
   * Packets that arrive before open() returns are accepted unchanged.
   */
  static async open(options: NfqueueOptions): Promise<NfqueueDatapath> {
    const opts: Required<NfqueueOptions> = {
      queue: options.queue,
      copyRange: options.copyRange ?? 0xffff,
      maxLen: options.maxLen ?? 4096,
      gso: options.gso ?? true,
      failOpen: options.failOpen ?? false,
      rcvbuf: options.rcvbuf ?? 8 * 1024 * 1024,
      maxBatch: options.maxBatch ?? 256,
      bufferSize: options.bufferSize ?? 2 * 1024 * 1024,
      ackTimeoutMs: options.ackTimeoutMs ?? 2000,
    };
    const q = opts.queue;
    checkInt("queue", q, 0, 0xffff);
    checkInt("copyRange", opts.copyRange, 1, 0xffff);
    checkInt("maxLen", opts.maxLen, 1, 0xffffffff);
    checkInt("rcvbuf", opts.rcvbuf, 0, 0x7fffffff);
    checkInt("maxBatch", opts.maxBatch, 1, 1 << 20);

    const mnl = libmnl();
    libnetfilterQueue(); // fail early, before any socket exists, when it is missing
    errno(); // locate errno now, not between a failing call and the read of its errno
    const nl = mnl.mnl_socket_open(NETLINK_NETFILTER);
    if (nl === null) {
      throw new Error(
        `nfqueue: cannot open a netlink socket for queue ${q}: ${errnoText(errno())}`,
      );
    }
    try {
      if (mnl.mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
        throw new Error(
          `nfqueue: cannot bind a netlink socket for queue ${q}: ${errnoText(errno())}`,
        );
      }
      const fd = mnl.mnl_socket_get_fd(nl);
      if (opts.rcvbuf > 0 && !setIntOpt(fd, SOL_SOCKET, SO_RCVBUFFORCE, opts.rcvbuf)) {
        setIntOpt(fd, SOL_SOCKET, SO_RCVBUF, opts.rcvbuf);
      }
      // Room for a full verdict batch whatever net.core.wmem_default is (best effort).
      if (!setIntOpt(fd, SOL_SOCKET, SO_SNDBUFFORCE, 2 * SEND_BATCH_LIMIT)) {
        setIntOpt(fd, SOL_SOCKET, SO_SNDBUF, 2 * SEND_BATCH_LIMIT);
      }
      // Without it an error ack for a mangled verdict echoes the whole packet back.
      setIntOpt(fd, SOL_NETLINK, NETLINK_CAP_ACK, 1);
      const dp = new NfqueueDatapath(nl, fd, q, opts);
      await dp.#configure(opts);
      return dp;
    } catch (e) {
      mnl.mnl_socket_close(nl);
      throw e;
    }
  }

  /**
   * Binds the queue and sets copy mode, queue length and flags: two config messages in one
   * datagram (the kernel handles both in the same system call), each with NLM_F_ACK so that
   * each refusal can be named. PF_BIND/PF_UNBIND are not sent: no-ops since Linux 3.8.
   */
  async #configure(opts: Required<NfqueueOptions>): Promise<void> {
    const nfq = libnetfilterQueue();
    const mnl = libmnl();
    const q = opts.queue;
    const buf = new Uint8Array(512);
    const view = new DataView(buf.buffer);
    const seq = (Date.now() & 0x7fffffff) >>> 0;

    nfq.nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, q);
    nfq.nfq_nlmsg_cfg_put_cmd(buf, AF_UNSPEC, NFQNL_CFG_CMD_BIND); // pf is ignored for BIND
    const len1 = view.getUint32(0, true);
    const second = buf.subarray(nlAlign(len1));
    nfq.nfq_nlmsg_put(second, NFQNL_MSG_CONFIG, q);
    nfq.nfq_nlmsg_cfg_put_params(second, NFQNL_COPY_PACKET, opts.copyRange);
    nfq.nfq_nlmsg_cfg_put_qmaxlen(second, opts.maxLen);
    const flags = (opts.gso ? NFQA_CFG_F_GSO : 0) | (opts.failOpen ? NFQA_CFG_F_FAIL_OPEN : 0);
    mnl.mnl_attr_put_u32(second, NFQA_CFG_MASK, htonl(NFQA_CFG_F_GSO | NFQA_CFG_F_FAIL_OPEN));
    mnl.mnl_attr_put_u32(second, NFQA_CFG_FLAGS, htonl(flags));
    const len2 = view.getUint32(nlAlign(len1), true);
    for (const [at, s] of [[0, seq], [nlAlign(len1), seq + 1]]) {
      view.setUint16(at + 6, view.getUint16(at + 6, true) | NLM_F_ACK, true);
      view.setUint32(at + 8, s, true);
    }
    const total = nlAlign(len1) + len2;
    if (Number(mnl.mnl_socket_sendto(this.#nl, buf, BigInt(total))) < 0) {
      throw new Error(`nfqueue: cannot send the config of queue ${q}: ${errnoText(errno())}`);
    }

    const results = new Map<number, number>(); // seq -> errno
    const deadline = Date.now() + opts.ackTimeoutMs;
    for (let round = 0; round < 1000 && results.size < 2; round++) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      if (await libc().poll(this.#pollfd, 1n, left) <= 0) continue;
      this.#drainDuringOpen(seq, results);
    }
    const bindErr = results.get(seq);
    const cfgErr = results.get(seq + 1);
    if (bindErr === undefined || cfgErr === undefined) {
      throw new Error(
        `nfqueue: no acknowledgement from the kernel for queue ${q} within ` +
          `${opts.ackTimeoutMs} ms`,
      );
    }
    if (bindErr !== 0) {
      const why = bindErr === Errno.EPERM
        ? ": another process holds this queue number, or CAP_NET_ADMIN is missing"
        : "";
      throw new Error(`nfqueue: cannot bind queue ${q}: ${errnoText(bindErr)}${why}`);
    }
    if (cfgErr !== 0) {
      throw new Error(
        `nfqueue: cannot configure queue ${q} (copy range ${opts.copyRange}, ` +
          `max length ${opts.maxLen}, flags ${flags}): ${errnoText(cfgErr)}`,
      );
    }
  }

  /** Reads acks for `seq` and `seq + 1` into `results`; accepts packets that slip in. */
  #drainDuringOpen(seq: number, results: Map<number, number>): void {
    const c = libc();
    const msg = this.#msg;
    for (let i = 0; i < 64; i++) {
      const n = c.recv(this.#fd, this.#addr, BigInt(this.#buf.length), MSG_DONTWAIT);
      if (n < 0) {
        const e = errno();
        if (e === Errno.ENOBUFS) {
          this.#stats.enobufs++;
          continue;
        }
        return; // EAGAIN, or an error the next poll reports again
      }
      const verdicts: PacketVerdict[] = [];
      for (let off = 0; off < n; off += msg.size) {
        const kind = parseMessage(this.#buf, off, n, msg, this.#view);
        if (kind === MessageKind.Error && (msg.seq === seq || msg.seq === seq + 1)) {
          results.set(msg.seq, msg.errno);
        } else if (kind === MessageKind.Packet) {
          this.#stats.received++;
          verdicts.push({ packet: msg.packet!, verdict: Verdict.Accept, mangled: false });
        }
        if (msg.size === 0) break;
      }
      this.send(verdicts);
    }
  }

  /**
   * Waits up to `timeoutMs` (keep it short: an in-flight wait cannot be cancelled, and
   * close() completes after it) and returns every packet ready, at most `maxBatch`.
   * The packets' bytes are views into a buffer that the next call overwrites.
   * Resolves to [] once closed. Only one call may be in flight.
   */
  async receive(timeoutMs: number): Promise<QueuedPacket[]> {
    if (this.#closed) return [];
    if (this.#polling) throw new Error("nfqueue: receive() is already in flight");
    // Under load packets are already waiting: take them without poll()'s thread hop. After a
    // few such batches in a row, poll anyway: its await lets the event loop run other I/O
    // (a resolved promise would only run microtasks and starve the TCP relay's sockets).
    if (this.#syncBatches < MAX_SYNC_BATCHES) {
      const ready = this.#drain();
      if (ready.length > 0) {
        this.#syncBatches++;
        return ready;
      }
    }
    this.#syncBatches = 0;
    const timeout = Math.max(0, Math.min(Math.trunc(timeoutMs) || 0, MAX_TIMEOUT_MS));
    this.#polling = true;
    let ready: number;
    try {
      ready = await libc().poll(this.#pollfd, 1n, timeout);
    } finally {
      this.#polling = false;
    }
    if (this.#closed) {
      this.#release();
      return [];
    }
    return ready > 0 ? this.#drain() : [];
  }

  /** The queue's netlink socket (see Datapath.fd). */
  get fd(): number {
    return this.#fd;
  }

  /** Every packet ready now, without waiting (see Datapath.drain); [] once closed. */
  drain(): QueuedPacket[] {
    return this.#closed || this.#polling ? [] : this.#drain();
  }

  /** Reads every ready datagram without blocking; each at its own offset in the buffer. */
  #drain(): QueuedPacket[] {
    const c = libc();
    const buf = this.#buf;
    const msg = this.#msg;
    const stats = this.#stats;
    const packets: QueuedPacket[] = [];
    let off = 0;
    // Bounded even when every recv fails: ENOBUFS and EINTR do not consume datagrams.
    for (let i = 0; i < this.#maxBatch + 64; i++) {
      const room = buf.length - off;
      if (packets.length >= this.#maxBatch || room < this.#minRoom) break;
      const n = c.recv(this.#fd, this.#addr + BigInt(off), BigInt(room), MSG_DONTWAIT | MSG_TRUNC);
      if (n < 0) {
        const e = errno();
        if (e === Errno.EAGAIN) break;
        if (e === Errno.ENOBUFS) {
          stats.enobufs++; // the kernel dropped packets for us; the socket still works
          continue;
        }
        if (e === Errno.EINTR) continue;
        stats.errors++;
        break;
      }
      if (n === 0) break;
      let end = off + n;
      if (n > room) {
        stats.errors++; // truncated datagram (MSG_TRUNC gives its real length)
        end = buf.length;
      }
      for (let m = off; m < end; m += msg.size) {
        const kind = parseMessage(buf, m, end, msg, this.#view);
        if (kind === MessageKind.Packet) {
          packets.push(msg.packet!);
        } else if (
          (kind === MessageKind.Error && msg.errno !== 0) || kind === MessageKind.Truncated ||
          kind === MessageKind.Malformed
        ) {
          stats.errors++;
        }
        if (msg.size === 0) break;
      }
      off = (end + 7) & ~7;
    }
    stats.received += packets.length;
    return packets;
  }

  /**
   * Encodes the verdicts back to back and sends them in as few send() calls as possible,
   * each under {@link SEND_BATCH_LIMIT}. A mangled packet longer than an NFQA_PAYLOAD can
   * carry is dropped and counted as an error. Never throws: failed sends are counted.
   */
  send(verdicts: PacketVerdict[]): void {
    if (this.#nl === null) return;
    const batch = this.#batch;
    for (let i = 0; i < verdicts.length; i++) {
      const v = verdicts[i];
      const p = v.packet;
      let payload: Uint8Array | undefined = v.mangled ? p.bytes : undefined;
      let verdict: number = v.verdict;
      if (payload !== undefined && payload.length > MAX_VERDICT_PAYLOAD) {
        this.#stats.errors++;
        payload = undefined;
        verdict = Verdict.Drop;
      }
      const size = verdictSize(payload === undefined ? -1 : payload.length, v.mark !== undefined);
      if (batch.count > 0 && batch.length + size > SEND_BATCH_LIMIT) this.#flush();
      batch.append(p.queue, p.id, verdict, payload, v.mark);
    }
    this.#flush();
  }

  #flush(): void {
    const batch = this.#batch;
    if (batch.count === 0) return;
    if (libc().send(this.#fd, batch.buffer, BigInt(batch.length), 0) < 0) {
      this.#stats.errors++;
    } else {
      this.#stats.verdicts += batch.count;
    }
    batch.clear();
  }

  /** Counters so far (a copy). */
  stats(): DatapathStats {
    return { ...this.#stats };
  }

  /**
   * Releases the queue and closes the socket; the kernel drops packets still awaiting a
   * verdict. Idempotent. With a receive() in flight, the socket is closed when its poll
   * returns, and that receive() resolves to [].
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (!this.#polling) this.#release();
  }

  #release(): void {
    if (this.#nl === null) return;
    libmnl().mnl_socket_close(this.#nl);
    this.#nl = null;
  }
}

function setIntOpt(fd: number, level: number, name: number, value: number): boolean {
  const v = new Int32Array([value]);
  return libc().setsockopt(fd, level, name, new Uint8Array(v.buffer), 4) === 0;
}

function checkInt(name: string, v: number, min: number, max: number): void {
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new RangeError(`nfqueue: ${name} must be an integer in [${min}, ${max}], got ${v}`);
  }
}
