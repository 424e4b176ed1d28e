/**
 * `krelay run`: validates the configuration, then runs the relay daemon in the foreground.
 *
 * @module
 */

import { Command } from "commander";
import { loadConfig } from "../config/load.ts";
import { runKrelay } from "./run.ts";
import { datapathRefusal, kmodDefaults, steeringFor, useKmod } from "../steering/datapath.ts";
import { logger } from "../system/log.ts";
import { KmodNatTable } from "../kmod/nat_mirror.ts";
import { NfqueueDatapath } from "../queue/nfqueue.ts";
import { checkScript } from "../script/check.ts";
import { configuredServices, parseServices, type Service } from "../script/services.ts";
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
    )
    .option(
      "--script <file>",
      "load a packet script (TypeScript, see src/script/api.ts), named after its file; " +
        "repeatable",
      (file: string, files: string[] = []) => [...files, file],
    )
    .option(
      "--on <services>",
      "the services every --script sees, like udp:53,tcp:80 [default: every configured port]",
    );
  addConfigFlags(command);
  command.addHelpText(
    "after",
    "\nFlags override the config file; both are validated before anything is changed.",
  );
  return command.action(async (options: Record<string, unknown>) => {
    const sources = { file: options.config as string | undefined, flags: configFromFlags(options) };
    let result = await loadConfig(sources);
    // With krelay.ko, its /proc/krelay holds gport and real_ip, as in the specification: they
    // stand in for the defaults, and the file and flags still win.
    if (result.ok && useKmod(result.config.datapath)) {
      result = await loadConfig({ ...sources, defaults: await kmodDefaults() });
    }
    if (!result.ok) {
      console.error(
        `krelay run: invalid configuration, nothing changed:\n  ${result.errors.join("\n  ")}`,
      );
      Deno.exit(EXIT_BAD_CONFIG);
    }
    const config = result.config;
    const scripts = await scriptsFromFlags(
      options,
      configuredServices(
        config.udp_ports,
        config.tcp_ports,
      ),
    );
    const refusal = datapathRefusal(config.datapath);
    if (refusal) {
      console.error(`krelay run: ${refusal}, nothing changed`);
      Deno.exit(EXIT_BAD_CONFIG);
    }
    const log = { level: config.log_level, json: options.logJson === true };
    await setupLogging(log);
    for (const warning of result.warnings ?? []) logger("config").warning(warning);
    const kmod = useKmod(config.datapath);
    const code = await runKrelay(config, {
      openDatapath: (c) => NfqueueDatapath.open({ queue: c.queue, maxLen: c.queue_maxlen }),
      // The kernel path carries established flows; iptables rules or krelay.ko's hooks select
      // what krelay decides.
      steering: steeringFor(config.datapath),
      natMirror: kmod ? new KmodNatTable() : undefined,
      run: runCommand,
      now: () => performance.now(),
      log,
    }, { stopped: options.stopped === true, scripts });
    Deno.exit(code);
  });
}

/** The scripts of `--script` and `--on`, checked; a bad one ends krelay before anything runs. */
async function scriptsFromFlags(
  options: Record<string, unknown>,
  configured: Service[],
): Promise<{ name: string; file: string; services: Service[] }[]> {
  const files = (options.script as string[] | undefined) ?? [];
  let services = configured;
  try {
    if (typeof options.on === "string") services = parseServices(options.on);
  } catch (e) {
    console.error(`krelay run: --on: ${(e as Error).message}, nothing changed`);
    Deno.exit(EXIT_BAD_CONFIG);
  }
  const scripts = [];
  const names = new Set<string>();
  for (const file of files) {
    try {
      await checkScript(file);
    } catch (e) {
      console.error(
        `krelay run: script ${file} refused, nothing changed:\n${(e as Error).message}`,
      );
      Deno.exit(EXIT_BAD_CONFIG);
    }
    const base = (file.split("/").pop() ?? file).replace(/\.[cm]?[jt]s$/, "").replace(
      /[^A-Za-z0-9_.-]/g,
      "_",
    ) || "script";
    let name = base;
    for (let i = 2; names.has(name); i++) name = `${base}-${i}`;
    names.add(name);
    scripts.push({ name, file: file.startsWith("/") ? file : `${Deno.cwd()}/${file}`, services });
  }
  return scripts;
}
