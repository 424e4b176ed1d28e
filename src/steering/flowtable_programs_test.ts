/**
 * The flowtable programs: built anywhere; as root, loaded (the verifier accepts them) and run
 * on real frames with BPF_PROG_TEST_RUN against real maps. The redirect path needs routes and
 * devices: the lab's end-to-end tests cover it.
 */

import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { testOrSkip } from "../../tests/support/skip.ts";
import {
  AttachType,
  closeQuietly,
  createMap,
  loadProgram,
  mapLookup,
  MapType,
  mapUpdate,
  progTestRun,
  ProgType,
} from "./bpf.ts";
import {
  FLOW_KEY_SIZE,
  FLOW_VALUE_SIZE,
  flowKey,
  FlowStat,
  type FlowtableLayout,
  forwardProgram,
  learnProgram,
  REPLY_KEY_SIZE,
  replyKey,
} from "./flowtable_programs.ts";

const RELAY = "198.51.100.1", CLIENT = "192.0.2.7", SERVER = "203.0.113.9";
const LEARN = 0x00100000;
const layout = (flows = 3, replies = 4, stats = 5): FlowtableLayout => ({
  relayIp: RELAY,
  flows,
  replies,
  stats,
  timeoutMs: 30_000,
  syncMs: 1_000,
  learnMark: LEARN,
});

Deno.test("both programs build: every jump has its label", () => {
  for (const program of [learnProgram, forwardProgram]) {
    const code = program(layout());
    ok(code.length > 0 && code.length % 8 === 0);
  }
});

Deno.test("keys are laid out as the programs read them: network order", () => {
  assertEquals(flowKey(CLIENT, 40_000, 53), new Uint8Array([192, 0, 2, 7, 0x9c, 0x40, 0, 53]));
  assertEquals(
    replyKey(SERVER, CLIENT, 53, 40_000),
    new Uint8Array([203, 0, 113, 9, 192, 0, 2, 7, 0, 53, 0x9c, 0x40]),
  );
  assertEquals([flowKey(CLIENT, 1, 2).length, replyKey(SERVER, CLIENT, 1, 2).length], [
    FLOW_KEY_SIZE,
    REPLY_KEY_SIZE,
  ]);
});

function ipBytes(ip: string): number[] {
  return ip.split(".").map(Number);
}

