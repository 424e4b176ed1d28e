// Test fixture: bytes for the packet tests: bare TCP and UDP segments (no IP header) for the
// IPv6 tests to wrap, their checksum fields left zero, and copies with one byte changed.

/** A copy of `bytes` with the byte at `at` set to `value`. */
export function poked(bytes: Uint8Array, at: number, value: number): Uint8Array {
  const copy = bytes.slice();
  copy[at] = value;
  return copy;
}

/** A UDP segment `sport` -> `dport` carrying `data`, its length field set. */
export function udp(sport: number, dport: number, data: Uint8Array): Uint8Array {
  const b = new Uint8Array(8 + data.length);
  const v = new DataView(b.buffer);
  v.setUint16(0, sport);
  v.setUint16(2, dport);
  v.setUint16(4, b.length);
  b.set(data, 8);
  return b;
}

/** A TCP segment `sport` -> `dport` with PSH+ACK and a 20-byte header, carrying `data`. */
export function tcp(sport: number, dport: number, data: Uint8Array): Uint8Array {
  const b = new Uint8Array(20 + data.length);
  const v = new DataView(b.buffer);
  v.setUint16(0, sport);
  v.setUint16(2, dport);
  b[12] = 5 << 4;
  b[13] = 0x18;
  b.set(data, 20);
  return b;
}
