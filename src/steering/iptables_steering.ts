/**
 * The queue selection by iptables rules (iptables.ts): krelay's chains are installed in one
 * iptables-restore transaction per table, and removed jump first, then chain.
 *
 * @module
 */

import { type CommandRunner, mustRun, runCommand } from "../system/command.ts";
import { type ChainId, neededChains, removalCommands, renderRestoreScript } from "./iptables.ts";
import type { Steering, SteeringSpec } from "./steering.ts";

// A crashed run can leave at most a few duplicate jumps; this bounds the removal loop.
const MAX_STALE_JUMPS = 16;

/** The iptables tables krelay's chains go in (see iptables.ts). */
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

/** {@link Steering}'s queue selection through the `iptables` and `iptables-restore` commands. */
export class IptablesSteering implements Steering {
  /** The chains installed now. */
  #installed = new Set<ChainId>();

  constructor(
    private readonly run: CommandRunner = runCommand,
    private readonly iptables = "iptables",
    private readonly nft = "nft",
  ) {}

  async install(spec: SteeringSpec): Promise<void> {
    await this.remove();
    try {
      await this.#restore(spec);
    } catch (e) {
      // A partial install (one table committed, the next refused) is undone.
      await this.remove();
      throw e;
    }
  }

  async update(spec: SteeringSpec): Promise<void> {
    const gone = [...this.#installed].filter((id) => !neededChains(spec).has(id));
    await this.#restore(spec);
    if (gone.length > 0) await this.#removeChains(gone);
  }

  async #restore(spec: SteeringSpec): Promise<void> {
    const script = renderRestoreScript(spec, this.#installed);
    if (script !== "") {
      await mustRun(this.run, `${this.iptables}-restore`, ["-w", "--noflush"], script);
    }
    this.#installed = neededChains(spec);
  }

  async remove(): Promise<void> {
    await this.#removeChains();
    for (const table of TABLES) await this.#removeIdleTable(table);
    this.#installed.clear();
  }

  async #removeChains(ids?: ChainId[]): Promise<void> {
    for (const cmds of removalCommands(ids)) {
      for (const jump of cmds.jumps) {
        for (let i = 0; i < MAX_STALE_JUMPS; i++) {
          if ((await this.run(this.iptables, jump)).code !== 0) break;
        }
      }
      await this.run(this.iptables, cmds.flush);
      await this.run(this.iptables, cmds.remove);
    }
    for (const id of ids ?? []) this.#installed.delete(id);
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
