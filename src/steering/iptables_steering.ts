/**
 * Steering with iptables: krelay's chains are installed in one iptables-restore transaction
 * per table, and removed jump first, then chain.
 *
 * @module
 */

import { type CommandRunner, mustRun, runCommand } from "../system/command.ts";
import { logger } from "../system/log.ts";
import { removalCommands, renderRestoreScript } from "./iptables.ts";
import { NFT_TABLE, renderNatTable, renderNatUpdate } from "./nft.ts";
import { SkLookup, type SkLookupTarget } from "./sk_lookup.ts";
import type { Steering, SteeringSpec } from "./steering.ts";
import { routeInstallCommands, routeRemovalCommands } from "./tproxy_route.ts";

const log = logger("steering");

/** What hands the client's connections to the gateway listeners (sk_lookup.ts), if allowed. */
export interface ListenerSteering {
  update(target: SkLookupTarget, listeners: readonly number[]): void;
  close(): void;
}

/** Attaches the steering to the listeners; throws when the kernel refuses. */
export type AttachListeners = (
  target: SkLookupTarget,
  listeners: readonly number[],
) => ListenerSteering;

// A crashed run can leave at most a few duplicate jumps; this bounds the removal loop.
const MAX_STALE_JUMPS = 16;

/** The iptables tables krelay's chains go in (see iptables_rules.ts). */
const TABLES = ["raw", "mangle"] as const;

/**
 * The built-in chains of an iptables-nft table, given as `nft -j list table`, that hold no rule
 * and accept: iptables-nft made them for krelay's jumps and leaves them, each a hook every
 * packet passes. `all` tells whether the table holds nothing else.
 */
export function idleBuiltinChains(json: string): { chains: string[]; all: boolean } {
  let items: Record<string, Record<string, unknown>>[];
  try {
    items = JSON.parse(json).nftables ?? [];
  } catch {
    return { chains: [], all: false };
  }
  const busy = new Set<string>();
  const idle: string[] = [];
  let other = false;
  for (const item of items) {
    if (item.rule) busy.add(String(item.rule.chain));
    else if (item.chain) {
      const c = item.chain;
      if (c.hook !== undefined && c.policy === "accept") idle.push(String(c.name));
      else other = true;
    } else if (!item.metainfo && !item.table) other = true;
  }
  const chains = idle.filter((c) => !busy.has(c));
  return { chains, all: !other && chains.length === idle.length };
}

/**
 * {@link Steering} through the `iptables` and `iptables-restore` commands; with kernel_nat, also
 * an nftables table (`nft`) and a policy route (`ip`).
 */
export class IptablesSteering implements Steering {
  #listeners?: ListenerSteering;
  /** Said once: why TPROXY diverts instead of sk_lookup. */
  #fallbackLogged = false;

  constructor(
    private readonly run: CommandRunner = runCommand,
    private readonly iptables = "iptables",
    private readonly nft = "nft",
    private readonly ip = "ip",
    private readonly attachListeners: AttachListeners = (t, l) => SkLookup.attach(t, l),
  ) {}

  async install(spec: SteeringSpec): Promise<void> {
    await this.remove();
    try {
      // The NAT first: a flow the queue rules record must find its rewriting in place.
      if (spec.kernelNat) {
        this.#listeners = this.#attach(spec);
        const skLookup = this.#listeners !== undefined;
        await mustRun(this.run, this.nft, ["-f", "-"], renderNatTable(spec, skLookup));
        for (const args of routeInstallCommands()) await mustRun(this.run, this.ip, args);
      }
      await mustRun(
        this.run,
        `${this.iptables}-restore`,
        ["-w", "--noflush"],
        renderRestoreScript(spec),
      );
    } catch (e) {
      // A partial install (one table committed, the next refused) is undone.
      await this.remove();
      throw e;
    }
  }

  /** sk_lookup for `spec`'s listeners, or undefined (TPROXY then) when none or refused. */
  #attach(spec: SteeringSpec): ListenerSteering | undefined {
    if (!spec.listeners?.length) return undefined;
    try {
      const attached = this.attachListeners(spec, spec.listeners);
      log.info("TCP connections reach the gateway listener by sk_lookup");
      return attached;
    } catch (e) {
      if (!this.#fallbackLogged) {
        log.warn("TCP diverted by TPROXY: sk_lookup refused ({error})", { error: String(e) });
        this.#fallbackLogged = true;
      }
      return undefined;
    }
  }

  async update(spec: SteeringSpec): Promise<void> {
    if (spec.kernelNat) {
      // The program first: the rules then stop diverting only once it hands connections over.
      if (this.#listeners === undefined) this.#listeners = this.#attach(spec);
      else this.#listeners.update(spec, spec.listeners ?? []);
      const skLookup = this.#listeners !== undefined;
      await mustRun(this.run, this.nft, ["-f", "-"], renderNatUpdate(spec, skLookup));
    }
    await mustRun(
      this.run,
      `${this.iptables}-restore`,
      ["-w", "--noflush"],
      renderRestoreScript(spec, false),
    );
  }

  async remove(): Promise<void> {
    this.#listeners?.close();
    this.#listeners = undefined;
    for (const cmds of removalCommands()) {
      for (const jump of cmds.jumps) {
        for (let i = 0; i < MAX_STALE_JUMPS; i++) {
          if ((await this.run(this.iptables, jump)).code !== 0) break;
        }
      }
      await this.run(this.iptables, cmds.flush);
      await this.run(this.iptables, cmds.remove);
    }
    for (const table of TABLES) await this.#removeIdleTable(table);
    // Whichever mode installed it (or a crashed run left it); a missing nft is no error here.
    await this.run(this.nft, ["delete", "table", "ip", NFT_TABLE]);
    const route = routeRemovalCommands();
    for (let i = 0; i < MAX_STALE_JUMPS; i++) {
      if ((await this.run(this.ip, route.rule)).code !== 0) break;
    }
    await this.run(this.ip, route.routes);
  }

  /**
   * Removes what iptables-nft left of `table` for krelay's jumps: its empty, accepting built-in
   * chains (`nft delete chain` refuses a chain that got a rule meanwhile), then the table if
   * nothing else is in it. With iptables-legacy there is no such nft table: nothing to do.
   */
  async #removeIdleTable(table: string): Promise<void> {
    const list = await this.run(this.nft, ["-j", "list", "table", "ip", table]);
    if (list.code !== 0) return;
    const idle = idleBuiltinChains(list.stdout);
    for (const chain of idle.chains) {
      await this.run(this.nft, ["delete", "chain", "ip", table, chain]);
    }
    if (idle.all) await this.run(this.nft, ["delete", "table", "ip", table]);
  }

  /** True when any krelay chain exists (for checks and status). */
  async installed(): Promise<boolean> {
    for (const table of TABLES) {
      const r = await this.run(this.iptables, ["-w", "-t", table, "-S"]);
      if (r.code === 0 && /KRELAY_/.test(r.stdout)) return true;
    }
    return false;
  }
}
