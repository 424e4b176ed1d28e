/**
 * The two tc programs of the UDP flowtable (udp_flowtable.ts), built with {@link Asm}: their
 * constants (the relay's address, the timeouts, the maps) change with the configuration, and
 * krelay ships no compiler.
 *
 * - {@link learnProgram} (egress): a datagram nftables translated carries the learn mark. A
 *   request (client:cport -> server:svc) records the flow's server under {@link flowKey}; an
 *   answer nftables readdressed (relay:svc -> client:cport) records the way back of a flow
 *   already known under {@link replyKey}. Answers are learned from nftables only, so that it
 *   sees a flow's first answers (it records which flows were answered).
 * - {@link forwardProgram} (ingress): a datagram of a known, fresh flow gets its address, TTL
 *   and checksums rewritten and leaves through the device and next hop the FIB names. Anything
 *   else passes to the stack untouched: other packets, a stale entry (nftables decides), and
 *   one datagram per flow, direction and `syncMs`, so that nftables keeps its own entries.
 *
 * Map layouts, in network order as in the packet: a flow key (8 bytes) is client u32,
 * client port u16, service port u16; a reply key (12 bytes) server u32, client u32, service
 * port u16, client port u16; a value (24 bytes) the address to write u32, 0 u32, last seen
 * u64 and last synced u64 (bpf_ktime_get_coarse_ns). `stats` is a per-CPU array of
 * {@link FlowStat} counters (u64).
 *
 * @example
 * ```ts ignore
 * const layout = { relayIp: "198.51.100.1", flows, replies, stats, timeoutMs: 30_000,
 *   syncMs: 1_000, learnMark: FLOW_LEARN_MARK };
 * const fwd = loadProgram(ProgType.SchedCls, AttachType.TcxIngress, forwardProgram(layout));
 * const learn = loadProgram(ProgType.SchedCls, AttachType.TcxEgress, learnProgram(layout));
 * mapUpdate(flows, flowKey("192.0.2.7", 40_000, 53), value); // what learning does
 * ```
 *
 * @module
 */

import { UpdateFlag } from "./bpf.ts";
import { Asm, Helper } from "./bpf_asm.ts";
import { ipWord } from "./sk_lookup.ts";

export const FLOW_KEY_SIZE = 8, REPLY_KEY_SIZE = 12, FLOW_VALUE_SIZE = 24;

/** The counters of the `stats` map, by index. */
export const FlowStat = { Forwarded: 0, Synced: 1, LearnedRequests: 2, LearnedReplies: 3 } as const;

/** What the programs are built for: the maps' descriptors and the configuration. */
export interface FlowtableLayout {
  /** Dotted IPv4. */
  relayIp: string;
  /** Map descriptors: flows and replies LRU hashes, stats a per-CPU array. */
  flows: number;
  replies: number;
  stats: number;
  /** An entry unused this long is stale (udp_timeout). */
  timeoutMs: number;
  /** One datagram per flow and direction this often goes to nftables. */
  syncMs: number;
  /** The mark bit nftables sets on what it translated. */
  learnMark: number;
}

/** A flow key: the client's address and port, the service port. */
export function flowKey(client: string, clientPort: number, servicePort: number): Uint8Array {
  const k = new Uint8Array(FLOW_KEY_SIZE);
  const v = new DataView(k.buffer);
  v.setUint32(0, ipWord(client), true);
  v.setUint16(4, clientPort);
  v.setUint16(6, servicePort);
  return k;
}

/** A reply key: the server's and the client's addresses, the service and client ports. */
export function replyKey(
  server: string,
  client: string,
  servicePort: number,
  clientPort: number,
): Uint8Array {
  const k = new Uint8Array(REPLY_KEY_SIZE);
  const v = new DataView(k.buffer);
  v.setUint32(0, ipWord(server), true);
  v.setUint32(4, ipWord(client), true);
  v.setUint16(8, servicePort);
  v.setUint16(10, clientPort);
  return k;
}

/** struct __sk_buff offsets. */
const SKB = { mark: 8, ingressIfindex: 36, data: 76, dataEnd: 80 };

