/**
 * `krelay script load|unload|list`: packet scripts of a running krelay, over its control
 * socket. Exit codes as the other control commands: 0 done, 1 refused or unreachable (a script
 * that fails its check is refused with the compiler's message), 2 usage.
 *
 * @module
 */

import { Command } from "commander";
import type { ScriptInfo } from "../control/protocol.ts";
import { renderScripts } from "../control/render_scripts.ts";
import { API_SPECIFIER, API_URL } from "../script/check.ts";
import { parseServices } from "../script/services.ts";
import { ask, controlCommand, type ControlOptions, usageExit, useColor } from "./control_cli.ts";

/** The `script` command, with `load`, `unload` and `list`. */
export function scriptCli(): Command {
  const load = controlCommand(
    "load",
    "check a packet script (TypeScript, see src/script/api.ts) and load it under NAME; a " +
      "script already loaded under NAME is replaced without losing packets",
    "script load",
  )
    .argument("<name>", "the script's name (letters, digits, _ . -)")
    .argument("<file>", "the script, a TypeScript module exporting match and/or target")
    .option("--on <services>", "the services it sees, like udp:53,tcp:80 [default: all]")
    .addHelpText(
      "after",
      "\nThe check (deno check) can take a few seconds; the default --timeout is raised to 60 s.",
    )
    .action(
      async (
        name: string,
        file: string,
        options: ControlOptions & { on?: string },
        command: Command,
      ) => {
        if (options.on !== undefined) {
          try {
            parseServices(options.on);
          } catch (e) {
            command.error(`krelay script load: --on: ${(e as Error).message}`, { exitCode: 2 });
          }
        }
        const path = file.startsWith("/") ? file : `${Deno.cwd()}/${file}`;
        const info = await ask<ScriptInfo>("script load", { timeout: 60, ...options }, {
          cmd: "script-load",
          name,
          file: path,
          services: options.on,
        });
        console.log(`script ${info.name} loaded from ${info.file} on ${info.services}`);
      },
    );

  const unload = controlCommand(
    "unload",
    "unload a packet script: its process and all its state end",
    "script unload",
  )
    .argument("<name>", "the script's name")
    .action(async (name: string, options: ControlOptions) => {
      await ask("script unload", options, { cmd: "script-unload", name });
      console.log(`script ${name} unloaded`);
    });

  const list = controlCommand(
    "list",
    "list the packet scripts: services, state, packets, matched, verdicts, errors, µs/packet",
    "script list",
  )
    .option("--json", "print the scripts as a JSON array")
    .action(async (options: ControlOptions) => {
      const scripts = await ask<ScriptInfo[]>("script list", options, { cmd: "script-list" });
      console.log(
        options.json
          ? JSON.stringify(scripts, null, 2)
          : renderScripts(scripts, { color: useColor() }),
      );
    });

  const api = new Command("api")
    .description(
      `print the packet-script API (TypeScript types); scripts import them with ` +
        `\`import type { Packet } from "${API_SPECIFIER}"\``,
    )
    .action(async () => {
      console.log(await Deno.readTextFile(new URL(API_URL)));
    });

  return usageExit(new Command("script"), "script")
    .description("load, unload and list packet scripts of the running krelay; print their API")
    .addCommand(load)
    .addCommand(unload)
    .addCommand(list)
    .addCommand(api);
}
