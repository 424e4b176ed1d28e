/**
 * The kernel path's way for a client's connection to reach the gateway listener without TPROXY: a
 * BPF sk_lookup program, attached to the network namespace, that the kernel runs when it
 * looks for the listener of a new TCP connection to a local address. For the relay's address
 * and a TCP service port, it picks the gateway listener from a socket map (the kernel then
 * picks among the listener's SO_REUSEPORT group, one per relay thread). The accepted socket's
 * local address is where the client meant to go, as with TPROXY (T1/T2 without rewriting).
 *
 * Why: TPROXY runs for every segment of the client's connection, and because it hands the
 * segment its socket, the kernel skips its early demultiplexing and makes a full route lookup
 * for each. sk_lookup runs only where a listener is looked for (a SYN, a SYN cookie's ACK, a
 * SYN that reuses a TIME_WAIT pair); the connection's later segments find their socket and its
 * cached route as a plain server's do.
 *
 * Everything is a descriptor of this process: the link detaches when it is closed, or when
 * the process ends, a crash included, so nothing is left behind. Where BPF is refused (an
 * older kernel, no CAP_BPF), the steering falls back to TPROXY.
 *
 * @module
 */

import {
  AttachType,
  closeQuietly,
  createLink,
  createMap,
  deleteElem,
  loadProgram,
  MapType,
  openNetns,
  ProgType,
  updateElem,
  updateLink,
} from "./bpf.ts";
import { Asm, Helper } from "./bpf_asm.ts";
import { parseIpv6 } from "../packet/ipv6_address.ts";

/** Listeners of each family the map holds; the kernel's SO_REUSEPORT selection covers others. */
export const MAX_LISTENERS = 8;
/** The map's first key of IPv6 listeners: IPv4 ones at 0..7, IPv6 ones at 8..15. */
export const IPV6_KEYS = MAX_LISTENERS;

/**
 * What the program matches: new TCP connections to this address and these ports, and to the
 * IPv6 address when given (its listeners, IPv6 ones, come with it).
 */
export interface SkLookupTarget {
  /** The relay's IPv4 address; IPv4 connections are left alone without it (IPv6 only). */
  relayIp?: string;
  tcpPorts: readonly number[];
  /** The relay's IPv6 address; IPv6 connections are left alone without it. */
  relayIp6?: string;
  /** The IPv6 gateway listeners' descriptors. */
  listeners6?: readonly number[];
}

/** `struct bpf_sk_lookup` offsets (linux/bpf.h). */
const CTX = { family: 8, protocol: 12, localIp4: 40, localIp6: 44, localPort: 60 } as const;
const AF_INET6 = 10;
const IPPROTO_TCP = 6;
const SK_PASS = 1;

/** An IPv4 address as the context holds it: network-order bytes read as a little-endian u32. */
export function ipWord(ip: string): number {
  const b = ip.split(".").map(Number);
  if (b.length !== 4 || b.some((x) => !Number.isInteger(x) || x < 0 || x > 255)) {
    throw new Error(`not an IPv4 address: ${ip}`);
  }
  return (b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24)) >>> 0;
}

/** An IPv6 address as the context's local_ip6[4] holds it: four words as {@link ipWord}'s. */
export function ip6Words(ip: string): number[] {
  const b = parseIpv6(ip);
  return [0, 4, 8, 12].map((i) =>
    (b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24)) >>> 0
  );
}

/**
 * The program: for TCP to `relayIp`:port with port in `tcpPorts`, assign the first listener
 * the map (descriptor `map`) holds at keys 0..{@link MAX_LISTENERS}-1 that takes it; for TCP
 * to `relayIp6`:port, the first of keys {@link IPV6_KEYS}.. (IPv6 listeners); let everything
 * else go its usual way (SK_PASS without a socket).
 */
export function skLookupProgram(target: SkLookupTarget, map: number): Uint8Array {
  const a = new Asm();
  a.mov(6, 1)
    .load32(2, 6, CTX.protocol).jne32(2, IPPROTO_TCP, "pass");
  const v4 = target.relayIp;
  if (target.relayIp6 !== undefined) {
    // IPv6 only: an IPv4 connection passes; else it goes on below.
    if (v4 === undefined) a.load32(2, 6, CTX.family).jne32(2, AF_INET6, "pass");
    else a.load32(2, 6, CTX.family).jeq32(2, AF_INET6, "v6");
  }
  if (v4 !== undefined) {
    a.load32(2, 6, CTX.localIp4).jne32(2, ipWord(v4), "pass");
    servicePorts(a, target.tcpPorts, "v4key0");
  }
  if (target.relayIp6 !== undefined) {
    a.label("v6");
    ip6Words(target.relayIp6).forEach((word, i) => {
      a.load32(2, 6, CTX.localIp6 + 4 * i).jne32(2, word, "pass");
    });
    servicePorts(a, target.tcpPorts, "v6key0");
    assignFirst(a, map, "v6key", IPV6_KEYS);
  }
  if (v4 !== undefined) assignFirst(a, map, "v4key", 0);
  return a.label("pass").movImm(0, SK_PASS).exit().build();
}