/** Offsets in the frame: Ethernet, then IPv4 without options, then UDP. */
const F = {
  proto: 12,
  verIhl: 14,
  tos: 15,
  fragOff: 20,
  ttl: 22,
  protocol: 23,
  csum: 24,
  saddr: 26,
  daddr: 30,
  sport: 34,
  dport: 36,
  udpCsum: 40,
  end: 42,
};

/** Packet constants as a little-endian load of their network-order bytes sees them. */
const ETH_P_IP = 0x0008, IPV4_NO_OPTIONS = 0x45, IPPROTO_UDP = 17;
const FRAG_MASK = 0xff3f; // htons(0x3fff): more fragments and the offset

/** struct bpf_fib_lookup offsets (64 bytes). */
const FIB = {
  size: 64,
  family: 0,
  l4Protocol: 1,
  ifindex: 8,
  tos: 12,
  ipv4Src: 16,
  ipv4Dst: 32,
};
/** BPF_FIB_LOOKUP_SKIP_NEIGH; struct bpf_redir_neigh's size (family, then the address). */
const FIB_SKIP_NEIGH = 4, REDIR_NEIGH_SIZE = 20;
const AF_INET = 2;
const L4_CSUM_FLAGS = 0x10 | 0x20 | 4; // BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0 | 4 bytes

/** Value offsets. */
const VAL = { addr: 0, pad: 4, seen: 8, synced: 16 };

const MS = 1_000_000n;

/**
 * Parses the packet at r7 (its data) up to the UDP header, jumping to "out" for anything
 * but unfragmented IPv4 without options carrying UDP. Needs r6 = ctx; uses r2, r3.
 */
function parseUdp4(a: Asm): void {
  a.load(32, 7, 6, SKB.data).load(32, 2, 6, SKB.dataEnd)
    .mov(3, 7).addImm(3, F.end).jgt(3, 2, "out")
    .load(16, 3, 7, F.proto).jne32(3, ETH_P_IP, "out")
    .load(8, 3, 7, F.verIhl).jne32(3, IPV4_NO_OPTIONS, "out")
    .load(8, 3, 7, F.protocol).jne32(3, IPPROTO_UDP, "out")
    .load(16, 3, 7, F.fragOff).andImm(3, FRAG_MASK).jne32(3, 0, "out");
}

/** Adds 1 to the stats counter `index` (per CPU: no atomics); uses r0-r5 and the stack at `slot`. */
function count(a: Asm, stats: number, index: number, slot: number, done: string): void {
  a.store32Imm(10, slot, index)
    .loadMap(1, stats).mov(2, 10).addImm(2, slot).call(Helper.MapLookupElem)
    .jeqZero(0, done)
    .load(64, 1, 0, 0).addImm(1, 1).store(64, 0, 0, 1);
}

/** Updates `map` with the key and value on the stack at `key` and `value`. */
function update(a: Asm, map: number, key: number, value: number, flags: number): void {
  a.loadMap(1, map).mov(2, 10).addImm(2, key).mov(3, 10).addImm(3, value)
    .movImm(4, flags).call(Helper.MapUpdateElem);
}

/** Returns 0 (TC_ACT_OK: the stack carries on) at label "out". */
function out(a: Asm): Uint8Array {
  return a.label("out").movImm(0, 0).exit().build();
}

/**
 * The egress program: learns the flows nftables translated (the learn mark), clearing the
 * mark. Always returns TC_ACT_OK.
 */
