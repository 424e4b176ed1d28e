/**
 * The `krelay` command line: every command, with `--help` on each.
 *
 * Exit codes: 0 done; 1 krelay failed, refused, or could not be reached; 2 a usage error (an
 * unknown command or flag) or a configuration that is not valid.
 *
 * @module
 */

import { Command } from "commander";
import { completionCli } from "./completion.ts";
import { legacyBooleanFlags } from "./config_flags.ts";
import { configCli, natCli, startCli, statusCli, stopCli, usageExit } from "./control_cli.ts";
import { kmodCli } from "./kmod_cli.ts";
import { labCli } from "./lab_cli.ts";
import { runCli } from "./run_cli.ts";
import { scriptCli } from "./script_cli.ts";
import { VERSION, versionCli } from "./version.ts";

/** The program with all commands. */
export function program(): Command {
  const root: Command = new Command("krelay")
    .description(
      "Transparent TCP/UDP relay for Linux: clients talk to the relay, the real server sees the " +
        "clients' own addresses.",
    )
    .version(`krelay ${VERSION}`, "-V, --version", "print krelay's version")
    .addCommand(runCli())
    .addCommand(statusCli())
    .addCommand(natCli())
    .addCommand(configCli())
    .addCommand(startCli())
    .addCommand(stopCli())
    .addCommand(scriptCli())
    .addCommand(kmodCli())
    .addCommand(labCli())
    .addCommand(versionCli())
    .addCommand(completionCli(() => root));
  usageExits(root, "");
  return root;
}

/**
 * Commander exits 1 on a usage error (an unknown command or option, a missing argument); every
 * krelay command exits 2 instead (see the module doc), and points at its own --help.
 */
function usageExits(command: Command, path: string): void {
  usageExit(command, path);
  for (const sub of command.commands) {
    usageExits(sub, path === "" ? sub.name() : `${path} ${sub.name()}`);
  }
}

/** Runs the command line `args` (deprecated boolean forms rewritten first, with a warning). */
export async function main(args: readonly string[]): Promise<void> {
  await program().parseAsync(legacyBooleanFlags(args), { from: "user" });
}
