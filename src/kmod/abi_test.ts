import { deepStrictEqual as assertEquals, ok as assert, throws } from "node:assert/strict";
import {
  decodeNatEntry,
  decodeNatInfo,
  decodeNatTable,
  encodeFlush,
  encodeInfoRequest,
  encodeNatEntry,
  encodeNatKey,
  encodeNatRelayPortKey,
  encodeTableRequest,
  ENTRY_SIZE,
  HOST_LITTLE_ENDIAN,
  KRELAY_F_BY_RELAY_PORT,
  KRELAY_SO,
  LAYOUT,
  type NatEntry,
  TABLE_HEADER_SIZE,
} from "./abi.ts";
import { testOrSkip } from "../../tests/support/skip.ts";

const HEADER = new URL("../../kmod/krelay_abi.h", import.meta.url).pathname;

const entry: NatEntry = {
  protocol: "tcp",
  state: "established",
  clientAddr: "198.51.100.10",
  clientPort: 40000,
  relayAddr: "198.51.100.1",
  servicePort: 80,
  serverAddr: "203.0.113.10",
  serverPort: 8080,
  relayPort: 20001,
  bytesIn: 0x0102030405060708n,
  bytesOut: 5n,
  packetsIn: 7n,
  packetsOut: 9n,
};

function hex(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test("encodeNatEntry() lays out addresses and ports in network order, counters in host order", () => {
  assert(HOST_LITTLE_ENDIAN, "these expectations are for little-endian hosts");
  const b = encodeNatEntry(entry);
  assertEquals(b.length, 64);
  assertEquals(
    hex(b),
    "01000000" + "06" + "02" + "0000" + // version, protocol, state, flags
      "c633640a" + "9c40" + "0050" + // client 198.51.100.10:40000, service port 80
      "c6336401" + "cb00710a" + // relay 198.51.100.1, server 203.0.113.10
      "1f90" + "4e21" + "00000000" + // server port 8080, relay port 20001, reserved
      "0807060504030201" + "0500000000000000" + "0700000000000000" + "0900000000000000",
  );
});

Deno.test("decodeNatEntry() gives back what encodeNatEntry() wrote", () => {
  assertEquals(decodeNatEntry(encodeNatEntry(entry)), entry);
  const udp: NatEntry = { ...entry, protocol: "udp", state: "new", relayPort: 0 };
  assertEquals(decodeNatEntry(encodeNatEntry(udp)), udp);
});

Deno.test("decodeNatEntry() refuses another ABI version, protocol or a short buffer", () => {
  const b = encodeNatEntry(entry);
  b[0] = 2;
  throws(() => decodeNatEntry(b), /ABI version 2/);
  const p = encodeNatEntry(entry);
  p[4] = 1;
  throws(() => decodeNatEntry(p), /protocol 1/);
  throws(() => decodeNatEntry(new Uint8Array(63)), /needs 64 bytes/);
});

Deno.test("encodeNatEntry() refuses bad addresses and ports", () => {
  throws(() => encodeNatEntry({ ...entry, clientAddr: "1.2.3" }), /not an IPv4 address/);
  throws(() => encodeNatEntry({ ...entry, serverAddr: "1.2.3.256" }), /not an IPv4 address/);
  throws(() => encodeNatEntry({ ...entry, clientPort: 65536 }), /clientPort/);
  throws(() => encodeNatEntry({ ...entry, bytesIn: -1n }), /bytesIn/);
});

Deno.test("encodeNatKey() and encodeNatRelayPortKey() fill the key and the lookup flag", () => {
  const k = decodeNatEntry(encodeNatKey(entry));
  assertEquals([k.protocol, k.clientAddr, k.clientPort, k.relayAddr, k.servicePort], [
    "tcp",
    "198.51.100.10",
    40000,
    "198.51.100.1",
    80,
  ]);
  const byPort = encodeNatRelayPortKey("tcp", 20001);
  assertEquals(new DataView(byPort.buffer).getUint16(6, true), KRELAY_F_BY_RELAY_PORT);
  assertEquals(decodeNatEntry(byPort).relayPort, 20001);
  throws(() => encodeNatRelayPortKey("tcp", 0), /relayPort/);
});

Deno.test("decodeNatTable() reads the header and the entries after it", () => {
  const buf = encodeTableRequest(3);
  assertEquals(buf.length, TABLE_HEADER_SIZE + 3 * ENTRY_SIZE);
  const v = new DataView(buf.buffer);
  v.setUint32(4, 2, true);
  v.setUint32(8, 5, true);
  buf.set(encodeNatEntry(entry), 16);
  buf.set(encodeNatEntry({ ...entry, clientPort: 1 }), 16 + 64);
  const t = decodeNatTable(buf);
  assertEquals([t.count, t.total], [2, 5]);
  assertEquals(t.entries.map((e) => e.clientPort), [40000, 1]);
});

Deno.test("decodeNatInfo() reads GET_INFO's answer; encodeFlush() is the version", () => {
  const b = encodeInfoRequest();
  const v = new DataView(b.buffer);
  v.setUint32(4, 64, true);
  v.setUint32(8, 3, true);
  v.setUint32(12, 65536, true);
  v.setUint32(16, 1, true);
  v.setBigUint64(24, 10n, true);
  v.setBigUint64(32, 7n, true);
  v.setBigUint64(40, 1n, true);
  assertEquals(decodeNatInfo(b), {
    version: 1,
    entrySize: 64,
    count: 3,
    maxEntries: 65536,
    started: true,
    adds: 10n,
    dels: 7n,
    full: 1n,
  });
  assertEquals(hex(encodeFlush()), "01000000");
});

// The layout against the header itself, compiled by gcc (skipped where there is none).
const C_PROGRAM = `
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include "${HEADER}"
#define F(s, f) printf("%s %s %zu %zu\\n", #s, #f, offsetof(struct krelay_nat_##s, f), \\
                       sizeof(((struct krelay_nat_##s *)0)->f))
int main(void) {
  struct krelay_nat_entry e;
  unsigned char *p = (unsigned char *)&e;
  size_t i;
  printf("size entry %zu\\nsize info %zu\\nsize table %zu\\n", sizeof(struct krelay_nat_entry),
         sizeof(struct krelay_nat_info), sizeof(struct krelay_nat_table));
  F(entry, version); F(entry, protocol); F(entry, state); F(entry, flags);
  F(entry, client_addr); F(entry, client_port); F(entry, service_port); F(entry, relay_addr);
  F(entry, server_addr); F(entry, server_port); F(entry, relay_port); F(entry, reserved);
  F(entry, bytes_in); F(entry, bytes_out); F(entry, packets_in); F(entry, packets_out);
  F(info, version); F(info, entry_size); F(info, count); F(info, max_entries);
  F(info, started); F(info, reserved); F(info, adds); F(info, dels); F(info, full);
  F(table, version); F(table, count); F(table, total); F(table, reserved);
  printf("so SET_ADD %d\\nso SET_DEL %d\\nso SET_FLUSH %d\\n", KRELAY_SO_SET_ADD,
         KRELAY_SO_SET_DEL, KRELAY_SO_SET_FLUSH);
  printf("so GET_INFO %d\\nso GET_ENTRY %d\\nso GET_TABLE %d\\n", KRELAY_SO_GET_INFO,
         KRELAY_SO_GET_ENTRY, KRELAY_SO_GET_TABLE);
  printf("flag BY_RELAY_PORT %d\\nversion %d\\n", KRELAY_F_BY_RELAY_PORT, KRELAY_ABI_VERSION);
  memset(&e, 0, sizeof(e));
  e.version = KRELAY_ABI_VERSION; e.protocol = 6; e.state = KRELAY_STATE_ESTABLISHED;
  e.client_addr = inet_addr("198.51.100.10"); e.client_port = htons(40000);
  e.service_port = htons(80); e.relay_addr = inet_addr("198.51.100.1");
  e.server_addr = inet_addr("203.0.113.10"); e.server_port = htons(8080);
  e.relay_port = htons(20001); e.bytes_in = 0x0102030405060708ULL; e.bytes_out = 5;
  e.packets_in = 7; e.packets_out = 9;
  printf("bytes ");
  for (i = 0; i < sizeof(e); i++) printf("%02x", p[i]);
  printf("\\n");
  return 0;
}
`;

function which(cmd: string): boolean {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    try {
      if (Deno.statSync(`${dir}/${cmd}`).isFile) return true;
    } catch {
      // Not there.
    }
  }
  return false;
}

