import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { formatServer, MAX_SERVERS, parseServerList } from "./list.ts";

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
    // An IPv6 server is the IPv6 clients' one: no weight, and an IPv4 server is still needed.
    ["2001:db8::1@2", "2001:db8::1@2: weights and backups are for IPv4 servers"],
    ["2001:db8::1", "must include an IPv4 address like 203.0.113.10 (IPv6 is relayed beside IPv4)"],
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
