/**
 * Structured logging through LogTape: one line per record on stderr, as text or JSON lines.
 * Written synchronously so nothing is lost when the process exits.
 *
 * @example
 * ```ts
 * import { logger, setupLogging } from "./log.ts";
 * await setupLogging({ level: "info", json: false });
 * logger("relay").info("listening on {port}", { port: 16000 });
 * ```
 * @module
 */

import {
  configure,
  getLogger,
  getTextFormatter,
  jsonLinesFormatter,
  type Logger,
  type LogLevel,
  type LogRecord,
} from "@logtape/logtape";

/** Logging options. */
export interface LogOptions {
  level: LogLevel;
  json: boolean;
}

/** (Re)configures logging for the whole process. */
export async function setupLogging(options: LogOptions): Promise<void> {
  const format = options.json ? jsonLinesFormatter : getTextFormatter({
    timestamp: "date-time",
    // Strings as they are; objects as Deno prints them.
    value: (v: unknown) => typeof v === "string" ? v : Deno.inspect(v, { compact: true }),
  });
  const encoder = new TextEncoder();
  const sink = (record: LogRecord) => {
    Deno.stderr.writeSync(encoder.encode(format(record)));
  };
  await configure({
    reset: true,
    sinks: { stderr: sink },
    loggers: [
      { category: ["krelay"], lowestLevel: options.level, sinks: ["stderr"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
    ],
  });
}

/** The logger for one part of krelay, e.g. `logger("datapath")`. */
export function logger(...category: string[]): Logger {
  return getLogger(["krelay", ...category]);
}
