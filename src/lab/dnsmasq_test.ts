import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { dnsmasqArgs, parseDnsmasqLog } from "./dnsmasq.ts";

const BASE = {
  address: "203.0.113.20",
  name: "srv2",
  logPath: "/run/x/q.log",
  pidPath: "/run/x/d.pid",
};

Deno.test("dnsmasqArgs() uses no system configuration and logs queries to the file", () => {
  const argv = dnsmasqArgs(BASE);
  assertEquals(argv[0], "dnsmasq");
  for (
    const flag of [
      "--keep-in-foreground",
      "--conf-file=/dev/null",
      "--no-resolv",
      "--no-hosts",
      "--bind-interfaces",
      "--listen-address=203.0.113.20",
      "--port=53",
      "--log-queries=extra",
      "--log-facility=/run/x/q.log",
      "--address=/lab.example/203.0.113.80",
      "--txt-record=whoami.lab.example,srv2",
    ]
  ) {
    assert(argv.includes(flag), flag);
  }
});

Deno.test("dnsmasqArgs() takes other records and extra options", () => {
  const argv = dnsmasqArgs({
    ...BASE,
    port: 5353,
    a: { "x.test": "192.0.2.7" },
    txt: { "t.x.test": "hello" },
    extraArgs: ["--log-async"],
  });
  assert(argv.includes("--port=5353"));
  assert(argv.includes("--address=/x.test/192.0.2.7"));
  assert(!argv.some((a) => a.startsWith("--address=/lab.example/")));
  assert(argv.includes("--txt-record=t.x.test,hello"));
  assert(argv.includes("--txt-record=whoami.lab.example,srv2"));
  assertEquals(argv.at(-1), "--log-async");
});

Deno.test("parseDnsmasqLog() reads client address, port, type and name of each query", () => {
  const log = [
    "Nov 21 02:01:04 dnsmasq[15527]: started, version 2.90 cache disabled",
    "Nov 21 02:01:05 dnsmasq[15527]: 1 198.51.100.10/53130 query[A] lab.example from 198.51.100.10",
    "Nov 21 02:01:05 dnsmasq[15527]: 1 198.51.100.10/53130 config lab.example is 203.0.113.80",
    "Nov 21 02:01:05 dnsmasq[16085]: 2 198.51.100.11/4000 query[TXT] whoami.lab.example from 198.51.100.11",
    "Nov 21 02:01:06 dnsmasq[15527]: query[AAAA] plain.example from 198.51.100.10",
  ].join("\n");
  const q = parseDnsmasqLog(log);
  assertEquals(q.map((x) => [x.client, x.port, x.type, x.name]), [
    ["198.51.100.10", 53130, "A", "lab.example"],
    ["198.51.100.11", 4000, "TXT", "whoami.lab.example"],
    ["198.51.100.10", undefined, "AAAA", "plain.example"],
  ]);
});
