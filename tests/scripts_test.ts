/**
 * End to end, as root: packet scripts in a running `krelay run` in the lab, with real dig and
 * curl through the relay: the examples (DNS blocklist, rate limiter, packet logger), failures
 * (a throwing script, a runaway one, a script that does not type-check), the sandbox, and
 * `krelay script load|unload|list` at runtime.
 */

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { LAB_ADDR, LAB_IF } from "../src/lab/addresses.ts";
import { run } from "../src/lab/process.ts";
import { startServers } from "../src/lab/servers.ts";
import type { Lab } from "../src/lab/topology.ts";
import { waitFor } from "../src/lab/wait.ts";
import type { ScriptInfo } from "../src/script/host.ts";
import { KRELAY, krelayRules, type KrelayRun, LAB_FLAGS, startKrelay } from "./support/krelay.ts";
import { labTest, type Requirement } from "./support/requirements.ts";

const NEEDS: Requirement[] = ["iptables", "dnsmasq", "dig", "libnetfilter_queue"];
const R = LAB_ADDR.relay;
const root = (path: string) => new URL(`../${path}`, import.meta.url).pathname;
const EXAMPLES = {
  blocklist: root("examples/dns_blocklist.ts"),
  rateLimiter: root("examples/rate_limiter.ts"),
  logger: root("examples/packet_logger.ts"),
};
const fixture = (name: string) => root(`src/script/_fixtures/${name}.ts`);

/** dig through the relay: one try, so that a dropped query shows as a timeout. */
function dig(lab: Lab, name = "lab.example", extra: string[] = []) {
  return lab.exec("client", ["dig", "+time=1", "+tries=1", `@${R}`, ...extra, name, "A"], {
    timeoutMs: 10_000,
  });
}

/** The answer's address, "" when there is none, or "timeout". */
async function answer(lab: Lab, name = "lab.example", extra: string[] = []): Promise<string> {
  const r = await dig(lab, name, ["+short", ...extra]);
  if (r.stdout.includes("timed out")) return "timeout";
  return r.stdout.trim();
}

/** Runs `krelay ARGS --socket ...` from the root namespace (the socket is a file). */
function krelay(k: KrelayRun, ...args: string[]) {
  return run([KRELAY, ...args, "--socket", k.socket], { timeoutMs: 90_000 });
}

async function scripts(k: KrelayRun): Promise<ScriptInfo[]> {
  const r = await krelay(k, "script", "list", "--json");
  if (!r.success) throw new Error(`krelay script list: ${r.stderr}`);
  return JSON.parse(r.stdout) as ScriptInfo[];
}

/** The script's console lines in krelay's JSON log. */
async function scriptLines(k: KrelayRun, name: string): Promise<string[]> {
  return (await k.records())
    .filter((r) => r.properties?.script === name && typeof r.properties?.line === "string")
    .map((r) => r.properties!.line as string);
}

/** A script of the test's own in the lab's run directory. */
async function writeScript(lab: Lab, name: string, text: string): Promise<string> {
  const file = `${lab.runDir}/${name}.ts`;
  await Deno.writeTextFile(file, text);
  return file;
}

labTest(
  "dns blocklist: a listed name gets NXDOMAIN from the relay, the others resolve",
  NEEDS,
  async (lab) => {
    const { srv1 } = await startServers(lab);
    // The answer leaves by the interface the query came in on, with the relay's own source.
    await lab.exec(
      "relay",
      ["sysctl", "-qw", `net.ipv4.conf.${LAB_IF.relayClient}.accept_local=1`],
      {
        check: true,
      },
    );
    const k = await startKrelay(lab, [
      ...LAB_FLAGS,
      "--script",
      EXAMPLES.blocklist,
      "--on",
      "udp:53",
    ]);
    const blocked = await dig(lab, "blocked.lab.example");
    assert(blocked.stdout.includes("status: NXDOMAIN"), blocked.stdout);
    assert(blocked.stdout.includes(`SERVER: ${R}#53`), blocked.stdout);
    const under = await dig(lab, "www.blocked.lab.example");
    assert(under.stdout.includes("status: NXDOMAIN"), under.stdout);
    assertEquals(await answer(lab, "lab.example"), LAB_ADDR.dnsAnswer);
    assertEquals(await answer(lab, "other.lab.example"), LAB_ADDR.dnsAnswer);
    const names = (await srv1.dns.queries()).map((q) => q.name);
    assert(!names.some((n) => n.includes("blocked")), `the server saw ${names.join(", ")}`);
    const [info] = await scripts(k);
    assertEquals([info.name, info.services, info.state], ["dns_blocklist", "udp:53", "enabled"]);
    assertEquals([info.matched, info.verdicts.changed, info.errors], [2, 2, 0]);
    const lines = await scriptLines(k, "dns_blocklist");
    assert(lines.some((l) => l.startsWith("blocked blocked.lab.example")), lines.join("\n"));
    assertEquals(await k.stop(), 0);
  },
);
