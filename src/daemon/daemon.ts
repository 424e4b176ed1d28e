/**
 * The relay daemon's lifecycle: bind the queue, install the steering, run the packet loop,
 * expire NAT entries, and on SIGINT, SIGTERM or a fatal error remove the steering and release
 * the queue, leaving the machine as it was.
 *
 * @module
 */

import { type Config, parsePortRange } from "../config/schema.ts";
import type { Datapath } from "../datapath/datapath.ts";
import type { Steering, SteeringSpec } from "../datapath/steering.ts";
import { NatTable } from "../nat/nat_table.ts";
import { PortPool } from "../nat/port_pool.ts";
import { Rewriter, type RewriterSettings } from "../nat/rewriter.ts";
import { parseIpv4 } from "../packet/address.ts";
import type { CommandRunner } from "../system/command.ts";
import { logger } from "../system/log.ts";
import { TcpRelay } from "../relay/tcp_relay.ts";
import { PacketLoop } from "./packet_loop.ts";
import { kernelEphemeralRange, overlap } from "./ephemeral.ts";
import { detectRelayIp } from "./relay_ip.ts";

const log = logger("daemon");

/** What the daemon needs from the system; tests pass in-memory versions. */
export interface DaemonDeps {
  openDatapath(config: Config): Promise<Datapath>;
  steering: Steering;
  run: CommandRunner;
  now: () => number;
  /** Resolves when the daemon should stop (default: SIGINT or SIGTERM). */
  stopSignal?: Promise<string>;
}

/** The engine's settings derived from a config. */
export function rewriterSettings(config: Config, relayIp: string): RewriterSettings {
  return {
    relayIp: parseIpv4(relayIp),
    realIp: parseIpv4(config.real_ip),
    udpPorts: new Set(config.udp_ports),
    udpTimeoutMs: config.udp_timeout * 1000,
    udpStreamTimeoutMs: config.udp_stream_timeout * 1000,
    tcpPorts: new Set(config.tcp_ports),
    gport: config.gport,
    // A SYN waits for the relay's accept at most this long (retransmissions refresh it).
    tcpSynTimeoutMs: 10_000,
    // The relay resets idle connections itself; the entry outlives that by a margin.
    tcpEstablishedTimeoutMs: config.tcp_idle_timeout * 1000 + 60_000,
    tcpLingerMs: config.tcp_linger * 1000,
  };
}

/** The steering's spec derived from a config. */
export function steeringSpec(config: Config, relayIp: string): SteeringSpec {
  return {
    queue: config.queue,
    relayIp,
    realIp: config.real_ip,
    udpPorts: config.udp_ports,
    tcpPorts: config.tcp_ports,
    gport: config.gport,
    relayPorts: parsePortRange(config.relay_ports),
  };
}

function signalPromise(): { promise: Promise<string>; dispose: () => void } {
  let resolve!: (s: string) => void;
  const promise = new Promise<string>((r) => (resolve = r));
  const handlers = (["SIGINT", "SIGTERM"] as const).map((sig) => {
    const h = () => resolve(sig);
    Deno.addSignalListener(sig, h);
    return [sig, h] as const;
  });
  return { promise, dispose: () => handlers.forEach(([s, h]) => Deno.removeSignalListener(s, h)) };
}

/** Runs the relay until stopped. Returns the process exit code. */
export async function runDaemon(config: Config, deps: DaemonDeps): Promise<number> {
  let relayIp: string;
  try {
    relayIp = config.relay_ip ?? await detectRelayIp(deps.run, config.real_ip);
  } catch (e) {
    log.error("{error}", { error: (e as Error).message });
    return 1;
  }
  const settings = rewriterSettings(config, relayIp);
  const table = new NatTable({ capacity: config.nat_max_entries, now: deps.now });
  const pool = new PortPool(...parsePortRange(config.relay_ports));
  const engine = new Rewriter({ table, pool, settings: () => settings, now: deps.now });
  const ephemeral = kernelEphemeralRange();
  const shared = ephemeral && overlap(parsePortRange(config.relay_ports), ephemeral);
  if (shared && config.tcp_ports.length > 0) {
    log.warning(
      "relay_ports {pool} overlaps the kernel's ephemeral ports {kernel} at {low}-{high}: " +
        "other sockets may take the relay's ports; choose a range outside ip_local_port_range",
      {
        pool: config.relay_ports,
        kernel: ephemeral.join("-"),
        low: shared[0],
        high: shared[1],
      },
    );
  }
  const relay = new TcpRelay({
    nat: engine.tcp,
    now: deps.now,
    settings: () => ({
      connectTimeoutMs: config.tcp_connect_timeout * 1000,
      idleTimeoutMs: config.tcp_idle_timeout * 1000,
    }),
  });

  // The queue first: if it cannot be bound, nothing has been changed yet.
  let datapath: Datapath;
  try {
    datapath = await deps.openDatapath(config);
  } catch (e) {
    log.error("cannot bind the queue: {error}", { error: (e as Error).message });
    return 1;
  }
  const signals = deps.stopSignal ? undefined : signalPromise();
  const loop = new PacketLoop(datapath, engine);
  let code = 0;
  let sweeper: ReturnType<typeof setInterval> | undefined;
  try {
    // The listener before the rules: a taken gateway port fails before anything is steered.
    if (config.tcp_ports.length > 0) await relay.listen(config.gport);
    await deps.steering.install(steeringSpec(config, relayIp));
    log.info(
      "relaying on {relay} to {real}: UDP {udp} by NAT, TCP {tcp} through gateway port " +
        "{gport} (queue {queue})",
      {
        relay: relayIp,
        real: config.real_ip,
        udp: config.udp_ports.join(",") || "none",
        tcp: config.tcp_ports.join(",") || "none",
        gport: config.gport,
        queue: config.queue,
      },
    );
    sweeper = setInterval(() => table.sweep(), 1000);
    const stopped = (deps.stopSignal ?? signals!.promise).then((why) => `signal ${why}`);
    // Promise.race handles a later rejection of the loop, so none goes unhandled.
    const failed = loop.start().then(() => "loop ended");
    const why = await Promise.race([stopped, failed]);
    log.info("stopping: {why}", { why });
  } catch (e) {
    log.error("fatal: {error}", { error: (e as Error).stack ?? String(e) });
    code = 1;
  } finally {
    clearInterval(sweeper);
    // Relayed connections are reset while the rules still translate their last segments;
    // then the steering goes, so no new packet is queued; then what is queued gets its verdict.
    await relay.close();
    await deps.steering.remove().catch((e) =>
      log.error("removing steering failed: {error}", { error: String(e) })
    );
    await loop.stop();
    await loop.drainOnce(50).catch(() => 0);
    datapath.close();
    signals?.dispose();
    table.flush();
    log.info("stopped; counters {counters} tcp {tcp} nat {nat} datapath {datapath}", {
      counters: engine.counters,
      tcp: relay.stats(),
      nat: table.stats(),
      datapath: datapath.stats(),
    });
  }
  return code;
}