export function learnProgram(layout: FlowtableLayout): Uint8Array {
  const relay = ipWord(layout.relayIp) | 0;
  // Stack: flow key -8, reply key -24, value -48, counter index -52.
  const FKEY = -8, RKEY = -24, VALUE = -48, IDX = -52;
  const a = new Asm().mov(6, 1)
    .load(32, 2, 6, SKB.mark).mov(3, 2).andImm(3, layout.learnMark).jeqZero(3, "out")
    .andImm(2, ~layout.learnMark).store(32, 6, SKB.mark, 2);
  parseUdp4(a);
  a.call(Helper.KtimeGetCoarseNs).mov(8, 0) // r8 = now
    .storeImm(32, 10, VALUE + VAL.pad, 0)
    .store(64, 10, VALUE + VAL.seen, 8).store(64, 10, VALUE + VAL.synced, 8)
    .load(32, 1, 7, F.saddr).jeq32(1, relay, "answer");

  // A request: client:cport -> server:svc.
  a.store(32, 10, FKEY, 1)
    .load(16, 2, 7, F.sport).store(16, 10, FKEY + 4, 2)
    .load(16, 2, 7, F.dport).store(16, 10, FKEY + 6, 2)
    .load(32, 2, 7, F.daddr).store(32, 10, VALUE + VAL.addr, 2);
  // The way back is learned from an answer nftables readdressed, never here: the first
  // answers must reach nftables, which records that the flow was answered.
  update(a, layout.flows, FKEY, VALUE, UpdateFlag.Any);
  count(a, layout.stats, FlowStat.LearnedRequests, IDX, "out");
  a.ja("out");

  // An answer nftables readdressed: relay:svc -> client:cport, of a flow known.
  a.label("answer")
    .load(32, 2, 7, F.daddr).store(32, 10, FKEY, 2)
    .load(16, 2, 7, F.dport).store(16, 10, FKEY + 4, 2)
    .load(16, 2, 7, F.sport).store(16, 10, FKEY + 6, 2)
    .loadMap(1, layout.flows).mov(2, 10).addImm(2, FKEY).call(Helper.MapLookupElem)
    .jeqZero(0, "out")
    .load(32, 2, 0, VAL.addr).store(32, 10, RKEY, 2)
    .load(32, 2, 7, F.daddr).store(32, 10, RKEY + 4, 2)
    .load(16, 2, 7, F.sport).store(16, 10, RKEY + 8, 2)
    .load(16, 2, 7, F.dport).store(16, 10, RKEY + 10, 2)
    .storeImm(32, 10, VALUE + VAL.addr, relay);
  update(a, layout.replies, RKEY, VALUE, UpdateFlag.Any);
  count(a, layout.stats, FlowStat.LearnedReplies, IDX, "out");
  return out(a);
}

/**
 * The ingress program: forwards a fresh flow's datagram itself (returns bpf_redirect_neigh's
 * TC_ACT_REDIRECT), or returns TC_ACT_OK with the packet untouched.
 */
