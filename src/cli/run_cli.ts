/**
 * `krelay run`: validates the configuration, then runs the relay daemon in the foreground.
 *
 * @module
 */

import { Command } from "commander";
import { loadConfig } from "../config/load.ts";
import { runKrelay } from "../control/run.ts";
import { IptablesSteering } from "../datapath/iptables_steering.ts";
import { NfqueueDatapath } from "../datapath/nfqueue.ts";
import { runCommand } from "../system/command.ts";
import { setupLogging } from "../system/log.ts";
import { addConfigFlags, configFromFlags } from "./config_flags.ts";

/** Exit code for a configuration refused before anything changed. */
export const EXIT_BAD_CONFIG = 2;

/** The `run` command. */
export function runCli(): Command {
  const command = new Command("run")
    .description(
      "run the relay in the foreground (as root): installs the steering rules, relays until " +
        "SIGINT/SIGTERM, then removes them",
    )
    .option("-c, --config <file>", "TOML file with the same keys as the flags (snake_case)")
    .option("--log-json", "log JSON lines instead of text")
    .option(
      "--stopped",
      "start stopped: queue bound and control socket up, but nothing steered or relayed until " +
        "`krelay start` (the default is to start relaying at once)",
    );
  addConfigFlags(command);
  command.addHelpText(
    "after",
    "\nFlags override the config file; both are validated before anything is changed.",
  );
  return command.action(async (options: Record<string, unknown>) => {
    const result = await loadConfig({
      file: options.config as string | undefined,
      flags: configFromFlags(options),
    });
    if (!result.ok) {
      console.error(
        `krelay run: invalid configuration, nothing changed:\n  ${result.errors.join("\n  ")}`,
      );
      Deno.exit(EXIT_BAD_CONFIG);
    }
    const config = result.config;
    await setupLogging({ level: config.log_level, json: options.logJson === true });
    const code = await runKrelay(config, {
      openDatapath: (c) => NfqueueDatapath.open({ queue: c.queue, maxLen: c.queue_maxlen }),
      steering: new IptablesSteering(),
      run: runCommand,
      now: () => performance.now(),
    }, { stopped: options.stopped === true });
    Deno.exit(code);
  });
}
