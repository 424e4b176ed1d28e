import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { Command } from "commander";
import { addConfigFlags, configFromFlags, legacyBooleanFlags } from "./config_flags.ts";
import { parseConfig } from "../config/schema.ts";

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
  assert(help.includes("--relay-cpu-affinity "), help);
  assert(help.includes("--no-relay-cpu-affinity "), help);
  assert(help.includes("[default: --relay-cpu-affinity]"), help);
});

Deno.test("configFromFlags() converts numbers and comma lists, and keeps bad text for validation", () => {
  assertEquals(parse(["--gport", "16001", "--udp-ports", "53,5353", "--real-ip", "203.0.113.10"]), {
    gport: 16001,
    udp_ports: [53, 5353],
    real_ip: "203.0.113.10",
  });
  assertEquals(parse(["--gport", "lots"]), { gport: "lots" });
});

Deno.test("a boolean key is --x / --no-x, and absent when neither is given", () => {
  assertEquals(parse(["--no-relay-cpu-affinity"]), { relay_cpu_affinity: false });
  assertEquals(parse(["--relay-cpu-affinity"]), { relay_cpu_affinity: true });
  assertEquals(parse([]), {});
});

Deno.test("tcp_hold_syn is --x / --no-x and --x auto|true|false, and refuses another word", () => {
  assertEquals(parse(["--tcp-hold-syn"]), { tcp_hold_syn: true });
  assertEquals(parse(["--no-tcp-hold-syn"]), { tcp_hold_syn: false });
  assertEquals(parse(["--tcp-hold-syn", "auto", "--gport", "1"]), {
    tcp_hold_syn: "auto",
    gport: 1,
  });
  assertEquals(parse(["--tcp-hold-syn=false"]), { tcp_hold_syn: false });
  assertEquals(parse(["--tcp-hold-syn", "--gport", "1"]), { tcp_hold_syn: true, gport: 1 });
  const bad = parseConfig(parse(["--tcp-hold-syn", "maybe"]));
  assertEquals(bad.ok ? [] : bad.errors, ["tcp_hold_syn: must be auto, true or false"]);
  const ok = parseConfig({});
  assertEquals(ok.ok && ok.config.tcp_hold_syn, "auto");
});

Deno.test("legacyBooleanFlags() rewrites --x true|false and --x=false, with a warning each", () => {
  const warnings: string[] = [];
  const out = legacyBooleanFlags(
    ["run", "--relay-cpu-affinity", "false", "--tcp-conntrack=true", "--gport", "true", "--x"],
    (m) => warnings.push(m),
  );
  assertEquals(out, [
    "run",
    "--no-relay-cpu-affinity",
    "--tcp-conntrack",
    "--gport",
    "true",
    "--x",
  ]);
  assertEquals(warnings.length, 2);
  assert(warnings[0].includes("deprecated") && warnings[0].includes("--no-relay-cpu-affinity"));
  assertEquals(parse(out.slice(1, 3)), { relay_cpu_affinity: false, tcp_conntrack: true });
});

Deno.test("legacyBooleanFlags() leaves a bare switch and everything after -- alone", () => {
  const warnings: string[] = [];
  const args = [
    "run",
    "--no-tcp-conntrack",
    "--relay-cpu-affinity",
    "--",
    "--tcp-conntrack",
    "false",
  ];
  assertEquals(legacyBooleanFlags(args, (m) => warnings.push(m)), args);
  assertEquals(warnings, []);
});
