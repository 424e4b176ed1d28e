/**
 * The NAT table interface of krelay.ko (kmod/krelay_abi.h) in TypeScript: the sockopt numbers
 * and the byte layout of its structs, encoded and decoded without FFI. The caller passes the
 * bytes to setsockopt/getsockopt(fd, SOL_IP, option, buf, len) on any AF_INET socket.
 *
 * Byte order, as in the header: addresses and ports in network order (big-endian), every other
 * field in host order (little-endian on x86_64, the only platform the module is built for;
 * {@link HOST_LITTLE_ENDIAN} says what this machine is).
 *
 * @example
 * ```ts
 * import { decodeNatTable, encodeNatEntry, encodeTableRequest, KRELAY_SO } from "./abi.ts";
 * const add = encodeNatEntry({
 *   protocol: "tcp", state: "new",
 *   clientAddr: "198.51.100.10", clientPort: 40000, relayAddr: "198.51.100.1", servicePort: 80,
 *   serverAddr: "203.0.113.10", serverPort: 80, relayPort: 20001,
 * });
 * // setsockopt(fd, SOL_IP, KRELAY_SO.SET_ADD, add, add.length)
 * const req = encodeTableRequest(1024);
 * // getsockopt(fd, SOL_IP, KRELAY_SO.GET_TABLE, req, &len); then:
 * const { entries } = decodeNatTable(req);
 * console.log(KRELAY_SO.SET_ADD, entries.length);
 * ```
 * @module
 */

/** KRELAY_ABI_VERSION: the first field of every struct. */
export const KRELAY_ABI_VERSION = 1;

/** The socket level of every call: SOL_IP (= IPPROTO_IP). */
export const SOL_IP = 0;

/** Option numbers (KRELAY_SO_*); set and get numbers overlap, as the kernel allows. */
export const KRELAY_SO = {
  BASE: 0x4b52,
  SET_ADD: 0x4b52,
  SET_DEL: 0x4b53,
  SET_FLUSH: 0x4b54,
  GET_INFO: 0x4b52,
  GET_ENTRY: 0x4b53,
  GET_TABLE: 0x4b54,
} as const;

/** krelay_nat_entry.flags: look the entry up by (protocol, relay_port) instead of its key. */
export const KRELAY_F_BY_RELAY_PORT = 0x0001;

/** IP protocol numbers. */
export const IPPROTO = { tcp: 6, udp: 17 } as const;

/** enum krelay_nat_state, by name. */
export const NAT_STATE = { none: 0, new: 1, established: 2, closing: 3 } as const;
/** A state name. */
export type NatStateName = keyof typeof NAT_STATE;

/** Byte offset and size of each field, as krelay_abi.h lays them out (checked against gcc). */
export const LAYOUT = {
  entry: {
    size: 64,
    fields: {
      version: [0, 4],
      protocol: [4, 1],
      state: [5, 1],
      flags: [6, 2],
      client_addr: [8, 4],
      client_port: [12, 2],
      service_port: [14, 2],
      relay_addr: [16, 4],
      server_addr: [20, 4],
      server_port: [24, 2],
      relay_port: [26, 2],
      reserved: [28, 4],
      bytes_in: [32, 8],
      bytes_out: [40, 8],
      packets_in: [48, 8],
      packets_out: [56, 8],
    },
  },
  info: {
    size: 48,
    fields: {
      version: [0, 4],
      entry_size: [4, 4],
      count: [8, 4],
      max_entries: [12, 4],
      started: [16, 4],
      reserved: [20, 4],
      adds: [24, 8],
      dels: [32, 8],
      full: [40, 8],
    },
  },
  table: {
    size: 16,
    fields: { version: [0, 4], count: [4, 4], total: [8, 4], reserved: [12, 4] },
  },
} as const;

/** Sizes of the structs in bytes. */
export const ENTRY_SIZE = LAYOUT.entry.size;
export const INFO_SIZE = LAYOUT.info.size;
export const TABLE_HEADER_SIZE = LAYOUT.table.size;

/** True on a little-endian machine; host-order fields follow it. */
export const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** One NAT entry: C (client) talks to R (relay_addr:service_port); R talks to S (server). */
export interface NatEntry {
  protocol: "tcp" | "udp";
  state: NatStateName;
  clientAddr: string;
  clientPort: number;
  relayAddr: string;
  servicePort: number;
  serverAddr: string;
  serverPort: number;
  /** y, the relay's port toward the server (TCP); 0 for UDP. */
  relayPort: number;
  bytesIn?: bigint;
  bytesOut?: bigint;
  packetsIn?: bigint;
  packetsOut?: bigint;
}

