import { deepStrictEqual as assertEquals, throws } from "node:assert/strict";
import { Helper } from "./bpf_asm.ts";
import { ip6Words, IPV6_KEYS, ipWord, MAX_LISTENERS, skLookupProgram } from "./sk_lookup.ts";

const MAP_FD = 7;

/** A socket in the map: whether assigning it works (a listener) or fails (anything else). */
interface FakeSocket {
  name: string;
  listening: boolean;
}

/**
 * Runs the program's bytes on a lookup context, with the map and helpers simulated: enough of
 * eBPF for the instructions Asm emits. Returns the verdict, the socket assigned and whether
 * every reference taken was released.
 */
function runProgram(
  code: Uint8Array,
  ctx: {
    protocol: number;
    localIp4: number;
    localPort: number;
    family?: number;
    localIp6?: number[];
  },
  map: (FakeSocket | undefined)[],
) {
  const v = new DataView(code.buffer);
  const regs = new Array<bigint>(11).fill(0n);
  const stack = new DataView(new ArrayBuffer(512));
  const ctxMem = new DataView(new ArrayBuffer(72));
  ctxMem.setUint32(8, ctx.family ?? 2, true);
  ctxMem.setUint32(12, ctx.protocol, true);
  (ctx.localIp6 ?? []).forEach((w, i) => ctxMem.setUint32(44 + 4 * i, w, true));
  ctxMem.setUint32(40, ctx.localIp4, true);
  ctxMem.setUint32(60, ctx.localPort, true);
  const CTX = 1n << 40n, FP = 2n << 40n, MAP = 3n << 40n, SOCK = 4n << 40n;
  regs[1] = CTX;
  regs[10] = FP + 512n;
  let assigned: string | undefined;
  let refs = 0;
  const mem = (addr: bigint): [DataView, number] => {
    if (addr >= FP && addr < FP + 512n) return [stack, Number(addr - FP)];
    if (addr >= CTX && addr < CTX + 72n) return [ctxMem, Number(addr - CTX)];
    throw new Error(`bad address ${addr}`);
  };
  const s32 = (x: bigint) => BigInt.asIntN(32, x);
  for (let pc = 0, steps = 0; steps < 10_000; steps++) {
    const op = v.getUint8(pc * 8), regByte = v.getUint8(pc * 8 + 1);
    const dst = regByte & 15, src = regByte >> 4;
    const off = v.getInt16(pc * 8 + 2, true), imm = BigInt(v.getInt32(pc * 8 + 4, true));
    pc++;
    const low = (r: number) => BigInt.asUintN(32, regs[r]);
    switch (op) {
      case 0xbf:
        regs[dst] = regs[src];
        break;
      case 0xb7:
        regs[dst] = imm;
        break;
      case 0x07:
        regs[dst] += imm;
        break;
      case 0x61: {
        const [m, o] = mem(regs[src] + BigInt(off));
        regs[dst] = BigInt(m.getUint32(o, true));
        break;
      }
      case 0x62: {
        const [m, o] = mem(regs[dst] + BigInt(off));
        m.setInt32(o, Number(imm), true);
        break;
      }
      case 0x18:
        if (src !== 1 || Number(imm) !== MAP_FD) throw new Error("map load of another fd");
        regs[dst] = MAP;
        pc++;
        break;
      case 0x16:
        if (low(dst) === BigInt.asUintN(32, imm)) pc += off;
        break;
      case 0x56:
        if (low(dst) !== BigInt.asUintN(32, imm)) pc += off;
        break;
      case 0x15:
        if (regs[dst] === imm) pc += off;
        break;
      case 0x05:
        pc += off;
        break;
      case 0x85: {
        const helper = Number(imm);
        if (helper === Helper.MapLookupElem) {
          if (regs[1] !== MAP) throw new Error("lookup in another map");
          const [m, o] = mem(regs[2]);
          const sock = map[m.getUint32(o, true)];
          if (sock === undefined) regs[0] = 0n;
          else {
            refs++;
            regs[0] = SOCK + BigInt(map.indexOf(sock));
          }
        } else if (helper === Helper.SkAssign) {
          if (regs[1] !== CTX || regs[3] !== 0n) throw new Error("bad sk_assign arguments");
          const sock = map[Number(regs[2] - SOCK)]!;
          if (sock.listening) assigned = sock.name;
          regs[0] = sock.listening ? 0n : s32(-94n);
        } else if (helper === Helper.SkRelease) {
          if (regs[1] < SOCK) throw new Error("release of a non-socket");
          refs--;
          regs[0] = 0n;
        } else throw new Error(`unexpected helper ${helper}`);
        // Calls clobber r1-r5.
        for (let r = 1; r <= 5; r++) regs[r] = 0xdeadn;
        break;
      }
      case 0x95:
        return { verdict: Number(regs[0]), assigned, balanced: refs === 0 };
      default:
        throw new Error(`unexpected opcode 0x${op.toString(16)}`);
    }
  }
  throw new Error("the program did not end");
}

const target = { relayIp: "198.51.100.1", tcpPorts: [80, 443] };
const code = skLookupProgram(target, MAP_FD);
const relay = ipWord("198.51.100.1");
const listener = (name: string): FakeSocket => ({ name, listening: true });

Deno.test("ipWord: the address's bytes in network order, read as a little-endian u32", () => {
  assertEquals(ipWord("198.51.100.1"), 0x016433c6);
  assertEquals(ipWord("203.0.113.200"), 0xc87100cb);
  throws(() => ipWord("198.51.100"), /not an IPv4 address/);
  throws(() => ipWord("198.51.100.256"), /not an IPv4 address/);
});