/** Jumps to `found` when the local port is one of `ports`, else to "pass". */
function servicePorts(a: Asm, ports: readonly number[], found: string): void {
  a.load32(2, 6, CTX.localPort);
  for (const port of ports) a.jeq32(2, port, found);
  a.ja("pass");
}

/** Labels `<prefix>0..7`: assign the first listener of keys first..first+7 that takes it. */
function assignFirst(a: Asm, map: number, prefix: string, first: number): void {
  for (let k = 0; k < MAX_LISTENERS; k++) {
    const next = k + 1 < MAX_LISTENERS ? `${prefix}${k + 1}` : "pass";
    a.label(`${prefix}${k}`)
      .store32Imm(10, -4, first + k).mov(2, 10).addImm(2, -4).loadMap(1, map)
      .call(Helper.MapLookupElem)
      .jeqZero(0, next)
      // r7: the socket, a reference to release; r8: what assigning it gave (0: done).
      .mov(7, 0).mov(1, 6).mov(2, 7).movImm(3, 0).call(Helper.SkAssign)
      .mov(8, 0).mov(1, 7).call(Helper.SkRelease)
      .jeqZero(8, "pass")
      .ja(next);
  }
}

/** Puts each family's listeners at its keys of the socket map `map`, emptying the others. */
function fillMap(map: number, listeners: readonly number[], listeners6: readonly number[]): void {
  for (const [first, fds] of [[0, listeners], [IPV6_KEYS, listeners6]] as const) {
    const some = fds.slice(0, MAX_LISTENERS);
    some.forEach((fd, i) => updateElem(map, first + i, fd));
    for (let i = some.length; i < MAX_LISTENERS; i++) deleteElem(map, first + i);
  }
}

/** The attached program, its socket map and its link; {@link SkLookup.close} detaches. */
export class SkLookup {
  private constructor(private map: number, private link: number) {}

  /**
   * Attaches a program for `target` to this process's network namespace (or the one at
   * `netns`), handing connections to `listeners` (descriptors). Throws, leaving nothing, when
   * the kernel refuses any step.
   */
  static attach(
    target: SkLookupTarget,
    listeners: readonly number[],
    netns = "/proc/self/ns/net",
  ): SkLookup {
    let map = -1, prog = -1, ns = -1, link = -1;
    try {
      map = createMap(MapType.SockMap, 4, 4, 2 * MAX_LISTENERS);
      prog = loadProgram(ProgType.SkLookup, AttachType.SkLookup, skLookupProgram(target, map));
      fillMap(map, listeners, target.listeners6 ?? []);
      ns = openNetns(netns);
      link = createLink(prog, ns, AttachType.SkLookup);
      return new SkLookup(map, link);
    } catch (e) {
      closeQuietly(link);
      closeQuietly(map);
      throw e;
    } finally {
      // The link holds the program and the namespace; the program holds the map.
      closeQuietly(prog);
      closeQuietly(ns);
    }
  }

  /** Puts the listeners in the map (after a new listen), and drops keys beyond them. */
  setListeners(listeners: readonly number[], listeners6: readonly number[] = []): void {
    fillMap(this.map, listeners, listeners6);
  }

  /** Follows a new address or new ports at once: the link swaps to a new program. */
  update(target: SkLookupTarget, listeners: readonly number[]): void {
    this.setListeners(listeners, target.listeners6 ?? []);
    const prog = loadProgram(
      ProgType.SkLookup,
      AttachType.SkLookup,
      skLookupProgram(target, this.map),
    );
    try {
      updateLink(this.link, prog);
    } finally {
      closeQuietly(prog);
    }
  }

  /** Detaches the program and frees the map. Idempotent. */
  close(): void {
    closeQuietly(this.link);
    closeQuietly(this.map);
    this.link = this.map = -1;
  }
}
