/**
 * `krelay run` from start to exit: control socket, metrics, queue, then relaying unless asked to
 * start stopped; until SIGINT, SIGTERM or a fatal error, then everything released in reverse.
 * Every step that can fail on bad input fails before anything on the machine has changed.
 *
 * @module
 */

import type { Config } from "../config/schema.ts";
import { Daemon, type DaemonDeps } from "../daemon/daemon.ts";
import type { Service } from "../script/services.ts";
import { logger } from "../system/log.ts";
import { controlHandler } from "../control/handler.ts";
import { type MetricsServer, serveMetrics } from "../control/metrics.ts";
import { ControlServer } from "../control/server.ts";

const log = logger("daemon");

/** Options of {@link runKrelay}. */
export interface RunOptions {
  /** Start stopped (nothing steered) until `krelay start`. */
  stopped?: boolean;
  /** Resolves when krelay should exit (default: SIGINT or SIGTERM). */
  stopSignal?: Promise<string>;
  /** Packet scripts to load before relaying (`--script`). */
  scripts?: { name: string; file: string; services: Service[] }[];
}

function signals(): { promise: Promise<string>; dispose: () => void } {
  let resolve!: (s: string) => void;
  const promise = new Promise<string>((r) => (resolve = r));
  const handlers = (["SIGINT", "SIGTERM"] as const).map((sig) => {
    const h = () => resolve(sig);
    Deno.addSignalListener(sig, h);
    return [sig, h] as const;
  });
  return { promise, dispose: () => handlers.forEach(([s, h]) => Deno.removeSignalListener(s, h)) };
}

/** Runs krelay until told to stop. Returns the process exit code. */
export async function runKrelay(
  config: Config,
  deps: DaemonDeps,
  opts: RunOptions = {},
): Promise<number> {
  const undo: (() => Promise<void>)[] = [];
  const sig = opts.stopSignal ? undefined : signals();
  if (sig) undo.push(() => Promise.resolve(sig.dispose()));
  let code = 0;
  try {
    const daemon = await Daemon.create(config, deps);
    undo.push(() => daemon.scripts.close());
    for (const s of opts.scripts ?? []) await daemon.scripts.load(s.name, s.file, s.services);
    const control = await ControlServer.listen(config.control_socket, controlHandler(daemon));
    undo.push(() => control.close());
    if (config.metrics) {
      const metrics: MetricsServer = serveMetrics(config.metrics, () => daemon.status());
      undo.push(() => metrics.close());
    }
    await daemon.open();
    undo.push(() => daemon.close());
    if (opts.stopped) log.info("started stopped: nothing is relayed until `krelay start`");
    else await daemon.start();
    const stopped = (opts.stopSignal ?? sig!.promise).then((why) => `signal ${why}`);
    const failed = daemon.loopDone.then(() => "the packet loop ended");
    log.info("stopping: {why}", {
      why: await Promise.race([stopped, failed, daemon.failure]),
    });
  } catch (e) {
    log.error("{error}", { error: (e as Error).message });
    code = 1;
  } finally {
    for (const step of undo.reverse()) {
      await step().catch((e) => log.error("cleanup: {error}", { error: String(e) }));
    }
  }
  return code;
}
