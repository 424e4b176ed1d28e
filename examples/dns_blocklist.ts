/**
 * Example packet script: a DNS blocklist. Queries for a listed name (or any name under it) are
 * answered NXDOMAIN by the relay itself: the query is turned around into its own answer (source
 * and destination swapped, the QR bit and RCODE 3 set, the answer cut after the question), so
 * the real server never sees it. With `action: "drop"` they are dropped instead, and the client
 * times out.
 *
 * Turning a packet around makes the relay forward a packet with its own address as the source
 * back out of the interface it came in on. With `rp_filter=0` (as in krelay's lab) Linux lets
 * it through; a relay that takes it for a spoofed ("martian") source needs
 * `sysctl -w net.ipv4.conf.<client side>.accept_local=1`. Or use `action: "drop"`.
 *
 * ```sh
 * krelay run --real-ip 203.0.113.10 --script examples/dns_blocklist.ts --on udp:53
 * ```
 *
 * To block other names, write a script of your own that uses {@link blocklist}:
 *
 * ```ts ignore
 * import { blocklist } from "./dns_blocklist.ts";
 * export const { match, target } = blocklist(["ads.example", "tracker.example"], "drop");
 * ```
 * @module
 */

import type {
  MatchFunction,
  Packet,
  ScriptContext,
  TargetFunction,
  Verdict,
} from "../src/script/api.ts";

/** The names blocked by this script as it is. */
export const BLOCKED = ["ads.example", "tracker.example", "blocked.lab.example"];

/** What to do with a blocked query. */
export type BlockAction = "nxdomain" | "drop";

/** The first question's name of a DNS query, lower case, without the final dot; or undefined. */
export function queryName(message: Uint8Array): string | undefined {
  // Header: id, flags, qdcount, ancount, nscount, arcount. A query has QR 0 and a question.
  if (message.length < 12 || (message[2] & 0x80) !== 0) return undefined;
  if (((message[4] << 8) | message[5]) === 0) return undefined;
  const labels: string[] = [];
  let at = 12;
  for (let i = 0; i < 128; i++) {
    if (at >= message.length) return undefined;
    const length = message[at];
    if (length === 0) return labels.join(".").toLowerCase();
    // Compression pointers never appear in a query's first name; anything else is not DNS.
    if (length > 63 || at + 1 + length > message.length) return undefined;
    labels.push(String.fromCharCode(...message.subarray(at + 1, at + 1 + length)));
    at += 1 + length;
  }
  return undefined;
}

/** Where the first question ends (after its type and class), or undefined. */
function questionEnd(message: Uint8Array): number | undefined {
  let at = 12;
  while (at < message.length && message[at] !== 0) at += 1 + message[at];
  at += 5;
  return at <= message.length ? at : undefined;
}

/** True when `name` is `blocked` or a name under it. */
function covers(blocked: ReadonlySet<string>, name: string): boolean {
  for (let n = name; n !== ""; n = n.slice(n.indexOf(".") + 1 || n.length)) {
    if (blocked.has(n)) return true;
  }
  return false;
}

/** Turns a DNS query around into its own NXDOMAIN answer, back to the client. */
export function answerNxdomain(packet: Packet): void {
  const query = packet.payload;
  const end = questionEnd(query) ?? query.length;
  const answer = query.slice(0, end);
  answer[2] = 0x80 | (query[2] & 0x79); // QR, the opcode and RD kept
  answer[3] = 0x80 | 3; // RA, RCODE 3: NXDOMAIN
  answer.fill(0, 6, 12); // no answer, authority or additional records
  const [src, dst, srcPort, dstPort] = [packet.src, packet.dst, packet.srcPort, packet.dstPort];
  packet.src = dst;
  packet.dst = src;
  packet.srcPort = dstPort;
  packet.dstPort = srcPort;
  packet.ttl = 64;
  packet.payload = answer;
}

/** A blocklist script for `names`. */
export function blocklist(
  names: readonly string[],
  action: BlockAction = "nxdomain",
): { match: MatchFunction; target: TargetFunction } {
  const blocked = new Set(names.map((n) => n.toLowerCase().replace(/\.$/, "")));
  let count = 0;
  return {
    match(packet: Packet, ctx: ScriptContext): boolean {
      if (ctx.hook !== "request" || packet.protocol !== "udp") return false;
      const name = queryName(packet.payload);
      return name !== undefined && covers(blocked, name);
    },
    target(packet: Packet, ctx: ScriptContext): Verdict {
      count++;
      const name = queryName(packet.payload);
      console.log(`blocked ${name} for ${ctx.flow.client.address} (${action}, #${count})`);
      if (action === "drop") return "drop";
      answerNxdomain(packet);
      return "accept";
    },
  };
}

/** This script, blocking {@link BLOCKED} with NXDOMAIN answers. */
export const { match, target } = blocklist(BLOCKED);
