import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { parseIpv6Flows, readIpv6Flows } from "./ipv6_flows.ts";

// What nft 1.0.6 printed for the set with one flow.
const LISTED =
  `{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}}, {"set": {"family": "ip6", "name": "udp_replies", "table": "krelay", "type": ["ipv6_addr", "inet_service", "ipv6_addr", "inet_service"], "handle": 5, "size": 65536, "flags": ["timeout"], "elem": [{"elem": {"val": {"concat": ["2001:db8:2::10", 53, "2001:db8:1::10", 40000]}, "timeout": 30, "expires": 29}}]}}]}`;

Deno.test("parseIpv6Flows() reads each flow's whole tuple and expiry", () => {
  assertEquals(parseIpv6Flows(LISTED), [{
    client: "2001:db8:1::10",
    clientPort: 40000,
    server: "2001:db8:2::10",
    servicePort: 53,
    expiresSeconds: 29,
    timeoutSeconds: 30,
  }]);
  assertEquals(parseIpv6Flows(LISTED.replace(/"elem": \[.*\]\}\}\]\}$/, '"x": 1}}]}')), []);
  assertEquals(parseIpv6Flows("not json"), []);
});

Deno.test("readIpv6Flows() asks nft for the ip6 table's set, and is empty without it", async () => {
  const asked: string[] = [];
  const flows = await readIpv6Flows((cmd, args) => {
    asked.push(`${cmd} ${args.join(" ")}`);
    return Promise.resolve({ code: 1, stdout: "", stderr: "No such file or directory" });
  });
  assertEquals([asked, flows], [["nft -j list set ip6 krelay udp_replies"], []]);
});