/** The ones' complement sum of 16-bit big-endian words, folded. */
function csum(bytes: number[]): number {
  let sum = 0;
  for (let i = 0; i < bytes.length; i += 2) sum += (bytes[i] << 8) | (bytes[i + 1] ?? 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
  return ~sum & 0xffff;
}

/** An Ethernet/IPv4/UDP frame with correct checksums (and DF set, as most UDP has). */
function frame(
  src: string,
  sport: number,
  dst: string,
  dport: number,
  opts: { ttl?: number; fragOff?: number } = {},
): Uint8Array {
  const payload = [...new TextEncoder().encode("datagram")];
  const be16 = (n: number) => [n >> 8, n & 0xff];
  const udpLen = 8 + payload.length;
  const ip = [
    0x45,
    0,
    ...be16(20 + udpLen),
    0,
    1,
    ...be16(opts.fragOff ?? 0x4000),
    opts.ttl ?? 64,
    17,
    0,
    0,
    ...ipBytes(src),
    ...ipBytes(dst),
  ];
  [ip[10], ip[11]] = be16(csum(ip));
  const udp = [...be16(sport), ...be16(dport), ...be16(udpLen), 0, 0, ...payload];
  const pseudo = [...ipBytes(src), ...ipBytes(dst), 0, 17, ...be16(udpLen)];
  [udp[6], udp[7]] = be16(csum([...pseudo, ...udp]) || 0xffff);
  const eth = [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
  return new Uint8Array([...eth, ...ip, ...udp]);
}

/** A struct __sk_buff image (192 bytes) with only the mark set. */
function skbWithMark(mark: number): Uint8Array {
  const ctx = new Uint8Array(192);
  new DataView(ctx.buffer).setUint32(8, mark, true);
  return ctx;
}

interface Entry {
  addr: string;
  pad: number;
  seen: bigint;
  synced: bigint;
}

function entry(addr: string, seen: bigint, synced: bigint): Uint8Array {
  const v = new Uint8Array(FLOW_VALUE_SIZE);
  const d = new DataView(v.buffer);
  v.set(ipBytes(addr), 0);
  d.setBigUint64(8, seen, true);
  d.setBigUint64(16, synced, true);
  return v;
}

function read(map: number, key: Uint8Array): Entry | undefined {
  const v = new Uint8Array(FLOW_VALUE_SIZE);
  if (!mapLookup(map, key, v)) return undefined;
  const d = new DataView(v.buffer);
  return {
    addr: [...v.subarray(0, 4)].join("."),
    pad: d.getUint32(4, true),
    seen: d.getBigUint64(8, true),
    synced: d.getBigUint64(16, true),
  };
}

/** CPUs a per-CPU map has a slot for: /sys/devices/system/cpu/possible, "0-3" or "0". */
function possibleCpus(): number {
  const text = Deno.readTextFileSync("/sys/devices/system/cpu/possible").trim();
  return text.split(",").reduce((n, range) => {
    const [lo, hi] = range.split("-").map(Number);
    return n + (hi ?? lo) - lo + 1;
  }, 0);
}

function stat(stats: number, index: number): number {
  const key = new Uint8Array(4);
  new DataView(key.buffer).setUint32(0, index, true);
  const perCpu = new BigUint64Array(possibleCpus());
  ok(mapLookup(stats, key, new Uint8Array(perCpu.buffer)));
  return Number(perCpu.reduce((a, b) => a + b, 0n));
}

const whyNot = Deno.uid() === 0 ? undefined : "needs root (bpf maps and programs)";

testOrSkip(whyNot, {
  name: "the verifier accepts both programs, which learn and pass packets as laid out",
  fn() {
    const fds: number[] = [];
    const open = (fd: number) => (fds.push(fd), fd);
    try {
      const flows = open(createMap(MapType.LruHash, FLOW_KEY_SIZE, FLOW_VALUE_SIZE, 1024));
      const replies = open(createMap(MapType.LruHash, REPLY_KEY_SIZE, FLOW_VALUE_SIZE, 1024));
      const stats = open(createMap(MapType.PercpuArray, 4, 8, 4));
      const l = layout(flows, replies, stats);
      const learn = open(loadProgram(ProgType.SchedCls, AttachType.TcxEgress, learnProgram(l)));
      const fwd = open(loadProgram(ProgType.SchedCls, AttachType.TcxIngress, forwardProgram(l)));

      // Learning a request: the flow (not the way back: its first answers must reach
      // nftables), the mark bit cleared (others kept).
      const request = frame(CLIENT, 40_000, SERVER, 53);
      const learned = progTestRun(learn, request, skbWithMark(LEARN | 5));
      assertEquals(learned.retval, 0);
      assertEquals(learned.data, request);
      assertEquals(new DataView(learned.ctx!.buffer).getUint32(8, true), 5);
      const flow = read(flows, flowKey(CLIENT, 40_000, 53));
      ok(flow && flow.seen > 0n);
      assertEquals(flow, { addr: SERVER, pad: 0, seen: flow.seen, synced: flow.seen });
      const back = replyKey(SERVER, CLIENT, 53, 40_000);
      assertEquals(read(replies, back), undefined);
      assertEquals(stat(stats, FlowStat.LearnedRequests), 1);
      const now = flow.seen; // the programs' clock (ktime coarse), a moment ago

      // Without the mark: nothing learned, the mark as it was.
      const other = frame("192.0.2.8", 40_001, SERVER, 53);
      const unmarked = progTestRun(learn, other, skbWithMark(7));
      assertEquals(new DataView(unmarked.ctx!.buffer).getUint32(8, true), 7);
      assertEquals(read(flows, flowKey("192.0.2.8", 40_001, 53)), undefined);
      assertEquals(stat(stats, FlowStat.LearnedRequests), 1);

      // A request again: the flow relearned, the way back still not.
      mapUpdate(flows, flowKey(CLIENT, 40_000, 53), entry(SERVER, 1n, 2n));
      progTestRun(learn, request, skbWithMark(LEARN));
      ok(read(flows, flowKey(CLIENT, 40_000, 53))!.seen >= now);
      assertEquals(read(replies, back), undefined);
      assertEquals(stat(stats, FlowStat.LearnedRequests), 2);

      // An answer nftables readdressed records the way back; of an unknown flow, nothing.
      progTestRun(learn, frame(RELAY, 53, CLIENT, 40_000), skbWithMark(LEARN));
      const answer = read(replies, back);
      ok(answer && answer.seen >= now);
      assertEquals(answer, { addr: RELAY, pad: 0, seen: answer.seen, synced: answer.seen });
      assertEquals(stat(stats, FlowStat.LearnedReplies), 1);
      progTestRun(learn, frame(RELAY, 53, "192.0.2.9", 40_000), skbWithMark(LEARN));
      assertEquals(read(replies, replyKey(SERVER, "192.0.2.9", 53, 40_000)), undefined);
      assertEquals(stat(stats, FlowStat.LearnedReplies), 1);

      const passes = (data: Uint8Array) => {
        const r = progTestRun(fwd, data);
        assertEquals(r.retval, 0);
        assertEquals(r.data, data);
      };
      const toRelay = frame(CLIENT, 40_000, RELAY, 53);
      const key = flowKey(CLIENT, 40_000, 53);

      // An unknown flow.
      passes(frame(CLIENT, 40_002, RELAY, 53));

      // A stale entry: left as it is, for nftables to decide.
      const stale = now - 60_000_000_000n; // the machine has been up longer than a minute
      mapUpdate(flows, key, entry(SERVER, stale, stale));
      passes(toRelay);
      assertEquals(read(flows, key)?.seen, stale);
      assertEquals(stat(stats, FlowStat.Synced), 0);

      // What the parser refuses, on a flow due a sync: a fragment, a TTL about to run out.
      mapUpdate(flows, key, entry(SERVER, now, 0n));
      passes(frame(CLIENT, 40_000, RELAY, 53, { fragOff: 0x2000 }));
      passes(frame(CLIENT, 40_000, RELAY, 53, { ttl: 1 }));
      assertEquals(read(flows, key)?.synced, 0n);

      // A fresh entry due a sync, each direction: to nftables, synced now.
      passes(toRelay);
      const synced = read(flows, key);
      ok(synced && synced.synced >= now && synced.seen === synced.synced);
      assertEquals(stat(stats, FlowStat.Synced), 1);
      mapUpdate(replies, back, entry(RELAY, now, 0n));
      passes(frame(SERVER, 53, CLIENT, 40_000));
      ok(read(replies, back)!.synced >= now);
      assertEquals(stat(stats, FlowStat.Synced), 2);
      assertEquals(stat(stats, FlowStat.Forwarded), 0);
    } finally {
      fds.forEach(closeQuietly);
    }
  },
});
