/**
 * Many clients of one family in the lab's client namespace (16 addresses, dig -b and curl
 * --interface), and which real server answers each: what the balancing tests of both families
 * ask of the lab.
 *
 * @module
 */

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { LAB_ADDR, LAB_ADDR6, LAB_IF } from "../../src/lab/addresses.ts";
import { run } from "../../src/lab/process.ts";
import type { Lab } from "../../src/lab/topology.ts";
import { waitFor } from "../../src/lab/wait.ts";
import { type LabServers, type ServerPair, startServers } from "../../src/lab/servers.ts";
import type { ServerView } from "../../src/daemon/servers.ts";
import { KRELAY, type KrelayRun, startKrelay } from "./krelay.ts";

/** A client's answers: which server ("srv1", "srv2") gave its DNS answer and its web page. */
export interface Served {
  dns: string;
  web: string;
}

/** Sixteen client addresses of one family: 198.51.100.100-115, or 2001:db8:1::100-10f. */
export class ManyClients {
  /** The client addresses. */
  readonly addresses: readonly string[];
  /** The relay's address the clients talk to. */
  readonly relay: string;

  constructor(readonly family: 4 | 6) {
    this.addresses = Array.from(
      { length: 16 },
      (_, i) => family === 4 ? `198.51.100.${100 + i}` : `2001:db8:1::${(0x100 + i).toString(16)}`,
    );
    this.relay = family === 4 ? LAB_ADDR.relay : LAB_ADDR6.relay;
  }

  /** Adds the addresses to the client namespace's interface. */
  async add(lab: Lab): Promise<void> {
    for (const a of this.addresses) {
      const args = this.family === 4
        ? ["ip", "addr", "add", `${a}/24`, "dev", LAB_IF.host]
        : ["ip", "-6", "addr", "add", `${a}/64`, "dev", LAB_IF.host, "nodad"];
      await lab.exec("client", args, { check: true });
    }
  }

  /** Which server answers a DNS query from `source` (address or address#port); "" for none. */
  async dnsFrom(lab: Lab, source: string): Promise<string> {
    const r = await lab.exec("client", [
      "dig",
      "+time=1",
      "+tries=1",
      "+short",
      "-b",
      source,
      `@${this.relay}`,
      "whoami.lab.example",
      "TXT",
    ], { timeoutMs: 10_000 });
    return r.stdout.trim().replaceAll('"', "");
  }

  /** Which server's page `client` gets over HTTP (a key of `index`), or curl's error. */
  async webFrom(lab: Lab, client: string, index: Record<string, string>): Promise<string> {
    const host = this.family === 4 ? this.relay : `[${this.relay}]`;
    const r = await lab.exec("client", [
      "curl",
      "-sS",
      "--max-time",
      "3",
      "--interface",
      client,
      `http://${host}/`,
    ], { timeoutMs: 10_000 });
    return Object.keys(index).find((id) => index[id] === r.stdout) ?? `error: ${r.stderr.trim()}`;
  }

  /** Every client's DNS and web server, by client. */
  async whoServes(lab: Lab, index: Record<string, string>): Promise<Record<string, Served>> {
    return Object.fromEntries(
      await Promise.all(this.addresses.map(async (c) => {
        const [dns, web] = await Promise.all([this.dnsFrom(lab, c), this.webFrom(lab, c, index)]);
        return [c, { dns, web }] as const;
      })),
    );
  }

  /**
   * Adds the clients, starts both lab servers (dnsmasq and nginx each) and krelay with `flags`.
   * `index` tells the servers' pages apart.
   */
  async start(lab: Lab, flags: string[]) {
    await this.add(lab);
    const servers: LabServers = await startServers(lab);
    const index = { srv1: servers.srv1.web.indexText, srv2: servers.srv2!.web.indexText };
    const k = await startKrelay(lab, flags);
    return { ...servers, srv2: servers.srv2!, index, k };
  }

  /**
   * Stops `srv2`'s servers: within 10 s krelay `k` has it down (srv1 still up), and every client
   * is then answered by srv1.
   */
  async assertFailover(lab: Lab, k: KrelayRun, srv2: ServerPair, index: Record<string, string>) {
    const killed = performance.now();
    await Promise.all([srv2.dns.stop(), srv2.web.stop()]);
    await waitFor(async () => {
      const s = await serversOf(k);
      return s[1].state === "down" && s[0].state === "up";
    }, { timeoutMs: 12_000, intervalMs: 200, what: "srv2 down in status" });
    const downAfter = performance.now() - killed;
    assert(downAfter < 10_000, `srv2 out of rotation after ${downAfter} ms`);
    const during = await this.whoServes(lab, index);
    for (const c of this.addresses) assertEquals(during[c], { dns: "srv1", web: "srv1" }, c);
  }

  /**
   * Once krelay `k` has both servers up: every client is answered by srv1 or srv2, its DNS and
   * web by the same one, both servers have clients, and the same again. Who serves whom.
   */
  async assertSpread(
    lab: Lab,
    k: KrelayRun,
    index: Record<string, string>,
  ): Promise<Record<string, Served>> {
    await waitFor(async () => (await serversOf(k)).every((s) => s.state === "up"), {
      timeoutMs: 10_000,
      what: "both servers up",
    });
    const before = await this.whoServes(lab, index);
    for (const c of this.addresses) {
      assert(["srv1", "srv2"].includes(before[c].dns), `${c}: ${JSON.stringify(before[c])}`);
      assertEquals(before[c].web, before[c].dns, c);
    }
    const on2 = this.addresses.filter((c) => before[c].dns === "srv2");
    assert(on2.length > 0 && on2.length < this.addresses.length, `srv2 has ${on2.length} clients`);
    assertEquals(await this.whoServes(lab, index), before);
    return before;
  }
}

/** `krelay ARGS --json` against a running krelay, parsed. */
export async function krelayJson<T>(k: KrelayRun, ...args: string[]): Promise<T> {
  const r = await run([KRELAY, ...args, "--socket", k.socket, "--json"], { timeoutMs: 30_000 });
  if (!r.success) throw new Error(`krelay ${args.join(" ")}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

/** The servers `krelay status --json` lists. */
export async function serversOf(k: KrelayRun): Promise<ServerView[]> {
  return (await krelayJson<{ servers: ServerView[] }>(k, "status")).servers;
}