export function forwardProgram(layout: FlowtableLayout): Uint8Array {
  const relay = ipWord(layout.relayIp) | 0;
  // Stack: key -16 (8 or 12 bytes), new address -20, old address -24, address offset -32,
  // fib params -96, counter index -100, next hop (struct bpf_redir_neigh) -124.
  const KEY = -16, NEW = -20, OLD = -24, OFF = -32, P = -96, IDX = -100, NH = -124;
  const a = new Asm().mov(6, 1);
  parseUdp4(a);
  a.load(8, 3, 7, F.ttl).jleImm(3, 1, "out");
  for (let i = 0; i < FIB.size; i += 8) a.storeImm(64, 10, P + i, 0);
  a.load(32, 1, 7, F.saddr).store(32, 10, KEY, 1)
    .load(32, 2, 7, F.daddr).jne32(2, relay, "reply");

  // To a server: client:cport -> relay:svc becomes client:cport -> server:svc.
  a.load(16, 2, 7, F.sport).store(16, 10, KEY + 4, 2)
    .load(16, 2, 7, F.dport).store(16, 10, KEY + 6, 2)
    .loadMap(1, layout.flows).mov(2, 10).addImm(2, KEY).call(Helper.MapLookupElem)
    .jeqZero(0, "out").mov(8, 0)
    .load(32, 1, 8, VAL.addr).store(32, 10, NEW, 1).store(32, 10, P + FIB.ipv4Dst, 1)
    .load(32, 1, 7, F.daddr).store(32, 10, OLD, 1)
    .load(32, 1, 7, F.saddr).store(32, 10, P + FIB.ipv4Src, 1)
    .storeImm(64, 10, OFF, F.daddr)
    .ja("found");

  // Back to a client: server:svc -> client:cport becomes relay:svc -> client:cport.
  a.label("reply").store(32, 10, KEY + 4, 2)
    .load(16, 2, 7, F.sport).store(16, 10, KEY + 8, 2)
    .load(16, 2, 7, F.dport).store(16, 10, KEY + 10, 2)
    .loadMap(1, layout.replies).mov(2, 10).addImm(2, KEY).call(Helper.MapLookupElem)
    .jeqZero(0, "out").mov(8, 0)
    .storeImm(32, 10, NEW, relay).storeImm(32, 10, P + FIB.ipv4Src, relay)
    .load(32, 1, 7, F.saddr).store(32, 10, OLD, 1)
    .load(32, 1, 7, F.daddr).store(32, 10, P + FIB.ipv4Dst, 1)
    .storeImm(64, 10, OFF, F.saddr);

  // r8: the entry. Stale: nftables decides. Due a sync: this one goes through nftables.
  a.label("found").call(Helper.KtimeGetCoarseNs).mov(9, 0)
    .load(64, 1, 8, VAL.seen).mov(2, 9).sub(2, 1)
    .ldImm64(1, BigInt(layout.timeoutMs) * MS).jgt(2, 1, "out")
    .store(64, 8, VAL.seen, 9)
    .load(64, 1, 8, VAL.synced).mov(2, 9).sub(2, 1)
    .ldImm64(1, BigInt(layout.syncMs) * MS).jgt(2, 1, "sync");

  // tot_len stays 0: the kernel then checks the packet against the output device's MTU. The
  // neighbour is bpf_redirect_neigh's to find: it knows a device with no link-layer header
  // (a tunnel) from an Ethernet one.
  a.storeImm(8, 10, P + FIB.family, AF_INET).storeImm(8, 10, P + FIB.l4Protocol, IPPROTO_UDP)
    .load(8, 1, 7, F.tos).store(8, 10, P + FIB.tos, 1)
    .load(32, 1, 6, SKB.ingressIfindex).store(32, 10, P + FIB.ifindex, 1)
    .mov(1, 6).mov(2, 10).addImm(2, P).movImm(3, FIB.size).movImm(4, FIB_SKIP_NEIGH)
    .call(Helper.FibLookup).jneImm(0, 0, "out");

  // Direct writes first: the checksum helpers change packet data, so r7 is invalid after them.
  // The TTL/protocol word loads little-endian with the TTL in its low byte, and TTL >= 2:
  // the new word is the old one minus 1.
  a.load(16, 8, 7, F.ttl).mov(9, 8).subImm(9, 1).store(8, 7, F.ttl, 9)
    .load(32, 1, 10, NEW).load(64, 2, 10, OFF).jeqImm(2, F.saddr, "source")
    .store(32, 7, F.daddr, 1).ja("sums")
    .label("source").store(32, 7, F.saddr, 1)
    .label("sums");
  a.mov(1, 6).movImm(2, F.csum).mov(3, 8).mov(4, 9).movImm(5, 2).call(Helper.L3CsumReplace)
    .mov(1, 6).movImm(2, F.udpCsum).load(32, 3, 10, OLD).load(32, 4, 10, NEW)
    .movImm(5, L4_CSUM_FLAGS).call(Helper.L4CsumReplace)
    .mov(1, 6).movImm(2, F.csum).load(32, 3, 10, OLD).load(32, 4, 10, NEW).movImm(5, 4)
    .call(Helper.L3CsumReplace);
  count(a, layout.stats, FlowStat.Forwarded, IDX, "redirect");
  // The FIB left the next hop (the gateway, or the destination itself) in ipv4_dst.
  a.label("redirect").storeImm(32, 10, NH, AF_INET).load(32, 1, 10, P + FIB.ipv4Dst)
    .store(32, 10, NH + 4, 1)
    .load(32, 1, 10, P + FIB.ifindex).mov(2, 10).addImm(2, NH).movImm(3, REDIR_NEIGH_SIZE)
    .movImm(4, 0).call(Helper.RedirectNeigh).exit();

  a.label("sync").store(64, 8, VAL.synced, 9);
  count(a, layout.stats, FlowStat.Synced, IDX, "out");
  return out(a);
}
