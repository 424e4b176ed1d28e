import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { nftElements } from "./nft_json.ts";

Deno.test("nftElements() gives the elements of the listed sets or maps of the kind asked, in order", () => {
  const json = JSON.stringify({
    nftables: [
      { metainfo: { json_schema_version: 1 } },
      { set: { name: "a", elem: [1, 2] } },
      { map: { name: "m", elem: [[3, "x"]] } },
      { set: { name: "b", elem: [4] } },
      { set: { name: "empty" } },
    ],
  });
  assertEquals(nftElements(json, "set"), [1, 2, 4]);
  assertEquals(nftElements(json, "map"), [[3, "x"]]);
});

Deno.test("nftElements() gives [] for output that is not JSON or lists nothing", () => {
  assertEquals(nftElements("", "set"), []);
  assertEquals(nftElements("Error: No such file or directory", "map"), []);
  assertEquals(nftElements("{}", "set"), []);
});
