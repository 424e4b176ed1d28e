import { deepStrictEqual as assertEquals } from "node:assert/strict";
import {
  evictionScript,
  flowKey,
  parseUdpMap,
  pickEvictions,
  readFlows,
} from "./kernel_udp_flows.ts";
import type { CommandRunner } from "../system/command.ts";

// As nft 1.0.6 lists a map (`nft -j list map ip krelay udp_flows`).
const map = (name: string, elems: string) =>
  `{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}}, {"map": {"family": "ip", "name": "${name}", "table": "krelay", "type": ["ipv4_addr", "inet_service", "inet_service"], "handle": 2, "map": "ipv4_addr", "size": 256, "flags": ["timeout"], "elem": [${elems}]}}]}`;
const elem = (client: string, port: number, expires: number, server = "203.0.113.10") =>
  `[{"elem": {"val": {"concat": ["${client}", ${port}, 53]}, "timeout": 30, "expires": ${expires}}}, "${server}"]`;

Deno.test("parseUdpMap() reads the flows of a listed map; nothing from an empty or bad listing", () => {
  assertEquals(parseUdpMap(map("udp_flows", elem("198.51.100.10", 40000, 29))), [
    {
      client: "198.51.100.10",
      clientPort: 40000,
      servicePort: 53,
      server: "203.0.113.10",
      expiresSeconds: 29,
    },
  ]);
  assertEquals(parseUdpMap(map("udp_flows", "")), []);
  assertEquals(parseUdpMap("not json"), []);
});

Deno.test("readFlows() marks the flows udp_answered has; pickEvictions() takes the idlest unanswered ones only", async () => {
  const asked: string[] = [];
  const run: CommandRunner = (cmd, args) => {
    asked.push([cmd, ...args].join(" "));
    const name = args.at(-1)!;
    const stdout = name === "udp_flows"
      ? map(
        name,
        [elem("198.51.100.10", 1, 20), elem("198.51.100.10", 2, 5), elem("198.51.100.10", 3, 1)]
          .join(","),
      )
      : map(name, elem("198.51.100.10", 3, 29));
    return Promise.resolve({ code: 0, stdout, stderr: "" });
  };
  const flows = await readFlows(run);
  assertEquals(asked, [
    "nft -j list map ip krelay udp_flows",
    "nft -j list map ip krelay udp_answered",
  ]);
  assertEquals(flows.map((f) => [f.clientPort, f.answered]), [[1, false], [2, false], [3, true]]);
  // Port 3 is the idlest, but answered: never taken while unanswered ones are there.
  assertEquals(pickEvictions(flows, 1).map((f) => f.clientPort), [2]);
  assertEquals(pickEvictions(flows, 5).map((f) => f.clientPort), [2, 1]);
  assertEquals(pickEvictions(flows, 0), []);
  assertEquals(flowKey("198.51.100.10", 3, 53), "198.51.100.10:3:53");
});

Deno.test("evictionScript() adds then deletes both entries of each flow, so a flow gone meanwhile fails nothing", () => {
  const flows = parseUdpMap(map("udp_flows", elem("198.51.100.10", 40000, 29)));
  assertEquals(
    evictionScript(flows),
    "add element ip krelay udp_flows { 198.51.100.10 . 40000 . 53 timeout 1s : 203.0.113.10 }\n" +
      "delete element ip krelay udp_flows { 198.51.100.10 . 40000 . 53 }\n" +
      "add element ip krelay udp_replies { 203.0.113.10 . 53 . 198.51.100.10 . 40000 timeout 1s }\n" +
      "delete element ip krelay udp_replies { 203.0.113.10 . 53 . 198.51.100.10 . 40000 }\n",
  );
  assertEquals(evictionScript([]), "");
});