/** The key of an entry: what SET_DEL and GET_ENTRY match. */
export type NatKey = Pick<
  NatEntry,
  "protocol" | "clientAddr" | "clientPort" | "relayAddr" | "servicePort"
>;

/** GET_INFO's answer. */
export interface NatInfo {
  version: number;
  entrySize: number;
  count: number;
  maxEntries: number;
  started: boolean;
  adds: bigint;
  dels: bigint;
  full: bigint;
}

function putAddr(v: DataView, off: number, text: string): void {
  const parts = text.split(".");
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) {
    throw new RangeError(`not an IPv4 address: "${text}"`);
  }
  parts.forEach((p, i) => v.setUint8(off + i, Number(p)));
}

function getAddr(v: DataView, off: number): string {
  return [0, 1, 2, 3].map((i) => v.getUint8(off + i)).join(".");
}

function putPort(v: DataView, off: number, port: number, name: string): void {
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(`${name} must be 0-65535, not ${port}`);
  }
  v.setUint16(off, port, false);
}

function putU64(v: DataView, off: number, n: bigint | undefined, name: string): void {
  const value = n ?? 0n;
  if (value < 0n || value >= 1n << 64n) throw new RangeError(`${name} out of range`);
  v.setBigUint64(off, value, HOST_LITTLE_ENDIAN);
}

function view(bytes: Uint8Array, offset: number, size: number, what: string): DataView {
  if (bytes.length < offset + size) {
    throw new RangeError(`${what} needs ${size} bytes at ${offset}, have ${bytes.length}`);
  }
  return new DataView(bytes.buffer, bytes.byteOffset + offset, size);
}

function checkVersion(v: DataView, what: string): void {
  const version = v.getUint32(0, HOST_LITTLE_ENDIAN);
  if (version !== KRELAY_ABI_VERSION) {
    throw new RangeError(`${what}: ABI version ${version}, expected ${KRELAY_ABI_VERSION}`);
  }
}

/** Encodes a struct krelay_nat_entry (64 bytes) for SET_ADD, or with `flags` for lookups. */
export function encodeNatEntry(e: NatEntry, flags = 0): Uint8Array {
  const bytes = new Uint8Array(ENTRY_SIZE);
  const v = new DataView(bytes.buffer);
  v.setUint32(0, KRELAY_ABI_VERSION, HOST_LITTLE_ENDIAN);
  v.setUint8(4, IPPROTO[e.protocol]);
  v.setUint8(5, NAT_STATE[e.state]);
  v.setUint16(6, flags, HOST_LITTLE_ENDIAN);
  putAddr(v, 8, e.clientAddr);
  putPort(v, 12, e.clientPort, "clientPort");
  putPort(v, 14, e.servicePort, "servicePort");
  putAddr(v, 16, e.relayAddr);
  putAddr(v, 20, e.serverAddr);
  putPort(v, 24, e.serverPort, "serverPort");
  putPort(v, 26, e.relayPort, "relayPort");
  putU64(v, 32, e.bytesIn, "bytesIn");
  putU64(v, 40, e.bytesOut, "bytesOut");
  putU64(v, 48, e.packetsIn, "packetsIn");
  putU64(v, 56, e.packetsOut, "packetsOut");
  return bytes;
}

/** A SET_DEL or GET_ENTRY request for the entry with this key (64 bytes). */
export function encodeNatKey(k: NatKey): Uint8Array {
  return encodeNatEntry({
    ...k,
    state: "none",
    serverAddr: "0.0.0.0",
    serverPort: 0,
    relayPort: 0,
  });
}

/** A SET_DEL or GET_ENTRY request for the entry with this relay port y (64 bytes). */
export function encodeNatRelayPortKey(protocol: "tcp" | "udp", relayPort: number): Uint8Array {
  if (relayPort < 1) throw new RangeError("relayPort must be 1-65535");
  return encodeNatEntry({
    protocol,
    state: "none",
    clientAddr: "0.0.0.0",
    clientPort: 0,
    relayAddr: "0.0.0.0",
    servicePort: 0,
    serverAddr: "0.0.0.0",
    serverPort: 0,
    relayPort,
  }, KRELAY_F_BY_RELAY_PORT);
}