Deno.test("sk_lookup program: TCP to the relay's service ports gets the first listener", () => {
  for (const port of target.tcpPorts) {
    const r = runProgram(code, { protocol: 6, localIp4: relay, localPort: port }, [
      listener("a"),
      listener("b"),
    ]);
    assertEquals(r, { verdict: 1, assigned: "a", balanced: true });
  }
});

Deno.test("sk_lookup program: other ports, addresses and protocols go their usual way", () => {
  const map = [listener("a")];
  const cases = [
    { protocol: 6, localIp4: relay, localPort: 81 },
    { protocol: 6, localIp4: ipWord("198.51.100.2"), localPort: 80 },
    { protocol: 17, localIp4: relay, localPort: 80 },
  ];
  for (const ctx of cases) {
    assertEquals(runProgram(code, ctx, map), { verdict: 1, assigned: undefined, balanced: true });
  }
});

Deno.test("sk_lookup program: an empty slot or a socket that is not listening is skipped", () => {
  const ctx = { protocol: 6, localIp4: relay, localPort: 80 };
  assertEquals(runProgram(code, ctx, [undefined, listener("b")]).assigned, "b");
  const closed = { name: "closed", listening: false };
  assertEquals(runProgram(code, ctx, [closed, undefined, listener("c")]), {
    verdict: 1,
    assigned: "c",
    balanced: true,
  });
  const last = new Array<FakeSocket | undefined>(MAX_LISTENERS).fill(undefined);
  last[MAX_LISTENERS - 1] = listener("last");
  assertEquals(runProgram(code, ctx, last).assigned, "last");
  assertEquals(runProgram(code, ctx, []), { verdict: 1, assigned: undefined, balanced: true });
});

Deno.test("sk_lookup program: with no service port, nothing is assigned", () => {
  const none = skLookupProgram({ relayIp: "198.51.100.1", tcpPorts: [] }, MAP_FD);
  const r = runProgram(none, { protocol: 6, localIp4: relay, localPort: 80 }, [listener("a")]);
  assertEquals(r, { verdict: 1, assigned: undefined, balanced: true });
});

const dual = { ...target, relayIp6: "2001:db8:1::1" };
const dualCode = skLookupProgram(dual, MAP_FD);
const relay6 = ip6Words("2001:db8:1::1");
/** A map with IPv4 listener "v4" at key 0 and IPv6 listener "v6" at the first IPv6 key. */
const dualMap = (): (FakeSocket | undefined)[] => {
  const map = new Array<FakeSocket | undefined>(2 * MAX_LISTENERS).fill(undefined);
  map[0] = listener("v4");
  map[IPV6_KEYS] = listener("v6");
  return map;
};

Deno.test("ip6Words: each 32-bit group's bytes in network order, read little-endian", () => {
  assertEquals(ip6Words("2001:db8:1::1"), [0xb80d0120, 0x00000100, 0, 0x01000000]);
  throws(() => ip6Words("198.51.100.1"), /not an IPv6 address/);
});

Deno.test("sk_lookup program: TCP to the relay's IPv6 address gets an IPv6 listener", () => {
  for (const port of dual.tcpPorts) {
    const r = runProgram(dualCode, {
      protocol: 6,
      family: 10,
      localIp4: 0,
      localIp6: relay6,
      localPort: port,
    }, dualMap());
    assertEquals(r, { verdict: 1, assigned: "v6", balanced: true });
  }
  // IPv4 still gets the IPv4 listener from the same program.
  const r4 = runProgram(dualCode, { protocol: 6, localIp4: relay, localPort: 80 }, dualMap());
  assertEquals(r4.assigned, "v4");
});

Deno.test("sk_lookup program: other IPv6 addresses and ports, or no IPv6 relay, pass", () => {
  const other = ip6Words("2001:db8:1::2");
  const cases = [
    { protocol: 6, family: 10, localIp4: 0, localIp6: other, localPort: 80 },
    { protocol: 6, family: 10, localIp4: 0, localIp6: relay6, localPort: 81 },
    { protocol: 17, family: 10, localIp4: 0, localIp6: relay6, localPort: 80 },
    // Only the last word differs.
    { protocol: 6, family: 10, localIp4: 0, localIp6: [...relay6.slice(0, 3), 2], localPort: 80 },
  ];
  for (const ctx of cases) {
    assertEquals(runProgram(dualCode, ctx, dualMap()), {
      verdict: 1,
      assigned: undefined,
      balanced: true,
    });
  }
  const v6ctx = { protocol: 6, family: 10, localIp4: 0, localIp6: relay6, localPort: 80 };
  assertEquals(runProgram(code, v6ctx, dualMap()).assigned, undefined);
});

Deno.test("sk_lookup program with IPv6 only: IPv6 gets its listener, IPv4 connections pass", () => {
  const only6 = skLookupProgram({ ...dual, relayIp: undefined }, MAP_FD);
  const v6 = { protocol: 6, family: 10, localIp4: 0, localIp6: relay6, localPort: 80 };
  assertEquals(runProgram(only6, v6, dualMap()), { verdict: 1, assigned: "v6", balanced: true });
  const v4 = { protocol: 6, family: 2, localIp4: relay, localPort: 80 };
  assertEquals(runProgram(only6, v4, dualMap()).assigned, undefined);
});
