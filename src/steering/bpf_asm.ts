/**
 * An eBPF instruction encoder ({@link Asm}): krelay builds its programs (sk_lookup.ts,
 * flowtable_programs.ts) without a compiler. They are a few dozen to a few hundred
 * instructions, and their constants (addresses, ports, maps, timeouts) change with the
 * configuration; bpf.ts loads them.
 *
 * @example
 * ```ts ignore
 * const code = new Asm().movImm(0, 0).exit().build(); // return 0
 * const prog = loadProgram(ProgType.SchedCls, AttachType.TcxIngress, code);
 * ```
 *
 * @module
 */

/** Helper function ids (linux/bpf.h `FN(...)` order). */
export const Helper = {
  MapLookupElem: 1,
  MapUpdateElem: 2,
  L3CsumReplace: 10,
  L4CsumReplace: 11,
  FibLookup: 69,
  RedirectNeigh: 152,
  SkRelease: 86,
  SkAssign: 124,
  KtimeGetCoarseNs: 160,
} as const;

// Instruction classes, sizes, sources and operations (linux/bpf_common.h, linux/bpf.h).
const LDX = 0x61, ST = 0x62, STX = 0x63; // BPF_MEM mode, 32-bit size: add a SIZE below
const SIZE: Record<8 | 16 | 32 | 64, number> = { 8: 0x10, 16: 0x08, 32: 0x00, 64: 0x18 };
const ALU64 = 0x07, JMP = 0x05, JMP32 = 0x06, SRC_REG = 0x08;
const Op = { add: 0x00, sub: 0x10, or: 0x40, and: 0x50, lsh: 0x60, rsh: 0x70, mov: 0xb0 };
const Jump = { jeq: 0x10, jgt: 0x20, jge: 0x30, jne: 0x50, jlt: 0xa0, jle: 0xb0 };
const JA = 0x05, CALL = 0x85, EXIT = 0x95;
const LD_IMM64 = 0x18, PSEUDO_MAP_FD = 1;

