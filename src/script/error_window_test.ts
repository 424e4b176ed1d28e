import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { ErrorWindow } from "./error_window.ts";

Deno.test("ErrorWindow trips at max errors within the window, not when they are spread out", () => {
  const w = new ErrorWindow(3, 1000);
  assertEquals([w.add(0), w.add(500), w.add(1500)], [false, false, false]);
  assertEquals(w.add(1600), false, "500, 1500, 1600: 1100 ms apart");
  assertEquals(w.add(1700), true, "1500, 1600, 1700");
  assertEquals(w.recent(1700), 3);
  assertEquals(w.recent(5000), 0);
});

Deno.test("ErrorWindow with max 1 trips on the first error", () => {
  assertEquals(new ErrorWindow(1, 1).add(42), true);
});
