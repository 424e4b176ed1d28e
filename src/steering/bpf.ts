/**
 * bpf(2) over FFI, with only what krelay's programs need: maps and their elements, loading a
 * program (with the verifier's log in the error), running it on a test packet, and links (to a
 * network namespace, to an interface's tc hook) that can swap their program. The objects are
 * file descriptors: closing them (or the process ending, a crash included) releases them, and
 * with the last one the link detaches.
 *
 * The programs themselves are built by bpf_asm.ts.
 *
 * @module
 */

import { libc } from "../../ffi/libc.ts";
import { Errno, errno, errnoText } from "../system/errno.ts";

const SYS_BPF: Record<string, bigint> = { x86_64: 321n, aarch64: 280n };

/** bpf(2) commands. */
const Cmd = {
  MapCreate: 0,
  MapLookup: 1,
  MapUpdate: 2,
  MapDelete: 3,
  MapNextKey: 4,
  ProgLoad: 5,
  ProgTestRun: 10,
  ProgQuery: 16,
  LinkCreate: 28,
  LinkUpdate: 29,
};
/** Larger than every attr krelay passes (the test run's ends at 64): the rest stays 0. */
const ATTR_SIZE = 144;

/** Map, program and attach types krelay uses (linux/bpf.h). */
export const MapType = { Hash: 1, PercpuArray: 6, LruHash: 9, SockMap: 15 } as const;
export const ProgType = { SchedCls: 3, SkLookup: 30 } as const;
export const AttachType = { SkLookup: 36, TcxIngress: 46, TcxEgress: 47 } as const;

/** Flags of a map update: any, only a new key, only an existing key. */
export const UpdateFlag = { Any: 0, NoExist: 1, Exist: 2 } as const;

function bpf(cmd: number, attr: Uint8Array, what: string): number {
  const nr = SYS_BPF[Deno.build.arch];
  if (nr === undefined) throw new Error(`${what}: bpf(2) is not known on ${Deno.build.arch}`);
  const r = Number(libc().syscall(nr, BigInt(cmd), attr, BigInt(ATTR_SIZE)));
  if (r < 0) {
    const e = errno();
    throw Object.assign(new Error(`${what}: ${errnoText(e)}`), { errno: e });
  }
  return r;
}

function address(buf: Uint8Array): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buf as Uint8Array<ArrayBuffer>)));
}

/** Creates a map; returns its descriptor. */
export function createMap(type: number, keySize: number, valueSize: number, max: number): number {
  const attr = new Uint8Array(ATTR_SIZE);
  const v = new DataView(attr.buffer);
  v.setUint32(0, type, true);
  v.setUint32(4, keySize, true);
  v.setUint32(8, valueSize, true);
  v.setUint32(12, max, true);
  return bpf(Cmd.MapCreate, attr, "bpf map");
}

function elemAttr(
  map: number,
  key: Uint8Array | null,
  value?: Uint8Array,
  flags = 0,
): Uint8Array {
  const attr = new Uint8Array(ATTR_SIZE);
  const v = new DataView(attr.buffer);
  v.setUint32(0, map, true);
  if (key) v.setBigUint64(8, address(key), true);
  if (value) v.setBigUint64(16, address(value), true);
  v.setBigUint64(24, BigInt(flags), true);
  return attr;
}

/** Runs a command that fails with ENOENT when the key is not there: false then. */
function unlessMissing(cmd: number, attr: Uint8Array, what: string): boolean {
  try {
    bpf(cmd, attr, what);
    return true;
  } catch (e) {
    if ((e as { errno?: number }).errno === Errno.ENOENT) return false;
    throw e;
  }
}

function u32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n, true);
  return b;
}

/** Sets a 32-bit key to a 32-bit value (for a socket map, the socket's descriptor). */
export function updateElem(map: number, key: number, value: number): void {
  const k = u32(key), val = u32(value);
  bpf(Cmd.MapUpdate, elemAttr(map, k, val), `bpf map update of key ${key}`);
}

/** Deletes a 32-bit key; false when it was not there (a socket map says EINVAL then). */
export function deleteElem(map: number, key: number): boolean {
  const k = u32(key);
  try {
    bpf(Cmd.MapDelete, elemAttr(map, k), `bpf map delete of key ${key}`);
    return true;
  } catch (e) {
    const code = (e as { errno?: number }).errno;
    if (code === Errno.ENOENT || code === Errno.EINVAL) return false;
    throw e;
  }
}

/** Sets `key` to `value` (flags: {@link UpdateFlag}); the sizes are the map's. */
export function mapUpdate(map: number, key: Uint8Array, value: Uint8Array, flags = 0): void {
  bpf(Cmd.MapUpdate, elemAttr(map, key, value, flags), "bpf map update");
}

/**
 * Copies `key`'s value into `value`; false when the key is not there. A per-CPU map's value
 * is one slot per possible CPU, each rounded up to 8 bytes.
 */
export function mapLookup(map: number, key: Uint8Array, value: Uint8Array): boolean {
  return unlessMissing(Cmd.MapLookup, elemAttr(map, key, value), "bpf map lookup");
}

