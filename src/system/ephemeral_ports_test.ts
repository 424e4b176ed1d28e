import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { overlap } from "./ephemeral_ports.ts";

Deno.test("overlap() finds the shared part of two port ranges, or none", () => {
  assertEquals(overlap([20000, 29999], [32768, 60999]), undefined);
  assertEquals(overlap([20000, 40000], [32768, 60999]), [32768, 40000]);
  assertEquals(overlap([1024, 65000], [20000, 29999]), [20000, 29999]);
  assertEquals(overlap([5, 5], [5, 5]), [5, 5]);
});
