/**
 * `krelay lab`: builds a client / relay / real-server lab of network namespaces with dnsmasq
 * and nginx on the server, runs krelay in the relay namespace, and shows a real `dig` and a real
 * `curl` from the client answered through the relay, over IPv4 and over IPv6 (dual stack). With `--keep` it stays up for exploring until Ctrl-C.
 *
 * @module
 */

import { Command } from "commander";
import { LAB_ADDR, LAB_ADDR6 } from "../lab/addresses.ts";
import { LAB_RELAY_FLAGS_DUAL, spawnKrelay } from "../lab/krelay_process.ts";
import { CLI_LAB_PREFIX } from "../lab/names.ts";
import { run } from "../lab/process.ts";
import { type LabServers, startServers } from "../lab/servers.ts";
import { Lab } from "../lab/topology.ts";
import { waitFor } from "../lab/wait.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

function say(text: string): void {
  console.log(text);
}

/** One address family of the lab, as the demo shows it. */
interface Family {
  name: string;
  client: string;
  relay: string;
  server: string;
  /** The record type dig asks for, and what the lab's DNS answers. */
  type: string;
  answer: string;
  /** The relay's address as a URL host. */
  host: string;
}

const FAMILIES: readonly Family[] = [
  {
    name: "IPv4",
    client: LAB_ADDR.client,
    relay: LAB_ADDR.relay,
    server: LAB_ADDR.server,
    type: "A",
    answer: LAB_ADDR.dnsAnswer,
    host: LAB_ADDR.relay,
  },
  {
    name: "IPv6",
    client: LAB_ADDR6.client,
    relay: LAB_ADDR6.relay,
    server: LAB_ADDR6.server,
    type: "AAAA",
    answer: LAB_ADDR6.dnsAnswer,
    host: `[${LAB_ADDR6.relay}]`,
  },
];

/** A real dig and a real curl through the relay over one family; true when both were answered. */
async function showFamily(lab: Lab, srv1: LabServers["srv1"], f: Family): Promise<boolean> {
  say(`\n--- ${f.name} ---`);
  const digArgs = ["dig", "+time=2", "+tries=1", `@${f.relay}`, "lab.example", f.type];
  say(`$ ip netns exec ${lab.ns.client} ${digArgs.join(" ")}`);
  const dig = await lab.exec("client", digArgs, { timeoutMs: 10_000 });
  say(dig.stdout.trim());
  const query = await srv1.dns.waitForQuery(
    (q) => q.name === "lab.example" && q.type === f.type,
    5_000,
  ).catch(() => undefined);
  say(`\nthe real server (dnsmasq on ${f.server}) saw the query from ${query?.client}`);
  const digOk = dig.stdout.includes(f.answer) && dig.stdout.includes(`SERVER: ${f.relay}#53`) &&
    query?.client === f.client;

  const curlArgs = ["curl", "-sS", "--max-time", "5", `http://${f.host}/`];
  say(`\n$ ip netns exec ${lab.ns.client} ${curlArgs.join(" ")}`);
  const curl = await lab.exec("client", curlArgs, { timeoutMs: 10_000 });
  say(curl.stdout.trim() || curl.stderr.trim());
  const hit = await srv1.web.waitForRequest((e) => e.remoteAddr === f.client, 5_000)
    .catch(() => undefined);
  say(`the real server (nginx on ${f.server}) logged the request from ${hit?.remoteAddr}`);
  return digOk && curl.stdout === srv1.web.indexText && hit !== undefined;
}

async function demo(keep: boolean): Promise<number> {
  if (Deno.uid() !== 0) {
    console.error("krelay lab: needs root (it creates network namespaces)");
    return 1;
  }
  // From the repository, the lab installs what it needs; the single file and the .deb carry no
  // installer: dnsmasq, nginx, dig and curl must be there already (the lab says which is not).
  const installer = `${ROOT}tools/install-deps.sh`;
  if (await Deno.stat(installer).then(() => true, () => false)) {
    const deps = await run(["bash", installer], { timeoutMs: 900_000 });
    if (!deps.success) {
      console.error(`krelay lab: installing dependencies failed:\n${deps.stderr}`);
      return 1;
    }
  }
  const lab = new Lab({ prefix: CLI_LAB_PREFIX });
  let stopping = false;
  const onSignal = () => {
    if (!stopping) say("\nstopping the lab...");
    stopping = true;
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  try {
    await lab.up();
    say(
      `lab up: client ${lab.ns.client} (${LAB_ADDR.client}), relay ${lab.ns.relay} ` +
        `(${LAB_ADDR.relay} | ${LAB_ADDR.relayServerSide}), server ${lab.ns.server} ` +
        `(${LAB_ADDR.server}); IPv6 too: ${LAB_ADDR6.client}, ${LAB_ADDR6.relay} | ` +
        `${LAB_ADDR6.relayServerSide}, ${LAB_ADDR6.server}`,
    );
    const { srv1 } = await startServers(lab);
    say(`servers: dnsmasq and nginx on ${LAB_ADDR.server} and ${LAB_ADDR6.server}`);
    const krelay = await spawnKrelay(lab, LAB_RELAY_FLAGS_DUAL);
    say(`krelay relaying both families (log: ${krelay.logPath})`);
    let answered = true;
    for (const family of FAMILIES) {
      answered = await showFamily(lab, srv1, family) && answered;
    }
    say(
      answered
        ? "\nOK: DNS and HTTP answered through the relay over IPv4 and IPv6, and the server saw " +
          "the client's address"
        : "\nFAILED",
    );
    if (keep && answered) {
      say(
        `\nThe lab stays up; try:\n  ip netns exec ${lab.ns.client} dig @${LAB_ADDR.relay} lab.example` +
          `\n  ip netns exec ${lab.ns.client} curl http://${LAB_ADDR.relay}/` +
          `\n  ip netns exec ${lab.ns.client} dig @${LAB_ADDR6.relay} lab.example AAAA` +
          `\n  ip netns exec ${lab.ns.client} curl http://[${LAB_ADDR6.relay}]/` +
          `\n  ip netns exec ${lab.ns.relay} iptables -t raw -S\nCtrl-C stops krelay and removes the lab.`,
      );
      await waitFor(() => stopping || !krelay.running, {
        timeoutMs: 7 * 86_400_000,
        intervalMs: 200,
        what: "Ctrl-C",
      });
    }
    await krelay.stop();
    return answered ? 0 : 1;
  } catch (e) {
    console.error(`krelay lab: ${(e as Error).message}`);
    return 1;
  } finally {
    await lab.down();
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
    say("lab removed");
  }
}

/** The `lab` command. */
export function labCli(): Command {
  return new Command("lab")
    .description(
      "build a lab (client, relay and real-server network namespaces with dnsmasq and nginx), " +
        "run krelay in it and show dig answered through the relay; needs root",
    )
    .option("--keep", "keep the lab running until Ctrl-C")
    .action(async (options: { keep?: boolean }) => {
      Deno.exit(await demo(options.keep === true));
    });
}
