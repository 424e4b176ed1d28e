import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import {
  neededChains,
  removalCommands,
  renderChainRules,
  renderRestoreScript,
} from "./iptables.ts";
import { labSpec } from "./_steering_spec.ts";

const spec = labSpec({ queue: 3 });
const q = "-m comment --comment krelay -j NFQUEUE --queue-num 3 --queue-bypass";

Deno.test("renderChainRules() without scripts or held SYNs needs no chain: nft.ts's table queues", () => {
  // First packets and ICMP errors are queued by the nft table's own chain (nft_queue.ts).
  assertEquals(renderChainRules(spec), {});
  assertEquals(renderRestoreScript(spec), "");
  assertEquals(renderChainRules({ ...spec, udpPorts: [] }), {});
});

Deno.test("renderChainRules() queues every packet of scripted services both ways", () => {
  const rules = renderChainRules({ ...spec, scriptedUdpPorts: [53], scriptedTcpPorts: [80] });
  assertEquals(rules, {
    request: [
      `-d 198.51.100.1/32 -p udp -m multiport --dports 53 ${q}`,
      `-d 198.51.100.1/32 -p tcp -m multiport --dports 80 ${q}`,
    ],
    reply: [
      `-p udp -m multiport --sports 53 ${q}`,
      `-s 198.51.100.1/32 -p tcp -m multiport --sports 80 ${q}`,
    ],
  });
});

Deno.test("renderChainRules() splits more than 15 ports over several multiport rules", () => {
  const ports = Array.from({ length: 20 }, (_, i) => 5000 + i);
  const rules = renderChainRules({ ...spec, udpPorts: ports, scriptedUdpPorts: ports });
  assertEquals(rules.request!.length, 2);
  assert(rules.request![1].includes("--dports 5015,5016,5017,5018,5019 "));
});

Deno.test("renderRestoreScript() declares each chain, fills it, jumps to it and commits", () => {
  // The ICMP errors' chains left out (see above).
  const script = renderRestoreScript({ ...spec, scriptedUdpPorts: [53] }).split("\n")
    .filter((l) => !l.includes("ICMP"));
  assertEquals(script.slice(0, 5), [
    "*raw",
    ":KRELAY_PRE - [0:0]",
    `-A KRELAY_PRE -d 198.51.100.1/32 -p udp -m multiport --dports 53 ${q}`,
    "-I PREROUTING 1 -j KRELAY_PRE",
    "COMMIT",
  ]);
  assertEquals(script.slice(5), [
    "*mangle",
    ":KRELAY_POST - [0:0]",
    `-A KRELAY_POST -p udp -m multiport --sports 53 ${q}`,
    "-I POSTROUTING 1 -j KRELAY_POST",
    "COMMIT",
    "",
  ]);
});

Deno.test("renderRestoreScript() jumps to the held SYNs' chain by TCP SYNs only", () => {
  const script = renderRestoreScript({ ...spec, heldSynPorts: [80] }).split("\n");
  assertEquals(script, [
    "*mangle",
    ":KRELAY_SYN - [0:0]",
    `-A KRELAY_SYN -d 198.51.100.1/32 -p tcp -m multiport --dports 80 ${q}`,
    "-I PREROUTING 1 -p tcp --syn -j KRELAY_SYN",
    "COMMIT",
    "",
  ]);
});

Deno.test("renderRestoreScript() refills installed chains without a second jump", () => {
  const scripted = { ...spec, scriptedTcpPorts: [80] };
  const script = renderRestoreScript(scripted, neededChains(scripted));
  assert(!script.includes("-I "), script);
  assert(script.includes(":KRELAY_PRE - [0:0]"));
  // Only the chains not yet installed get their jump.
  const added = renderRestoreScript(scripted, new Set(["first", "icmpIn", "icmpOut"]));
  assertEquals(added.split("\n").filter((l) => l.startsWith("-I ")).sort(), [
    "-I POSTROUTING 1 -j KRELAY_POST",
    "-I PREROUTING 1 -j KRELAY_PRE",
  ]);
});

Deno.test("removalCommands() removes each chain's jumps in every form, then the chain", () => {
  const all = removalCommands();
  assertEquals(all.length, 6);
  const first = all[0];
  assertEquals(first.flush, ["-w", "-t", "mangle", "-F", "KRELAY_PRE"]);
  assertEquals(first.remove, ["-w", "-t", "mangle", "-X", "KRELAY_PRE"]);
  assert(first.jumps.some((j) => j.join(" ").includes("--mark 0x4b53 -j KRELAY_PRE")));
  assert(first.jumps.some((j) => j.join(" ") === "-w -t mangle -D PREROUTING -j KRELAY_PRE"));
  assertEquals(removalCommands(["reply"]).map((c) => c.remove), [
    ["-w", "-t", "mangle", "-X", "KRELAY_POST"],
  ]);
});

Deno.test("renderChainRules() queues clients' SYNs to TCP services when asked, scripted ones aside", () => {
  const held = renderChainRules({ ...spec, tcpPorts: [80, 443], heldSynPorts: [80, 443] });
  assertEquals(held.syn, [`-d 198.51.100.1/32 -p tcp -m multiport --dports 80,443 ${q}`]);
  // A scripted service's SYNs come with its every segment.
  const scripted = renderChainRules({
    ...spec,
    tcpPorts: [80, 443],
    scriptedTcpPorts: [443],
    heldSynPorts: [80, 443],
  });
  assertEquals(scripted.syn, [`-d 198.51.100.1/32 -p tcp -m multiport --dports 80 ${q}`]);
  assertEquals(renderChainRules({ ...spec, tcpPorts: [80] }).syn, undefined);
  // Only the services in doubt (tcp_hold_syn auto), and only those relayed.
  const some = renderChainRules({ ...spec, tcpPorts: [80, 443], heldSynPorts: [443, 8080] });
  assertEquals(some.syn, [`-d 198.51.100.1/32 -p tcp -m multiport --dports 443 ${q}`]);
  const script = renderRestoreScript({ ...spec, tcpPorts: [80], heldSynPorts: [80] });
  assert(script.includes("-I PREROUTING 1 -p tcp --syn -j KRELAY_SYN\n"), script);
});

Deno.test("renderChainRules() spreads held SYNs over the relay threads' queues by CPU", () => {
  const spread = (count: number) =>
    renderChainRules({
      ...spec,
      tcpPorts: [80],
      heldSynPorts: [80],
      heldSynQueues: { base: 1, count },
    }).syn;
  const target = "-m comment --comment krelay -j NFQUEUE";
  assertEquals(spread(2), [
    `-d 198.51.100.1/32 -p tcp -m multiport --dports 80 ${target} --queue-balance 1:2 ` +
    "--queue-cpu-fanout --queue-bypass",
  ]);
  // One CPU: its queue alone.
  assertEquals(spread(1), [
    `-d 198.51.100.1/32 -p tcp -m multiport --dports 80 ${target} --queue-num 1 --queue-bypass`,
  ]);
});
