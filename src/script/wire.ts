/**
 * The messages between the script host (krelay's main thread) and a script's worker. A batch
 * travels as one buffer holding every datagram back to back plus a table of numbers per packet
 * (where it is, its hook and its flow), both transferred, not copied. The answer is one outcome
 * code per packet, the changed datagrams, the errors and the script's log lines.
 *
 * @module
 */

/** Numbers per packet in {@link BatchMessage.meta}. */
export const META_FIELDS = 10;

/** Field positions within one packet's {@link META_FIELDS} numbers. */
export const Meta = {
  offset: 0,
  length: 1,
  /** 0 request, 1 reply. */
  hook: 2,
  /** IP protocol number (6 TCP, 17 UDP). */
  protocol: 3,
  client: 4,
  clientPort: 5,
  service: 6,
  servicePort: 7,
  server: 8,
  serverPort: 9,
} as const;

/** What the script did with one packet. */
export const Outcome = {
  /** match returned false: accepted unchanged. */
  Unmatched: 0,
  /** Accepted unchanged. */
  Accepted: 1,
  /** Accepted with changes (the datagram is in {@link ResultMessage.changed}). */
  Changed: 2,
  /** Dropped. */
  Dropped: 3,
  /** The script threw (or returned something else than a verdict): the default verdict. */
  Failed: 4,
} as const;
/** One of {@link Outcome}'s values. */
export type Outcome = typeof Outcome[keyof typeof Outcome];

/** A console line of the script. */
export interface LogLine {
  level: "debug" | "info" | "warning" | "error";
  text: string;
}

/** Host -> worker: a batch to decide. */
export interface BatchMessage {
  kind: "batch";
  seq: number;
  data: ArrayBuffer;
  meta: Uint32Array<ArrayBuffer>;
  /**
   * The flows of IPv6 packets, whose addresses do not fit the numbers of `meta` (there 0):
   * [index in the batch, client, service, server], addresses as text.
   */
  v6?: [number, string, string, string][];
}

/** Worker -> host: the script module is loaded and exports these functions. */
export interface ReadyMessage {
  kind: "ready";
  match: boolean;
  target: boolean;
}

/** Worker -> host: the script cannot run (it exports neither function, say). */
export interface FailedMessage {
  kind: "failed";
  error: string;
}

/** Worker -> host: the decisions for batch `seq`. */
export interface ResultMessage {
  kind: "result";
  seq: number;
  outcomes: Uint8Array;
  /** [index in the batch, the datagram as changed]. */
  changed: [number, Uint8Array][];
  /** [index in the batch, the error's text]. */
  errors: [number, string][];
  logs: LogLine[];
}

/** Worker -> host: console lines written outside a batch (by a timer, say). */
export interface LogMessage {
  kind: "log";
  logs: LogLine[];
}

/** Anything a worker sends. */
export type WorkerMessage = ReadyMessage | FailedMessage | ResultMessage | LogMessage;

/** One packet for a script, as the host describes it. */
export interface BatchPacket {
  bytes: Uint8Array;
  /** 0 request, 1 reply. */
  hook: 0 | 1;
  protocol: number;
  client: number;
  clientPort: number;
  service: number;
  servicePort: number;
  server: number;
  serverPort: number;
  /** An IPv6 packet's flow addresses (client, service, server); the numbers are then 0. */
  v6?: readonly [string, string, string];
}

/** Packs `packets` into a {@link BatchMessage} (copies the bytes once). */
export function encodeBatch(seq: number, packets: readonly BatchPacket[]): BatchMessage {
  let total = 0;
  for (const p of packets) total += p.bytes.length;
  const data = new Uint8Array(total);
  const meta = new Uint32Array(packets.length * META_FIELDS);
  let offset = 0;
  let v6: [number, string, string, string][] | undefined;
  for (let i = 0; i < packets.length; i++) {
    const p = packets[i];
    if (p.v6 !== undefined) (v6 ??= []).push([i, ...p.v6]);
    data.set(p.bytes, offset);
    const m = i * META_FIELDS;
    meta[m + Meta.offset] = offset;
    meta[m + Meta.length] = p.bytes.length;
    meta[m + Meta.hook] = p.hook;
    meta[m + Meta.protocol] = p.protocol;
    meta[m + Meta.client] = p.client;
    meta[m + Meta.clientPort] = p.clientPort;
    meta[m + Meta.service] = p.service;
    meta[m + Meta.servicePort] = p.servicePort;
    meta[m + Meta.server] = p.server;
    meta[m + Meta.serverPort] = p.serverPort;
    offset += p.bytes.length;
  }
  const message: BatchMessage = { kind: "batch", seq, data: data.buffer, meta };
  if (v6 !== undefined) message.v6 = v6;
  return message;
}
