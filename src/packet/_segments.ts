// Test fixture: bytes for the packet tests: bare TCP and UDP segments (no IP header) for the
// IPv6 tests to wrap, their checksum fields left zero, and copies with one byte changed.

/** A copy of `bytes` with the byte at `at` set to `value`. */
export function poked(bytes: Uint8Array, at: number, value: number): Uint8Array {
  const copy = bytes.slice();
  copy[at] = value;
  return copy;
}

/** A segment with a `header`-byte header holding the ports, then `data`. */
function segment(header: number, sport: number, dport: number, data: Uint8Array): Uint8Array {
  const b = new Uint8Array(header + data.length);
  const v = new DataView(b.buffer);
  v.setUint16(0, sport);
  v.setUint16(2, dport);
  b.set(data, header);
  return b;
}

/** A UDP segment `sport` -> `dport` carrying `data`, its length field set. */
export function udp(sport: number, dport: number, data: Uint8Array): Uint8Array {
  const b = segment(8, sport, dport, data);
  new DataView(b.buffer).setUint16(4, b.length);
  return b;
}

/** A TCP segment `sport` -> `dport` with PSH+ACK and a 20-byte header, carrying `data`. */
export function tcp(sport: number, dport: number, data: Uint8Array): Uint8Array {
  const b = segment(20, sport, dport, data);
  b[12] = 5 << 4;
  b[13] = 0x18;
  return b;
}
