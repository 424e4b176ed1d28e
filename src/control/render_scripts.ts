/**
 * Text for `krelay script list`: one row per loaded script with its services, state, packets,
 * verdicts, errors and time per packet. Pure, so the layout is tested without a daemon.
 *
 * @module
 */

import Table from "cli-table3";
import type { ScriptInfo } from "./protocol.ts";
import { formatCount, type RenderOptions } from "./render.ts";

/** The scripts as a table (or "no scripts loaded"), with each disabled one's reason after. */
export function renderScripts(scripts: ScriptInfo[], options: RenderOptions = {}): string {
  if (scripts.length === 0) return "no scripts loaded";
  const color = options.color === true;
  const table = new Table({
    style: color
      ? { head: ["cyan"], border: ["grey"], compact: true }
      : { head: [], border: [], compact: true },
    head: [
      "name",
      "services",
      "state",
      "packets",
      "matched",
      "accepted",
      "changed",
      "dropped",
      "default",
      "errors",
      "µs/packet",
    ],
    colAligns: [
      "left",
      "left",
      "left",
      "right",
      "right",
      "right",
      "right",
      "right",
      "right",
      "right",
      "right",
    ],
  });
  for (const s of scripts) {
    table.push([
      s.name,
      s.services,
      s.state,
      formatCount(s.packets),
      formatCount(s.matched),
      formatCount(s.verdicts.accepted),
      formatCount(s.verdicts.changed),
      formatCount(s.verdicts.dropped),
      formatCount(s.verdicts.default),
      formatCount(s.errors),
      s.usPerPacket.toFixed(1),
    ]);
  }
  const notes = scripts.flatMap((s) => [
    ...(s.state === "disabled" ? [`${s.name}: disabled (${s.disabledReason ?? "errors"})`] : []),
    ...(s.lastError ? [`${s.name}: last error: ${s.lastError}`] : []),
  ]);
  return [table.toString(), ...notes].join("\n");
}
