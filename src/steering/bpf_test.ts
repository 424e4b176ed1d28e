/** The map element calls with byte keys and values, as root (bpf maps need it). */

import { deepStrictEqual as assertEquals, throws } from "node:assert/strict";
import { testOrSkip } from "../../tests/support/skip.ts";
import {
  closeQuietly,
  createMap,
  mapDelete,
  mapLookup,
  mapNextKey,
  MapType,
  mapUpdate,
  UpdateFlag,
} from "./bpf.ts";

testOrSkip(Deno.uid() === 0 ? undefined : "needs root (bpf maps)", {
  name: "map elements: update (flags), lookup, walk and delete with byte keys",
  fn() {
    const map = createMap(MapType.Hash, 2, 3, 8);
    try {
      const value = new Uint8Array(3);
      assertEquals(mapLookup(map, new Uint8Array([1, 2]), value), false);
      mapUpdate(map, new Uint8Array([1, 2]), new Uint8Array([7, 8, 9]));
      mapUpdate(map, new Uint8Array([3, 4]), new Uint8Array([1, 1, 1]), UpdateFlag.NoExist);
      throws(
        () => mapUpdate(map, new Uint8Array([3, 4]), new Uint8Array(3), UpdateFlag.NoExist),
        /exists/i,
      );
      assertEquals(mapLookup(map, new Uint8Array([1, 2]), value), true);
      assertEquals(value, new Uint8Array([7, 8, 9]));

      const keys: number[][] = [];
      const next = new Uint8Array(2);
      for (let key: Uint8Array | null = null; mapNextKey(map, key, next); key = next.slice()) {
        keys.push([...next]);
      }
      assertEquals(keys.sort((a, b) => a[0] - b[0]), [[1, 2], [3, 4]]);

      assertEquals(mapDelete(map, new Uint8Array([1, 2])), true);
      assertEquals(mapDelete(map, new Uint8Array([1, 2])), false);
    } finally {
      closeQuietly(map);
    }
  },
});