const noGcc = !which("gcc");

testOrSkip(noGcc ? "gcc is not installed" : undefined, {
  name: "LAYOUT, KRELAY_SO and encodeNatEntry() match krelay_abi.h as gcc compiles it",
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "krelay-abi-" });
    try {
      await Deno.writeTextFile(`${dir}/abi.c`, C_PROGRAM);
      const cc = await new Deno.Command("gcc", {
        args: ["-Wall", "-Wextra", "-Werror", "-o", `${dir}/abi`, `${dir}/abi.c`],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert(cc.success, new TextDecoder().decode(cc.stderr));
      const out = await new Deno.Command(`${dir}/abi`, { stdout: "piped" }).output();
      assert(out.success);
      const lines = new TextDecoder().decode(out.stdout).trim().split("\n").map((l) =>
        l.split(" ")
      );
      const structs = { entry: LAYOUT.entry, info: LAYOUT.info, table: LAYOUT.table };
      const seen = new Set<string>();
      for (const [kind, a, b, c] of lines) {
        if (kind === "size") {
          assertEquals(Number(b), structs[a as keyof typeof structs].size, `sizeof ${a}`);
        } else if (kind === "so") {
          assertEquals(Number(b), KRELAY_SO[a as keyof typeof KRELAY_SO], `KRELAY_SO_${a}`);
        } else if (kind === "flag") {
          assertEquals(Number(b), KRELAY_F_BY_RELAY_PORT);
        } else if (kind === "version") {
          assertEquals(Number(a), 1);
        } else if (kind === "bytes") {
          assertEquals(a, hex(encodeNatEntry(entry)), "bytes of the same entry");
        } else {
          const fields = structs[kind as keyof typeof structs].fields as Record<
            string,
            readonly [number, number]
          >;
          assertEquals([Number(b), Number(c)], fields[a], `${kind}.${a} offset and size`);
          seen.add(`${kind}.${a}`);
        }
      }
      const declared = Object.entries(structs).flatMap(([k, s]) =>
        Object.keys(s.fields).map((f) => `${k}.${f}`)
      );
      assertEquals([...seen].sort(), declared.sort(), "every field checked");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
