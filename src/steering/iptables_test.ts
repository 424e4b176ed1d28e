import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { removalCommands, renderChainRules, renderRestoreScript } from "./iptables.ts";
import { labSpec } from "./_steering_spec.ts";

const spec = labSpec({ queue: 3 });

Deno.test("renderChainRules() queues U1, T1, T4 in raw PREROUTING and U3, T2, T3 in mangle POSTROUTING", () => {
  const q = "-m comment --comment krelay -j NFQUEUE --queue-num 3 --queue-bypass";
  assertEquals(renderChainRules(spec), {
    KRELAY_PRE: [
      `-d 198.51.100.1/32 -p udp -m multiport --dports 53 ${q}`,
      `-d 198.51.100.1/32 -p tcp -m multiport --dports 80 ${q}`,
      `-p tcp -m tcp --dport 20000:29999 -m multiport --sports 80 ${q}`,
    ],
    KRELAY_POST: [
      `-p udp -m multiport --sports 53 ${q}`,
      `-s 198.51.100.1/32 -p tcp -m multiport --sports 16000 ${q}`,
      `-p tcp -m tcp --sport 20000:29999 -m multiport --dports 80 ${q}`,
    ],
  });
});

Deno.test("renderChainRules() splits more than 15 ports over several multiport rules", () => {
  const ports = Array.from({ length: 20 }, (_, i) => 5000 + i);
  const rules = renderChainRules({ ...spec, udpPorts: ports });
  assertEquals(rules.KRELAY_PRE.length, 2 + 1 + 1);
  assert(rules.KRELAY_PRE[1].includes("--dports 5015,5016,5017,5018,5019 "));
});

Deno.test("renderRestoreScript() declares each chain, fills it, jumps to it and commits", () => {
  const script = renderRestoreScript({ ...spec, tcpPorts: [], gports: [] }).split("\n");
  assertEquals(script.slice(0, 5), [
    "*raw",
    ":KRELAY_PRE - [0:0]",
    "-A KRELAY_PRE -d 198.51.100.1/32 -p udp -m multiport --dports 53 -m comment --comment krelay -j NFQUEUE --queue-num 3 --queue-bypass",
    "-I PREROUTING 1 -j KRELAY_PRE",
    "COMMIT",
  ]);
  assertEquals(script[5], "*mangle");
  assertEquals(script.at(-2), "COMMIT");
});

Deno.test("removalCommands() deletes the jump before the chain it points to", () => {
  const [raw] = removalCommands();
  assertEquals(raw.jumps[0], ["-w", "-t", "raw", "-D", "PREROUTING", "-j", "KRELAY_PRE"]);
  assertEquals(raw.remove, ["-w", "-t", "raw", "-X", "KRELAY_PRE"]);
});

Deno.test("removalCommands() deletes every form of jump either mode or an earlier version made", () => {
  const mangle = removalCommands().find((c) =>
    c.remove.join(" ").endsWith("mangle -X KRELAY_PRE")
  )!;
  const deletes = mangle.jumps.map((j) => j.slice(3).join(" "));
  for (const kernelNat of [false, true]) {
    const made = renderRestoreScript({ ...spec, kernelNat }).split("\n")
      .filter((l) => l.startsWith("-I "));
    for (const line of made) {
      const rule = line.replace(/^-I (\w+) 1 /, "-D $1 ");
      if (rule.includes("KRELAY_PRE") && line.includes("PREROUTING")) {
        assert(deletes.includes(rule), `no removal for ${line}`);
      }
    }
  }
  // Earlier versions put a comment on their jumps: one a crashed run of them left is removed.
  assert(deletes.includes("-D PREROUTING -m comment --comment krelay -j KRELAY_PRE"));
});

Deno.test("renderRestoreScript() with kernel_nat: only marked UDP first packets take the jump", () => {
  const script = renderRestoreScript({ ...spec, kernelNat: true }).split("\n");
  assertEquals(script.filter((l) => l.startsWith("-I ")), [
    "-I PREROUTING 1 -p udp -m mark --mark 0x4b53 -j KRELAY_PRE",
  ]);
});

Deno.test("renderRestoreScript() without jumps only replaces the chains' rules", () => {
  const script = renderRestoreScript(spec, false);
  assertEquals(script.includes("-I PREROUTING"), false);
  assertEquals(script.includes("-I POSTROUTING"), false);
  assertEquals(script.split("\n").filter((l) => l.startsWith(":KRELAY_")).length, 2);
});

Deno.test("renderChainRules() with kernel_nat queues only the first packets nft_nat.ts marked", () => {
  const q = "-m comment --comment krelay -j NFQUEUE --queue-num 3 --queue-bypass";
  // No TCP at all: it goes by TPROXY.
  assertEquals(renderChainRules({ ...spec, kernelNat: true }), {
    KRELAY_PRE: [`-p udp -m mark --mark 0x4b53 ${q}`],
  });
  assertEquals(renderChainRules({ ...spec, kernelNat: true, udpPorts: [] }), { KRELAY_PRE: [] });
  // Nothing on the way out: the relay marks its sockets to servers itself.
  const script = renderRestoreScript({ ...spec, kernelNat: true });
  assertEquals(script.split("\n").filter((l) => l.startsWith("*")), ["*mangle"]);
  assertEquals(script.includes("KRELAY_POST"), false);
});

Deno.test("removalCommands() cleans krelay's chains wherever either mode put them", () => {
  const places = removalCommands().map((c) => `${c.remove[2]} ${c.remove[4]}`);
  assertEquals(places.sort(), ["mangle KRELAY_POST", "mangle KRELAY_PRE", "raw KRELAY_PRE"]);
});
