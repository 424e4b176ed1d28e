/**
 * The `krelay` command line: every command, with `--help` on each.
 *
 * @module
 */

import { Command } from "commander";
import { configCli, natCli, startCli, statusCli, stopCli } from "./control_cli.ts";
import { kmodCli } from "./kmod_cli.ts";
import { labCli } from "./lab_cli.ts";
import { runCli } from "./run_cli.ts";
import { scriptCli } from "./script_cli.ts";

/** The program with all commands. */
export function program(): Command {
  return new Command("krelay")
    .description(
      "Transparent TCP/UDP relay for Linux: clients talk to the relay, the real server sees the " +
        "clients' own addresses. Packets are rewritten in user space through NFQUEUE.",
    )
    .showHelpAfterError()
    .addCommand(runCli())
    .addCommand(statusCli())
    .addCommand(natCli())
    .addCommand(configCli())
    .addCommand(startCli())
    .addCommand(stopCli())
    .addCommand(scriptCli())
    .addCommand(kmodCli())
    .addCommand(labCli());
}
