/**
 * End to end, as root: a packet script on IPv6 DNS, loaded into a running dual-stack krelay,
 * seen by real dig over IPv6. The script drops requests for one name and edits the AAAA
 * answers of the others; IPv6 packets of the scripted service go through the queue (ip6tables
 * rules added at load, removed at unload), and the kernel carries the service again after.
 */

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { LAB_ADDR, LAB_ADDR6 } from "../src/lab/addresses.ts";
import { run } from "../src/lab/process.ts";
import { startServers } from "../src/lab/servers.ts";
import type { Lab } from "../src/lab/topology.ts";
import { KRELAY, type KrelayRun, startKrelay } from "./support/krelay.ts";
import { labTest, type Requirement } from "./support/requirements.ts";

const NEEDS: Requirement[] = ["iptables", "dnsmasq", "dig", "libnetfilter_queue", "cmd:ip6tables"];
const R6 = LAB_ADDR6.relay;
const API = new URL("../src/script/api.ts", import.meta.url).pathname;
const DUAL_FLAGS = [
  "--real-ip",
  `${LAB_ADDR.server},${LAB_ADDR6.server}`,
  "--relay-ip",
  `${LAB_ADDR.relay},${LAB_ADDR6.relay}`,
];
/** What the script writes over the lab's AAAA answer (2001:db8:2::80). */
const EDITED = "2001:db8:2::99";

/** Drops IPv6 queries for blocked.lab.example; edits IPv6 AAAA answers; leaves IPv4 alone. */
const SCRIPT = `
import type { Packet, ScriptContext, Verdict } from "${API}";

const ANSWER = [0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80];

export function target(packet: Packet, ctx: ScriptContext): Verdict {
  if (packet.family !== 6) return "accept";
  const payload = packet.payload;
  if (ctx.hook === "request") {
    if (new TextDecoder().decode(payload).includes("blocked")) return "drop";
    return "accept";
  }
  for (let i = 0; i + 16 <= payload.length; i++) {
    if (ANSWER.every((b, j) => payload[i + j] === b)) payload[i + 15] = 0x99;
  }
  packet.payload = payload;
  console.log(
    \`reply \${packet.src} -> \${packet.dst} for \${ctx.flow.client.address} from \${ctx.flow.server.address}\`,
  );
  return "accept";
}
`;

function dig(lab: Lab, server: string, name: string, type: string) {
  return lab.exec("client", ["dig", "+time=1", "+tries=1", "+short", `@${server}`, name, type], {
    timeoutMs: 10_000,
  });
}

function krelay(k: KrelayRun, ...args: string[]) {
  return run([KRELAY, ...args, "--socket", k.socket], { timeoutMs: 90_000 });
}

async function queueRules(lab: Lab): Promise<string[]> {
  const r = await lab.exec("relay", ["ip6tables", "-w", "-t", "mangle", "-S"], { check: true });
  return r.stdout.split("\n").filter((l) => l.includes("--dports 53") || l.includes("--sports 53"));
}

labTest(
  "a packet script drops and edits IPv6 DNS seen by dig over IPv6; unloaded, the kernel NATs it",
  NEEDS,
  async (lab) => {
    await startServers(lab);
    const k = await startKrelay(lab, DUAL_FLAGS);
    const file = `${lab.runDir}/six.ts`;
    await Deno.writeTextFile(file, SCRIPT);
    assertEquals(await queueRules(lab), []);
    const load = await krelay(k, "script", "load", "six", file, "--on", "udp:53");
    assert(load.success, load.stderr + load.stdout);
    // Requests to the relay's IPv6 address and replies from port 53 are queued.
    const rules = await queueRules(lab);
    assertEquals(rules.length, 2, rules.join("\n"));
    assert(rules.some((l) => l.includes(`-d ${R6}/128`)), rules.join("\n"));

    assertEquals((await dig(lab, R6, "lab.example", "AAAA")).stdout.trim(), EDITED);
    const blocked = await dig(lab, R6, "blocked.lab.example", "AAAA");
    assert(/timed out/.test(blocked.stdout), blocked.stdout);
    // IPv4 passes the script unchanged.
    assertEquals(
      (await dig(lab, LAB_ADDR.relay, "lab.example", "A")).stdout.trim(),
      LAB_ADDR.dnsAnswer,
    );
    // The script saw the reply after NAT (from the relay), and the flow's IPv6 addresses.
    const lines = (await k.records())
      .filter((r) => r.properties?.script === "six" && typeof r.properties?.line === "string")
      .map((r) => r.properties!.line as string);
    assert(
      lines.some((l) =>
        l.startsWith(
          `reply ${R6} -> ${LAB_ADDR6.client} for ${LAB_ADDR6.client} from ${LAB_ADDR6.server}`,
        )
      ),
      lines.join("\n"),
    );
    const list = JSON.parse((await krelay(k, "script", "list", "--json")).stdout);
    assert(list[0].verdicts.dropped >= 1 && list[0].verdicts.changed >= 1, JSON.stringify(list));

    const unload = await krelay(k, "script", "unload", "six");
    assert(unload.success, unload.stderr);
    assertEquals(await queueRules(lab), []);
    assertEquals((await dig(lab, R6, "lab.example", "AAAA")).stdout.trim(), LAB_ADDR6.dnsAnswer);
    assertEquals(
      (await dig(lab, R6, "blocked.lab.example", "AAAA")).stdout.trim(),
      LAB_ADDR6.dnsAnswer,
    );
    assertEquals(await k.stop(), 0);
  },
  { timeoutMs: 120_000 },
);
