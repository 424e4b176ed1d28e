/**
 * Test helper: segment counters of a TCP socket from TCP_INFO, to check what went on the wire
 * without a capture.
 *
 * @module
 */

import { libc } from "../../ffi/libc.ts";

const IPPROTO_TCP = 6;
const TCP_INFO = 11;
// struct tcp_info: tcpi_segs_out and tcpi_segs_in.
const SEGS_OUT = 136;
const SEGS_IN = 140;

function info(fd: number): DataView {
  const buf = new Uint8Array(232);
  const len = new Uint32Array([buf.length]);
  if (libc().getsockopt(fd, IPPROTO_TCP, TCP_INFO, buf, len) !== 0) {
    throw new Error(`TCP_INFO of fd ${fd} failed`);
  }
  return new DataView(buf.buffer);
}

/** Segments the socket sent so far (SYN and retransmissions included). */
export function segmentsOut(fd: number): number {
  return info(fd).getUint32(SEGS_OUT, true);
}

/** Segments the socket received so far. */
export function segmentsIn(fd: number): number {
  return info(fd).getUint32(SEGS_IN, true);
}
