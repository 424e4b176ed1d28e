/**
 * The packet-script API: what a krelay script sees and returns. A script is a TypeScript module
 * exporting {@link MatchFunction | `match`}, {@link TargetFunction | `target`}, or both, loaded
 * with `krelay run --script FILE [--on udp:53,tcp:80]` or `krelay script load NAME FILE`.
 *
 * - `match(packet, ctx)` returns true for the packets the script acts on. Unmatched packets are
 *   accepted unchanged.
 * - `target(packet, ctx)` acts on a (matched) packet: it may change it through the setters and
 *   returns `"accept"` or `"drop"`; returning nothing accepts. A changed packet is sent on with
 *   its checksums fixed by krelay (and, for a UDP payload of a new size, its lengths).
 * - A script with `match` and no `target` is a filter: matched packets are dropped.
 * - A script with `target` and no `match` acts on every packet of its services.
 *
 * Which packets a script sees: those of its services (`--on udp:53,tcp:80`; default every
 * configured service), at two hooks, both seen from the client's side of the relay:
 * `"request"` (client -> relay:service, before the relay rewrites it toward the real server)
 * and `"reply"` (relay:service -> client, after the relay rewrote the server's answer). For TCP
 * these are the client's segments (handshake, data, FIN, RST); the relay's own connection to
 * the server is not shown to scripts.
 *
 * Each script runs in a Deno process of its own without any permission: no files, no network,
 * no subprocesses, no FFI, no environment, no workers. Module-level variables keep state
 * between packets for as long as the script is loaded; `setTimeout` and `setInterval` work;
 * `console.log` (and `info`, `warn`, `error`, `debug`) lines go to krelay's log with the
 * script's name, at most 50 a second. A script that throws, or takes longer than
 * `script_budget_ms` on a batch, gets the default verdict (`script_default_verdict`, accept
 * unless configured otherwise) for the packets concerned, and is disabled after
 * `script_max_errors` errors within `script_error_window` seconds. A script whose process uses
 * more memory than `script_memory_mb` (plus 96 MB outside the heap), spends more CPU outside
 * batches than 4 budgets a second (200-400 ms: a timer that runs too long) or writes more than
 * 1 MB of console output a second is killed and disabled at once. Functions are synchronous:
 * a returned promise is an error.
 *
 * Import the types with a path to this file (relative, or absolute):
 *
 * @example A filter dropping DNS queries from one client
 * ```ts
 * import type { Packet, ScriptContext } from "./api.ts";
 *
 * export function match(_packet: Packet, ctx: ScriptContext): boolean {
 *   return ctx.hook === "request" && ctx.flow.client.address === "198.51.100.66";
 * }
 * ```
 *
 * @example A target that rewrites replies and counts packets
 * ```ts
 * import type { Packet, ScriptContext, Verdict } from "./api.ts";
 *
 * let seen = 0;
 * setInterval(() => console.log(`${seen} packets so far`), 60_000);
 *
 * export function target(packet: Packet, ctx: ScriptContext): Verdict {
 *   seen++;
 *   if (ctx.hook === "reply") packet.ttl = 64;
 *   return packet.payload.length > 1200 ? "drop" : "accept";
 * }
 * ```
 * @module
 */

/** Where the packet is: client -> relay (before NAT), or relay -> client (after NAT). */
export type ScriptHook = "request" | "reply";

/** The transport protocols scripts see. */
export type Protocol = "udp" | "tcp";

/** What a target decides: send the packet on (with any changes made), or drop it. */
export type Verdict = "accept" | "drop";

/** TCP flag names, for {@link Packet.hasFlag} and {@link Packet.setFlag}. */
export type TcpFlagName = "FIN" | "SYN" | "RST" | "PSH" | "ACK" | "URG" | "ECE" | "CWR";

/** An address and a port. */
export interface Endpoint {
  /** Dotted quad, like "198.51.100.10", or IPv6 text, like "2001:db8:1::10". */
  readonly address: string;
  readonly port: number;
}

/** The relayed flow a packet belongs to. */
export interface Flow {
  readonly protocol: Protocol;
  /** The client: a request's source, a reply's destination. */
  readonly client: Endpoint;
  /** What the client talks to: the relay's address and the service port. */
  readonly service: Endpoint;
  /** The real server the flow is relayed to (for a new flow, the one it will be relayed to). */
  readonly server: Endpoint;
}

/** What a script knows about a packet besides its bytes. */
export interface ScriptContext {
  /** "request" (client -> relay:service, before NAT) or "reply" (relay:service -> client). */
  readonly hook: ScriptHook;
  /** The flow of the packet. */
  readonly flow: Flow;
  /** The name the script was loaded under. */
  readonly script: string;
}

/**
 * An IPv4 or IPv6 packet with its UDP or TCP header (a client is relayed within its family:
 * an IPv6 client's packets are IPv6 from end to end). Setters write the bytes; krelay fixes
 * the IP and transport checksums of a changed packet after the script returns. Fields of the
 * other transport protocol read as 0 (or false) and throw a TypeError when set; so does `id`
 * of an IPv6 packet, and an address of the other family.
 */
export interface Packet {
  /** 4 or 6: the IP version. */
  readonly family: 4 | 6;
  /** IP header length in bytes (20 without options; 40 for IPv6). */
  readonly headerLength: number;
  /** Type of service / DSCP+ECN byte (IPv6: the traffic class). */
  tos: number;
  /** IP total length in bytes, header included (follows payload changes). */
  readonly totalLength: number;
  /** IP identification (IPv4 only: 0 for IPv6). */
  id: number;
  /** The don't-fragment bit (always true for IPv6: routers never fragment it). */
  readonly dontFragment: boolean;
  /** Time to live (IPv6: the hop limit). */
  ttl: number;
  /** "udp" or "tcp". */
  readonly protocol: Protocol;
  /** Source address: dotted quad, or IPv6 text ("2001:db8:1::10") for IPv6. */
  src: string;
  /** Destination address, as {@link Packet.src}. */
  dst: string;
  srcPort: number;
  dstPort: number;
  /** TCP sequence number (0 for UDP). */
  seq: number;
  /** TCP acknowledgment number (0 for UDP). */
  ackNumber: number;
  /** TCP window (0 for UDP). */
  window: number;
  /** TCP flags as a number (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, ...). */
  flags: number;
  /** True when the TCP flag is set (always false for UDP). */
  hasFlag(flag: TcpFlagName): boolean;
  /** Sets or clears a TCP flag. */
  setFlag(flag: TcpFlagName, on: boolean): void;
  /**
   * The UDP or TCP payload, as a copy: changing the returned bytes changes nothing until they
   * are assigned back. A UDP payload may change size; a TCP payload must keep its size (the
   * sequence numbers of the connection depend on it), else a RangeError is thrown.
   */
  payload: Uint8Array;
  /** True once a setter changed something. */
  readonly changed: boolean;
  /** A copy of the whole datagram as it is now. */
  bytes(): Uint8Array;
}

/** Chooses the packets the script acts on. */
export type MatchFunction = (packet: Packet, ctx: ScriptContext) => boolean;

/** Acts on a (matched) packet; returning nothing accepts it (with any changes made). */
export type TargetFunction = (packet: Packet, ctx: ScriptContext) => Verdict | void;

/**
 * The shape of a script module; krelay checks a script against it before loading (it must
 * export at least one of the two functions).
 */
export interface PacketScript {
  match?: MatchFunction;
  target?: TargetFunction;
}
