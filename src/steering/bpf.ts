/**
 * bpf(2) over FFI, with only what krelay's sk_lookup program needs: maps, loading a program
 * (with the verifier's log in the error), and a link to a network namespace that can swap
 * its program. The objects are file descriptors: closing them (or the process ending, a
 * crash included) releases them, and with the last one the link detaches.
 *
 * An eBPF instruction encoder ({@link Asm}) builds programs without a compiler: krelay's
 * programs are a few dozen instructions, and their constants (address, ports) change with
 * the configuration.
 *
 * @module
 */

import { libc } from "../../ffi/libc.ts";
import { Errno, errno, errnoText } from "../system/errno.ts";

const SYS_BPF: Record<string, bigint> = { x86_64: 321n, aarch64: 280n };

/** bpf(2) commands. */
const Cmd = {
  MapCreate: 0,
  MapUpdate: 2,
  MapDelete: 3,
  ProgLoad: 5,
  LinkCreate: 28,
  LinkUpdate: 29,
};
const ATTR_SIZE = 144;

/** Map, program and attach types krelay uses (linux/bpf.h). */
export const MapType = { SockMap: 15 } as const;
export const ProgType = { SkLookup: 30 } as const;
export const AttachType = { SkLookup: 36 } as const;

/** Helper function ids (linux/bpf.h `FN(...)` order). */
export const Helper = { MapLookupElem: 1, SkRelease: 86, SkAssign: 124 } as const;

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

function elemAttr(map: number, key: Uint8Array, value?: Uint8Array): Uint8Array {
  const attr = new Uint8Array(ATTR_SIZE);
  const v = new DataView(attr.buffer);
  v.setUint32(0, map, true);
  v.setBigUint64(8, address(key), true);
  if (value) v.setBigUint64(16, address(value), true);
  return attr;
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

// Instruction classes, sizes, sources and operations (linux/bpf_common.h, linux/bpf.h).
const LDX_W = 0x61, ST_W = 0x62, MOV64_K = 0xb7, MOV64_X = 0xbf, ADD64_K = 0x07;
const JA = 0x05, JEQ64_K = 0x15, JEQ32_K = 0x16, JNE32_K = 0x56, CALL = 0x85, EXIT = 0x95;
const LD_IMM64 = 0x18, PSEUDO_MAP_FD = 1;

/** Registers: r0 result, r1-r5 arguments, r6-r9 kept across calls, r10 frame pointer. */
export type Reg = 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 | 10;

interface Insn {
  op: number;
  dst: Reg;
  src: number;
  off: number;
  imm: number;
  /** A jump's target, resolved into `off` when the program is built. */
  label?: string;
}

/**
 * An eBPF program under construction: append instructions, mark labels, then
 * {@link Asm.build}. Jumps name their target label; comparisons with a constant are 32-bit.
 */
export class Asm {
  #insns: Insn[] = [];
  #labels = new Map<string, number>();

  #add(op: number, dst: Reg, src: number, off: number, imm: number, label?: string): this {
    this.#insns.push({ op, dst, src, off, imm: imm | 0, label });
    return this;
  }

  /** Marks the next instruction as `name`. */
  label(name: string): this {
    if (this.#labels.has(name)) throw new Error(`label ${name} defined twice`);
    this.#labels.set(name, this.#insns.length);
    return this;
  }

  /** dst = src (64 bits). */
  mov(dst: Reg, src: Reg): this {
    return this.#add(MOV64_X, dst, src, 0, 0);
  }

  /** dst = imm (64 bits, sign-extended). */
  movImm(dst: Reg, imm: number): this {
    return this.#add(MOV64_K, dst, 0, 0, imm);
  }

  /** dst += imm (64 bits). */
  addImm(dst: Reg, imm: number): this {
    return this.#add(ADD64_K, dst, 0, 0, imm);
  }

  /** dst = *(u32 *)(src + off). */
  load32(dst: Reg, src: Reg, off: number): this {
    return this.#add(LDX_W, dst, src, off, 0);
  }

  /** *(u32 *)(dst + off) = imm. */
  store32Imm(dst: Reg, off: number, imm: number): this {
    return this.#add(ST_W, dst, 0, off, imm);
  }

  /** dst = the map with descriptor `fd` (a two-slot instruction). */
  loadMap(dst: Reg, fd: number): this {
    this.#add(LD_IMM64, dst, PSEUDO_MAP_FD, 0, fd);
    return this.#add(0, 0, 0, 0, 0);
  }

  /** Jumps to `label` when the low 32 bits of dst equal imm. */
  jeq32(dst: Reg, imm: number, label: string): this {
    return this.#add(JEQ32_K, dst, 0, 0, imm, label);
  }

  /** Jumps to `label` when the low 32 bits of dst differ from imm. */
  jne32(dst: Reg, imm: number, label: string): this {
    return this.#add(JNE32_K, dst, 0, 0, imm, label);
  }

  /** Jumps to `label` when dst is 0 (64 bits: a null pointer). */
  jeqZero(dst: Reg, label: string): this {
    return this.#add(JEQ64_K, dst, 0, 0, 0, label);
  }

  /** Jumps to `label`. */
  ja(label: string): this {
    return this.#add(JA, 0, 0, 0, 0, label);
  }

  /** Calls a helper (arguments in r1-r5, result in r0). */
  call(helper: number): this {
    return this.#add(CALL, 0, 0, 0, helper);
  }

  /** Returns r0. */
  exit(): this {
    return this.#add(EXIT, 0, 0, 0, 0);
  }

  /** The program's bytes, jumps resolved. */
  build(): Uint8Array {
    const out = new Uint8Array(this.#insns.length * 8);
    const v = new DataView(out.buffer);
    this.#insns.forEach((insn, i) => {
      let off = insn.off;
      if (insn.label !== undefined) {
        const to = this.#labels.get(insn.label);
        if (to === undefined) throw new Error(`jump to undefined label ${insn.label}`);
        off = to - (i + 1);
      }
      v.setUint8(i * 8, insn.op);
      v.setUint8(i * 8 + 1, (insn.src << 4) | insn.dst);
      v.setInt16(i * 8 + 2, off, true);
      v.setInt32(i * 8 + 4, insn.imm, true);
    });
    return out;
  }
}
