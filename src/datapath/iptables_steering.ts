/**
 * Steering with iptables: krelay's chains are installed in one iptables-restore transaction
 * per table, and removed jump first, then chain.
 *
 * @module
 */

import { type CommandRunner, mustRun, runCommand } from "../system/command.ts";
import { removalCommands, renderRestoreScript } from "./iptables_rules.ts";
import { NFT_TABLE, renderNatTable, renderNatUpdate } from "./nft_nat.ts";
import type { Steering, SteeringSpec } from "./steering.ts";
import { routeInstallCommands, routeRemovalCommands } from "./tproxy_route.ts";

// A crashed run can leave at most a few duplicate jumps; this bounds the removal loop.
const MAX_STALE_JUMPS = 16;

/**
 * {@link Steering} through the `iptables` and `iptables-restore` commands; with kernel_nat, also
 * an nftables table (`nft`) and a policy route (`ip`).
 */
export class IptablesSteering implements Steering {
  constructor(
    private readonly run: CommandRunner = runCommand,
    private readonly iptables = "iptables",
    private readonly nft = "nft",
    private readonly ip = "ip",
  ) {}

  async install(spec: SteeringSpec): Promise<void> {
    await this.remove();
    try {
      // The NAT first: a flow the queue rules record must find its rewriting in place.
      if (spec.kernelNat) {
        await mustRun(this.run, this.nft, ["-f", "-"], renderNatTable(spec));
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

  async update(spec: SteeringSpec): Promise<void> {
    if (spec.kernelNat) await mustRun(this.run, this.nft, ["-f", "-"], renderNatUpdate(spec));
    await mustRun(
      this.run,
      `${this.iptables}-restore`,
      ["-w", "--noflush"],
      renderRestoreScript(spec, false),
    );
  }

  async remove(): Promise<void> {
    for (const cmds of removalCommands()) {
      for (let i = 0; i < MAX_STALE_JUMPS; i++) {
        if ((await this.run(this.iptables, cmds.jump)).code !== 0) break;
      }
      await this.run(this.iptables, cmds.flush);
      await this.run(this.iptables, cmds.remove);
    }
    // Whichever mode installed it (or a crashed run left it); a missing nft is no error here.
    await this.run(this.nft, ["delete", "table", "ip", NFT_TABLE]);
    const route = routeRemovalCommands();
    for (let i = 0; i < MAX_STALE_JUMPS; i++) {
      if ((await this.run(this.ip, route.rule)).code !== 0) break;
    }
    await this.run(this.ip, route.routes);
  }

  /** True when any krelay chain exists (for checks and status). */
  async installed(): Promise<boolean> {
    for (const table of ["raw", "mangle"]) {
      const r = await this.run(this.iptables, ["-w", "-t", table, "-S"]);
      if (r.code === 0 && /KRELAY_/.test(r.stdout)) return true;
    }
    return false;
  }
}