/** Decodes a struct krelay_nat_entry at `offset`. */
export function decodeNatEntry(bytes: Uint8Array, offset = 0): NatEntry {
  const v = view(bytes, offset, ENTRY_SIZE, "krelay_nat_entry");
  checkVersion(v, "krelay_nat_entry");
  const proto = v.getUint8(4);
  const protocol = proto === IPPROTO.tcp ? "tcp" : proto === IPPROTO.udp ? "udp" : undefined;
  if (!protocol) throw new RangeError(`krelay_nat_entry: unknown protocol ${proto}`);
  const stateNumber = v.getUint8(5);
  const state = (Object.keys(NAT_STATE) as NatStateName[]).find((k) =>
    NAT_STATE[k] === stateNumber
  );
  if (!state) throw new RangeError(`krelay_nat_entry: unknown state ${stateNumber}`);
  return {
    protocol,
    state,
    clientAddr: getAddr(v, 8),
    clientPort: v.getUint16(12, false),
    servicePort: v.getUint16(14, false),
    relayAddr: getAddr(v, 16),
    serverAddr: getAddr(v, 20),
    serverPort: v.getUint16(24, false),
    relayPort: v.getUint16(26, false),
    bytesIn: v.getBigUint64(32, HOST_LITTLE_ENDIAN),
    bytesOut: v.getBigUint64(40, HOST_LITTLE_ENDIAN),
    packetsIn: v.getBigUint64(48, HOST_LITTLE_ENDIAN),
    packetsOut: v.getBigUint64(56, HOST_LITTLE_ENDIAN),
  };
}

/** The SET_FLUSH argument: the version alone (4 bytes). */
export function encodeFlush(): Uint8Array {
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, KRELAY_ABI_VERSION, HOST_LITTLE_ENDIAN);
  return bytes;
}

/** A GET_INFO buffer (48 bytes, version set); decode it with {@link decodeNatInfo}. */
export function encodeInfoRequest(): Uint8Array {
  const bytes = new Uint8Array(INFO_SIZE);
  new DataView(bytes.buffer).setUint32(0, KRELAY_ABI_VERSION, HOST_LITTLE_ENDIAN);
  return bytes;
}

/** Decodes GET_INFO's answer. */
export function decodeNatInfo(bytes: Uint8Array): NatInfo {
  const v = view(bytes, 0, INFO_SIZE, "krelay_nat_info");
  checkVersion(v, "krelay_nat_info");
  const le = HOST_LITTLE_ENDIAN;
  return {
    version: v.getUint32(0, le),
    entrySize: v.getUint32(4, le),
    count: v.getUint32(8, le),
    maxEntries: v.getUint32(12, le),
    started: v.getUint32(16, le) !== 0,
    adds: v.getBigUint64(24, le),
    dels: v.getBigUint64(32, le),
    full: v.getBigUint64(40, le),
  };
}

/**
 * A GET_TABLE buffer with room for `capacity` entries (16 + capacity * 64 bytes, version
 * set). Pass its length as optlen; decode with {@link decodeNatTable}.
 */
export function encodeTableRequest(capacity: number): Uint8Array {
  if (!Number.isInteger(capacity) || capacity < 0) throw new RangeError("bad capacity");
  const bytes = new Uint8Array(TABLE_HEADER_SIZE + capacity * ENTRY_SIZE);
  new DataView(bytes.buffer).setUint32(0, KRELAY_ABI_VERSION, HOST_LITTLE_ENDIAN);
  return bytes;
}

/**
 * Decodes GET_TABLE's answer: the entries written (`count`) and how many the table holds
 * (`total`); `count < total` means the buffer was too small.
 */
export function decodeNatTable(
  bytes: Uint8Array,
): { count: number; total: number; entries: NatEntry[] } {
  const v = view(bytes, 0, TABLE_HEADER_SIZE, "krelay_nat_table");
  checkVersion(v, "krelay_nat_table");
  const count = v.getUint32(4, HOST_LITTLE_ENDIAN);
  const total = v.getUint32(8, HOST_LITTLE_ENDIAN);
  const entries: NatEntry[] = [];
  for (let i = 0; i < count; i++) {
    entries.push(decodeNatEntry(bytes, TABLE_HEADER_SIZE + i * ENTRY_SIZE));
  }
  return { count, total, entries };
}