/** Access sizes in bits. */
export type Size = 8 | 16 | 32 | 64;

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
 * {@link Asm.build}. Jumps name their target label; they compare 64 bits, unsigned, except
 * the `32` ones (a constant with bit 31 set compares as intended there: no sign extension).
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

  #alu(op: number, dst: Reg, src: Reg): this {
    return this.#add(ALU64 | SRC_REG | op, dst, src, 0, 0);
  }

  #aluImm(op: number, dst: Reg, imm: number): this {
    return this.#add(ALU64 | op, dst, 0, 0, imm);
  }

  /** dst = src (64 bits). */
  mov(dst: Reg, src: Reg): this {
    return this.#alu(Op.mov, dst, src);
  }

  /** dst = imm (64 bits, sign-extended: for constants of 2^31 and up, {@link Asm.ldImm64}). */
  movImm(dst: Reg, imm: number): this {
    return this.#aluImm(Op.mov, dst, imm);
  }

  /** dst = a 64-bit constant (a two-slot instruction). */
  ldImm64(dst: Reg, value: bigint | number): this {
    const v = BigInt.asUintN(64, BigInt(value));
    this.#add(LD_IMM64, dst, 0, 0, Number(v & 0xffffffffn));
    return this.#add(0, 0, 0, 0, Number(v >> 32n));
  }

  /** dst += src (64 bits). */
  add(dst: Reg, src: Reg): this {
    return this.#alu(Op.add, dst, src);
  }

  /** dst += imm (64 bits). */
  addImm(dst: Reg, imm: number): this {
    return this.#aluImm(Op.add, dst, imm);
  }

  /** dst -= src (64 bits). */
  sub(dst: Reg, src: Reg): this {
    return this.#alu(Op.sub, dst, src);
  }

  /** dst -= imm (64 bits). */
  subImm(dst: Reg, imm: number): this {
    return this.#aluImm(Op.sub, dst, imm);
  }

  /** dst &= src (64 bits). */
  and(dst: Reg, src: Reg): this {
    return this.#alu(Op.and, dst, src);
  }

  /** dst &= imm (64 bits, imm sign-extended). */
  andImm(dst: Reg, imm: number): this {
    return this.#aluImm(Op.and, dst, imm);
  }

  /** dst |= src (64 bits). */
  or(dst: Reg, src: Reg): this {
    return this.#alu(Op.or, dst, src);
  }

  /** dst |= imm (64 bits, imm sign-extended). */
  orImm(dst: Reg, imm: number): this {
    return this.#aluImm(Op.or, dst, imm);
  }

  /** dst <<= src (64 bits). */
  lsh(dst: Reg, src: Reg): this {
    return this.#alu(Op.lsh, dst, src);
  }

  /** dst <<= imm (64 bits). */
  lshImm(dst: Reg, imm: number): this {
    return this.#aluImm(Op.lsh, dst, imm);
  }

  /** dst >>= src (64 bits, logical). */
  rsh(dst: Reg, src: Reg): this {
    return this.#alu(Op.rsh, dst, src);
  }

  /** dst >>= imm (64 bits, logical). */
  rshImm(dst: Reg, imm: number): this {
    return this.#aluImm(Op.rsh, dst, imm);
  }

  /** dst = *(u<size> *)(src + off), zero-extended. */
  load(size: Size, dst: Reg, src: Reg, off: number): this {
    return this.#add(LDX | SIZE[size], dst, src, off, 0);
  }

  /** dst = *(u32 *)(src + off). */
  load32(dst: Reg, src: Reg, off: number): this {
    return this.load(32, dst, src, off);
  }

  /** *(u<size> *)(dst + off) = src (its low bits). */
  store(size: Size, dst: Reg, off: number, src: Reg): this {
    return this.#add(STX | SIZE[size], dst, src, off, 0);
  }

  /** *(u<size> *)(dst + off) = imm (for 64 bits, sign-extended). */
  storeImm(size: Size, dst: Reg, off: number, imm: number): this {
    return this.#add(ST | SIZE[size], dst, 0, off, imm);
  }

  /** *(u32 *)(dst + off) = imm. */
  store32Imm(dst: Reg, off: number, imm: number): this {
    return this.storeImm(32, dst, off, imm);
  }

  /** dst = the map with descriptor `fd` (a two-slot instruction). */
  loadMap(dst: Reg, fd: number): this {
    this.#add(LD_IMM64, dst, PSEUDO_MAP_FD, 0, fd);
    return this.#add(0, 0, 0, 0, 0);
  }

  #jump(op: number, dst: Reg, src: Reg, label: string): this {
    return this.#add(JMP | SRC_REG | op, dst, src, 0, 0, label);
  }

  #jumpImm(op: number, dst: Reg, imm: number, label: string): this {
    return this.#add(JMP | op, dst, 0, 0, imm, label);
  }

  /** Jumps to `label` when dst == src (64 bits). */
  jeq(dst: Reg, src: Reg, label: string): this {
    return this.#jump(Jump.jeq, dst, src, label);
  }

  /** Jumps to `label` when dst == imm (64 bits, imm sign-extended). */
  jeqImm(dst: Reg, imm: number, label: string): this {
    return this.#jumpImm(Jump.jeq, dst, imm, label);
  }

  /** Jumps to `label` when dst != src (64 bits). */
  jne(dst: Reg, src: Reg, label: string): this {
    return this.#jump(Jump.jne, dst, src, label);
  }

  /** Jumps to `label` when dst != imm (64 bits, imm sign-extended). */
  jneImm(dst: Reg, imm: number, label: string): this {
    return this.#jumpImm(Jump.jne, dst, imm, label);
  }

  /** Jumps to `label` when dst > src (64 bits, unsigned). */
  jgt(dst: Reg, src: Reg, label: string): this {
    return this.#jump(Jump.jgt, dst, src, label);
  }

  /** Jumps to `label` when dst > imm (64 bits, unsigned, imm sign-extended). */
  jgtImm(dst: Reg, imm: number, label: string): this {
    return this.#jumpImm(Jump.jgt, dst, imm, label);
  }

  /** Jumps to `label` when dst >= src (64 bits, unsigned). */
  jge(dst: Reg, src: Reg, label: string): this {
    return this.#jump(Jump.jge, dst, src, label);
  }

  /** Jumps to `label` when dst >= imm (64 bits, unsigned, imm sign-extended). */
  jgeImm(dst: Reg, imm: number, label: string): this {
    return this.#jumpImm(Jump.jge, dst, imm, label);
  }

  /** Jumps to `label` when dst < src (64 bits, unsigned). */
  jlt(dst: Reg, src: Reg, label: string): this {
    return this.#jump(Jump.jlt, dst, src, label);
  }

  /** Jumps to `label` when dst < imm (64 bits, unsigned, imm sign-extended). */
  jltImm(dst: Reg, imm: number, label: string): this {
    return this.#jumpImm(Jump.jlt, dst, imm, label);
  }

  /** Jumps to `label` when dst <= src (64 bits, unsigned). */
  jle(dst: Reg, src: Reg, label: string): this {
    return this.#jump(Jump.jle, dst, src, label);
  }

  /** Jumps to `label` when dst <= imm (64 bits, unsigned, imm sign-extended). */
  jleImm(dst: Reg, imm: number, label: string): this {
    return this.#jumpImm(Jump.jle, dst, imm, label);
  }

  /** Jumps to `label` when the low 32 bits of dst equal imm. */
  jeq32(dst: Reg, imm: number, label: string): this {
    return this.#add(JMP32 | Jump.jeq, dst, 0, 0, imm, label);
  }

  /** Jumps to `label` when the low 32 bits of dst differ from imm. */
  jne32(dst: Reg, imm: number, label: string): this {
    return this.#add(JMP32 | Jump.jne, dst, 0, 0, imm, label);
  }

  /** Jumps to `label` when dst is 0 (64 bits: a null pointer). */
  jeqZero(dst: Reg, label: string): this {
    return this.jeqImm(dst, 0, label);
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
