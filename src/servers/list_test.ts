import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { foldIpv6, formatServer, MAX_SERVERS, ofFamily, parseServerList } from "./list.ts";

Deno.test("parseServerList reads one address as a list of one server", () => {
  assertEquals(parseServerList("203.0.113.10"), [
    { address: "203.0.113.10", family: 4, ip: 0xcb00710a, weight: 1, backup: false },
  ]);
});

Deno.test("parseServerList reads weights and backups, in order", () => {
  const list = parseServerList(
    " 203.0.113.10 ,203.0.113.20@3,203.0.113.30@backup,203.0.113.40@2@backup",
  );
  if (typeof list === "string") throw new Error(list);
  assertEquals(
    list.map((s) => [s.address, s.weight, s.backup]),
    [
      ["203.0.113.10", 1, false],
      ["203.0.113.20", 3, false],
      ["203.0.113.30", 1, true],
      ["203.0.113.40", 2, true],
    ],
  );
  assertEquals(
    list.map(formatServer).join(","),
    "203.0.113.10,203.0.113.20@3,203.0.113.30@backup,203.0.113.40@2@backup",
  );
});

Deno.test("parseServerList refuses bad lists, naming the entry at fault", () => {
  const cases: [string, string][] = [
    ["", "must name a server"],
    ["203.0.113.10,,203.0.113.20", "has an empty entry (two commas)"],
    ["203.0.113.300", "must be an IPv4 or IPv6 address like 203.0.113.10 or 2001:db8:2::10"],
    [
      "203.0.113.10,203.0.113.300",
      "203.0.113.300: must be an IPv4 or IPv6 address like 203.0.113.10 or 2001:db8:2::10",
    ],
    ["2001:db8::1,2001:DB8::1@2", "2001:db8::1: listed twice"],
    ["203.0.113.10,2001:db8::1@backup", "every IPv6 server is a backup: at least one must not be"],
    ["203.0.113.10@0", '203.0.113.10@0: "@0" must be a weight 1-256 or "backup"'],
    ["203.0.113.10@257", '203.0.113.10@257: "@257" must be a weight 1-256 or "backup"'],
    ["203.0.113.10@heavy", '203.0.113.10@heavy: "@heavy" must be a weight 1-256 or "backup"'],
    ["203.0.113.10,203.0.113.10@2", "203.0.113.10: listed twice"],
    ["203.0.113.10@backup", "every server is a backup: at least one must not be"],
    [
      Array.from({ length: MAX_SERVERS + 1 }, (_, i) => `203.0.113.${i + 1}`).join(","),
      "at most 64 servers",
    ],
  ];
  for (const [text, why] of cases) assertEquals(parseServerList(text), why, text);
});

Deno.test("parseServerList reads IPv6 servers with weights and backups, alone or beside IPv4", () => {
  const list = parseServerList("2001:DB8:2::10@3,203.0.113.10,2001:db8:2::20@backup");
  if (typeof list === "string") throw new Error(list);
  assertEquals(
    list.map((s) => [s.address, s.family, s.weight, s.backup]),
    [
      ["2001:db8:2::10", 6, 3, false],
      ["203.0.113.10", 4, 1, false],
      ["2001:db8:2::20", 6, 1, true],
    ],
  );
  assertEquals(ofFamily(list, 6).map((s) => s.address), ["2001:db8:2::10", "2001:db8:2::20"]);
  // IPv6 only: IPv4 clients are then not relayed.
  const six = parseServerList("2001:db8:2::10");
  if (typeof six === "string") throw new Error(six);
  assertEquals(six.map((s) => s.family), [6]);
  // The fold seeds the balancer's hash: two servers differ.
  assert(list[0].ip !== list[2].ip);
  assertEquals(foldIpv6(new Uint8Array(16).fill(1)), 0);
});
