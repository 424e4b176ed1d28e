import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { Command } from "commander";
import { addConfigFlags, configFromFlags } from "./config_flags.ts";

function parse(argv: string[]): Record<string, unknown> {
  const cmd = addConfigFlags(new Command("run").exitOverride());
  cmd.parse(argv, { from: "user" });
  return configFromFlags(cmd.opts());
}

Deno.test("addConfigFlags() gives every config key a flag with its default in the help", () => {
  const help = addConfigFlags(new Command("run")).helpInformation().replace(/\s+/g, " ");
  for (const flag of ["--real-ip", "--relay-ip", "--gport", "--udp-ports", "--queue"]) {
    assert(help.includes(flag), flag);
  }
  assert(help.includes("[default: 16000]"));
});

Deno.test("configFromFlags() converts numbers and comma lists, and keeps bad text for validation", () => {
  assertEquals(parse(["--gport", "16001", "--udp-ports", "53,5353", "--real-ip", "203.0.113.10"]), {
    gport: 16001,
    udp_ports: [53, 5353],
    real_ip: "203.0.113.10",
  });
  assertEquals(parse(["--gport", "lots"]), { gport: "lots" });
});
