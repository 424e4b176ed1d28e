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
  Asm,
  AttachType,
  closeQuietly,
  createLink,
  createMap,
  deleteElem,
  Helper,
  loadProgram,
  MapType,
  openNetns,
  ProgType,
  updateElem,
  updateLink,
} from "./bpf.ts";

/** Listeners the map holds; the kernel's SO_REUSEPORT selection covers any others. */
export const MAX_LISTENERS = 8;

/** What the program matches: new TCP connections to this address and these ports. */
export interface SkLookupTarget {
  relayIp: string;
  tcpPorts: readonly number[];
}

/** `struct bpf_sk_lookup` offsets (linux/bpf.h). */
const CTX = { protocol: 12, localIp4: 40, localPort: 60 } as const;
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

/**
 * The program: for TCP to `relayIp`:port with port in `tcpPorts`, assign the first listener
 * the map (descriptor `map`) holds at keys 0..{@link MAX_LISTENERS}-1 that takes it; let
 * everything else go its usual way (SK_PASS without a socket).
 */
export function skLookupProgram(target: SkLookupTarget, map: number): Uint8Array {
  const a = new Asm();
  a.mov(6, 1)
    .load32(2, 6, CTX.protocol).jne32(2, IPPROTO_TCP, "pass")
    .load32(2, 6, CTX.localIp4).jne32(2, ipWord(target.relayIp), "pass")
    .load32(2, 6, CTX.localPort);
  for (const port of target.tcpPorts) a.jeq32(2, port, "key0");
  a.ja("pass");
  for (let k = 0; k < MAX_LISTENERS; k++) {
    const next = k + 1 < MAX_LISTENERS ? `key${k + 1}` : "pass";
    a.label(`key${k}`)
      .store32Imm(10, -4, k).mov(2, 10).addImm(2, -4).loadMap(1, map)
      .call(Helper.MapLookupElem)
      .jeqZero(0, next)
      // r7: the socket, a reference to release; r8: what assigning it gave (0: done).
      .mov(7, 0).mov(1, 6).mov(2, 7).movImm(3, 0).call(Helper.SkAssign)
      .mov(8, 0).mov(1, 7).call(Helper.SkRelease)
      .jeqZero(8, "pass")
      .ja(next);
  }
  return a.label("pass").movImm(0, SK_PASS).exit().build();
}

/** Puts `listeners` at keys 0.. of the socket map `map`, and empties the keys after them. */
function fillMap(map: number, listeners: readonly number[]): void {
  const fds = listeners.slice(0, MAX_LISTENERS);
  fds.forEach((fd, key) => updateElem(map, key, fd));
  for (let key = fds.length; key < MAX_LISTENERS; key++) deleteElem(map, key);
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
      map = createMap(MapType.SockMap, 4, 4, MAX_LISTENERS);
      prog = loadProgram(ProgType.SkLookup, AttachType.SkLookup, skLookupProgram(target, map));
      fillMap(map, listeners);
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

  /** Puts `listeners` in the map (after a new listen), and drops keys beyond them. */
  setListeners(listeners: readonly number[]): void {
    fillMap(this.map, listeners);
  }

  /** Follows a new address or new ports at once: the link swaps to a new program. */
  update(target: SkLookupTarget, listeners: readonly number[]): void {
    this.setListeners(listeners);
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
