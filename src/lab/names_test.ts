import { deepStrictEqual as assertEquals, ok as assert, throws } from "node:assert/strict";
import {
  allLabNamespaces,
  assertPrefix,
  labNamespaces,
  OUR_PREFIXES,
  parseLabNamespace,
  parseNetnsList,
  randomTestPrefix,
} from "./names.ts";

Deno.test("labNamespaces() derives the three names, and srv2 only when asked", () => {
  assertEquals(labNamespaces("krl"), { client: "krl-cli", relay: "krl-rly", server: "krl-srv" });
  assertEquals(labNamespaces("krt-ab12", true).server2, "krt-ab12-srv2");
  assertEquals(allLabNamespaces("krl"), ["krl-cli", "krl-rly", "krl-srv", "krl-srv2"]);
});

Deno.test("assertPrefix() refuses names that could escape a path or confuse ip", () => {
  for (const bad of ["", "Krl", "-krl", "krl-", "kr l", "a/b", "a..b", "krl.x", "x".repeat(33)]) {
    throws(() => assertPrefix(bad), RangeError, bad);
  }
  for (const good of ["krl", "krt-0a9z", "a", "lab-2-x"]) assertPrefix(good);
});

Deno.test("randomTestPrefix() is a valid, distinct krt- prefix", () => {
  const seen = new Set<string>();
  for (let i = 0; i < 200; i++) {
    const p = randomTestPrefix();
    assertPrefix(p);
    assert(/^krt-[a-z0-9]{6}$/.test(p), p);
    assert(OUR_PREFIXES.test(p));
    seen.add(p);
  }
  assert(seen.size > 195);
});

Deno.test("parseLabNamespace() inverts labNamespaces() and ignores other names", () => {
  for (const [role, name] of Object.entries(labNamespaces("krt-x1", true))) {
    assertEquals(parseLabNamespace(name), { prefix: "krt-x1", role });
  }
  assertEquals(parseLabNamespace("kb-cli"), { prefix: "kb", role: "client" });
  for (const other of ["krt-x1", "cli", "-cli", "krt-x1-srv3", "KRT-cli", "a/b-rly"]) {
    assertEquals(parseLabNamespace(other), undefined, other);
  }
});

Deno.test("parseNetnsList() reads names with and without ids", () => {
  assertEquals(parseNetnsList("krl-srv (id: 2)\nkrl-rly (id: 1)\nplain\n\n"), [
    "krl-srv",
    "krl-rly",
    "plain",
  ]);
  assertEquals(parseNetnsList(""), []);
});