/** Deletes `key`; false when it was not there. */
export function mapDelete(map: number, key: Uint8Array): boolean {
  return unlessMissing(Cmd.MapDelete, elemAttr(map, key), "bpf map delete");
}

/**
 * Writes the key after `key` (the first with null) into `next`; false after the last. Keys
 * deleted meanwhile may restart the walk: the kernel's order is the hash table's.
 */
export function mapNextKey(map: number, key: Uint8Array | null, next: Uint8Array): boolean {
  return unlessMissing(Cmd.MapNextKey, elemAttr(map, key, next), "bpf map next key");
}

/** What a program did with a test packet: its return value, the packet and context after. */
export interface TestRun {
  retval: number;
  data: Uint8Array;
  ctx?: Uint8Array;
}

/** Room for the packet to grow on its way through the program (headers pushed). */
const TEST_RUN_HEADROOM = 256;

/**
 * Runs a program once on `data` (for tc: an Ethernet frame) without attaching it, with
 * `ctx` as its context (for tc: a struct __sk_buff image, only the kernel's settable fields
 * non-zero). Maps and helpers are the real ones.
 */
export function progTestRun(prog: number, data: Uint8Array, ctx?: Uint8Array): TestRun {
  const out = new Uint8Array(data.length + TEST_RUN_HEADROOM);
  const ctxOut = ctx ? new Uint8Array(ctx.length) : undefined;
  const attr = new Uint8Array(ATTR_SIZE);
  const v = new DataView(attr.buffer);
  v.setUint32(0, prog, true);
  v.setUint32(8, data.length, true);
  v.setUint32(12, out.length, true);
  v.setBigUint64(16, address(data), true);
  v.setBigUint64(24, address(out), true);
  v.setUint32(32, 1, true); // repeat
  if (ctx && ctxOut) {
    v.setUint32(40, ctx.length, true);
    v.setUint32(44, ctxOut.length, true);
    v.setBigUint64(48, address(ctx), true);
    v.setBigUint64(56, address(ctxOut), true);
  }
  bpf(Cmd.ProgTestRun, attr, "bpf program test run");
  const retval = v.getUint32(4, true);
  const size = Math.min(v.getUint32(12, true), out.length);
  return { retval, data: out.slice(0, size), ...(ctxOut ? { ctx: ctxOut } : {}) };
}

/** How many programs are attached to an interface's hook (a tcx attach type). */
export function progQuery(ifindex: number, attachType: number): number {
  const attr = new Uint8Array(ATTR_SIZE);
  const v = new DataView(attr.buffer);
  v.setUint32(0, ifindex, true);
  v.setUint32(4, attachType, true);
  bpf(Cmd.ProgQuery, attr, `bpf program query of interface ${ifindex}`);
  return v.getUint32(24, true);
}

const LICENSE = new TextEncoder().encode("GPL\0");
const LOG_SIZE = 64 * 1024;

/** Loads a program; the error carries the verifier's log when it refuses it. */
export function loadProgram(type: number, attachType: number, insns: Uint8Array): number {
  const log = new Uint8Array(LOG_SIZE);
  const attr = new Uint8Array(ATTR_SIZE);
  const v = new DataView(attr.buffer);
  v.setUint32(0, type, true);
  v.setUint32(4, insns.length / 8, true);
  v.setBigUint64(8, address(insns), true);
  v.setBigUint64(16, address(LICENSE), true);
  v.setUint32(24, 1, true); // log_level: the log only when the verifier refuses
  v.setUint32(28, LOG_SIZE, true);
  v.setBigUint64(32, address(log), true);
  v.setUint32(68, attachType, true);
  try {
    return bpf(Cmd.ProgLoad, attr, "bpf program load");
  } catch (e) {
    const end = log.indexOf(0);
    const text = new TextDecoder().decode(log.subarray(0, end < 0 ? LOG_SIZE : end)).trim();
    if (text) (e as Error).message += `; verifier: ${text.split("\n").slice(-3).join(" | ")}`;
    throw e;
  }
}

/** Attaches a program to a target (for sk_lookup: a network namespace's descriptor). */
export function createLink(prog: number, target: number, attachType: number): number {
  const attr = new Uint8Array(ATTR_SIZE);
  const v = new DataView(attr.buffer);
  v.setUint32(0, prog, true);
  v.setUint32(4, target, true);
  v.setUint32(8, attachType, true);
  return bpf(Cmd.LinkCreate, attr, "bpf link");
}

/** Swaps a link's program at once: no moment without one. */
export function updateLink(link: number, prog: number): void {
  const attr = new Uint8Array(ATTR_SIZE);
  const v = new DataView(attr.buffer);
  v.setUint32(0, link, true);
  v.setUint32(4, prog, true);
  bpf(Cmd.LinkUpdate, attr, "bpf link update");
}

/** The current network namespace's descriptor (close it when done). */
export function openNetns(path = "/proc/self/ns/net"): number {
  const fd = libc().open(new TextEncoder().encode(`${path}\0`), 0x80000); // O_RDONLY|O_CLOEXEC
  if (fd < 0) throw new Error(`open ${path}: ${errnoText(errno())}`);
  return fd;
}

/** Closes a descriptor, ignoring errors (release paths). */
export function closeQuietly(fd: number): void {
  if (fd >= 0) libc().close(fd);
}
