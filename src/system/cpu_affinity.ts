/**
 * Which CPUs a thread may run on (sched_getaffinity/sched_setaffinity of the calling thread):
 * for relay threads that each keep to one CPU.
 *
 * @example Pinning the calling thread to the first CPU the process may use
 * ```ts ignore
 * pinThisThread(allowedCpus()[0]);
 * ```
 *
 * @module
 */

import { libc } from "../../ffi/libc.ts";
import { errno, errnoText } from "./errno.ts";

// A cpu_set_t of 1024 CPUs, glibc's default size; the kernel refuses a mask smaller than its
// own CPU count (EINVAL), and 1024 covers the kernels Debian builds (NR_CPUS 8192 would too
// with a larger mask, but no machine krelay runs on has more than 1024 CPUs).
const MASK_BYTES = 128;

/** The CPU numbers set in a cpu_set_t mask, in increasing order. */
export function cpusOfMask(mask: Uint8Array): number[] {
  const cpus: number[] = [];
  for (let byte = 0; byte < mask.length; byte++) {
    for (let bit = 0; bit < 8; bit++) {
      if (mask[byte] & (1 << bit)) cpus.push(byte * 8 + bit);
    }
  }
  return cpus;
}

/** A cpu_set_t mask with one CPU set. */
export function maskOfCpu(cpu: number): Uint8Array<ArrayBuffer> {
  if (!Number.isInteger(cpu) || cpu < 0 || cpu >= MASK_BYTES * 8) {
    throw new RangeError(`no such CPU: ${cpu}`);
  }
  const mask = new Uint8Array(MASK_BYTES);
  mask[cpu >> 3] = 1 << (cpu & 7);
  return mask;
}

/**
 * The CPU the `index`-th of several threads keeps to: the allowed CPUs in turn, so that N
 * threads on N CPUs get one each and more threads than CPUs share them evenly.
 */
export function cpuForThread(cpus: readonly number[], index: number): number {
  if (cpus.length === 0) throw new RangeError("no CPU to choose from");
  return cpus[index % cpus.length];
}

/** The CPUs the calling thread may run on (its affinity, which a new thread inherits). */
export function allowedCpus(): number[] {
  const mask = new Uint8Array(MASK_BYTES);
  if (libc().sched_getaffinity(0, BigInt(MASK_BYTES), mask) < 0) {
    throw new Error(`sched_getaffinity: ${errnoText(errno())}`);
  }
  return cpusOfMask(mask);
}

/** Keeps the calling thread to `cpu`; throws with the reason when the kernel refuses. */
export function pinThisThread(cpu: number): void {
  if (libc().sched_setaffinity(0, BigInt(MASK_BYTES), maskOfCpu(cpu)) < 0) {
    throw new Error(`cannot keep the thread to CPU ${cpu}: ${errnoText(errno())}`);
  }
}
