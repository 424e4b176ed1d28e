/**
 * The relay daemon: the queue, the packet loop, the NAT engine, the TCP relay and the steering,
 * with a state (started: steered and relaying; stopped: no steering, nothing relayed), a live
 * configuration (new flows use new values, established ones finish on the old), and reports.
 *
 * The queue stays bound and the loop runs in both states; only the steering and the gateway
 * listener come and go, like the specification's module registering and unregistering its
 * hooks.
 *
 * @module
 */

import { type Config, type ConfigKey, LIVE_KEYS, parseConfig } from "../config/schema.ts";
import { valueFromText } from "../config/text_values.ts";
import type { Datapath } from "../queue/queue.ts";
import type { Steering, SteeringSpec } from "../steering/steering.ts";
import { type NatEntry, NatTable } from "../nat/nat_table.ts";
import { requestKey as udpRequestKey } from "../nat/udp_nat.ts";
import { Rewriter, type RewriterSettings } from "../nat/rewriter.ts";
import { parseIpv4 } from "../packet/address.ts";
import { RelayThreads, sumCounts, type ThreadSettings } from "../relay/relay_threads.ts";
import { warmUp } from "../relay/warm_up.ts";
import { TcpRelay, type TcpRelaySettings } from "../relay/tcp_relay.ts";
import { addStats, NO_STATS, type TcpRelayStats } from "../relay/stats.ts";
import { ScriptHost, type ScriptPolicy } from "../script/host.ts";
import { type ServerPool, serviceKey } from "../servers/balancer.ts";
import { serverList } from "../servers/list.ts";
import { Servers, staticPool } from "./servers.ts";
import type { CheckerOptions } from "../servers/checker.ts";
import type { CommandRunner } from "../system/command.ts";
import { allowedCpus } from "../system/cpu_affinity.ts";
import { logger, type LogOptions } from "../system/log.ts";
import { readKernelQueue } from "../queue/kernel_counters.ts";
import { TablePressure } from "../nat/pressure.ts";
import { SynGate } from "../relay/syn_gate.ts";
import { UpstreamRegistry } from "../relay/upstream_registry.ts";
import { PacketLoop } from "./packet_loop.ts";
import { detectRelayIp, detectRelayIp6, ownAddresses } from "./relay_ip.ts";
import { checkRealIp } from "../config/real_ip.ts";
import { readIpv6Flows } from "../steering/ipv6_flows.ts";
import { addressFamilies, firstOfEach } from "../config/addresses.ts";
import {
  type ConfigChange,
  divertedView,
  ipv6FlowView,
  type NatEntryView,
  natEntryView,
  type RelayState,
  type StatusReport,
} from "./reports.ts";

const log = logger("daemon");

/** What the daemon needs from the system; tests pass in-memory versions. */
export interface DaemonDeps {
  openDatapath(config: Config): Promise<Datapath>;
  steering: Steering;
  run: CommandRunner;
  /** Monotonic clock in milliseconds. */
  now: () => number;
  /** A copy of the NAT table kept elsewhere (krelay.ko's, for getsockopt readers). */
  natMirror?: NatMirror;
  /** How relay threads log (relay_threads > 1); the config's level as text by default. */
  log?: LogOptions;
  /**
   * The servers' health probes; the real ones (checker.ts) by default. Tests outside a lab
   * pass others: the real ones would reach the configured servers from the machine itself.
   */
  probes?: Pick<CheckerOptions, "probeTcp" | "probeUdp">;
}

/** Where the NAT table is mirrored: entries put when added or changed, removed when gone. */
export interface NatMirror {
  put(entry: NatEntry): void;
  remove(entry: NatEntry): void;
  flush(): void;
  close(): void;
}

/** The engine's settings derived from a config and the ports that have packet scripts. */
export function rewriterSettings(
  config: Config,
  relayIp: string,
  scriptedUdpPorts: readonly number[] = [],
  pool: ServerPool = staticPool(config),
  relayIp6?: string,
): RewriterSettings {
  return {
    // Only with an IPv6 server too: IPv6 clients are steered only then.
    relayIp6: firstOfEach(config.real_ip).v6 === undefined ? undefined : relayIp6,
    relayIp: parseIpv4(relayIp),
    pool,
    realIp6: firstOfEach(config.real_ip).v6,
    udpPorts: new Set(config.udp_ports),
    udpTimeoutMs: config.udp_timeout * 1000,
    udpStreamTimeoutMs: config.udp_stream_timeout * 1000,
    tcpPorts: new Set(config.tcp_ports),
    scriptedUdpPorts: new Set(scriptedUdpPorts),
  };
}

/** The TCP relay's settings from a config. */
export function relaySettings(config: Config): TcpRelaySettings {
  return {
    connectTimeoutMs: config.tcp_connect_timeout * 1000,
    idleTimeoutMs: config.tcp_idle_timeout * 1000,
  };
}

/** How packet scripts fail, from a config. */
export function scriptPolicy(config: Config): ScriptPolicy {
  return {
    defaultVerdict: config.script_default_verdict,
    budgetMs: config.script_budget_ms,
    maxErrors: config.script_max_errors,
    errorWindowMs: config.script_error_window * 1000,
    limits: {
      memoryMb: config.script_memory_mb,
      // Timers count against the budget too: a second's CPU outside batches may take a few
      // budgets (room for V8's own compiler and GC threads), within 200-400 ms.
      idleCpuMsPerS: Math.min(400, Math.max(200, 4 * config.script_budget_ms)),
    },
  };
}

/** The first server of the config's list: the one krelay.ko's real_ip shows. */
export function firstServer(config: Config): string {
  return serverList(config.real_ip)[0].address;
}

/** The steering for a config, widened by the ports of live flows so that they can finish. */
export function steeringSpec(
  config: Config,
  relayIp: string,
  live: { udpPorts: Iterable<number>; tcpPorts: Iterable<number> },
  scripted: { udp: readonly number[]; tcp: readonly number[] } = { udp: [], tcp: [] },
  relayIp6?: string,
): SteeringSpec {
  const real = firstOfEach(config.real_ip);
  // IPv6 clients are steered only to an IPv6 server, and only with an IPv6 relay address.
  const ipv6 = relayIp6 !== undefined && real.v6 !== undefined
    ? { relayIp6, realIp6: real.v6 }
    : {};
  const union = (a: readonly number[], b: Iterable<number>) =>
    [...new Set([...a, ...b])].sort((x, y) => x - y);
  const udpPorts = union(config.udp_ports, live.udpPorts);
  const tcpPorts = union(config.tcp_ports, live.tcpPorts);
  return {
    queue: config.queue,
    relayIp,
    realIp: firstServer(config),
    ...ipv6,
    gport: config.gport,
    udpPorts,
    tcpPorts,
    // A script on a port krelay does not relay sees nothing: nothing is queued for it.
    scriptedUdpPorts: scripted.udp.filter((p) => udpPorts.includes(p)),
    scriptedTcpPorts: scripted.tcp.filter((p) => tcpPorts.includes(p)),
    tcpConntrack: config.tcp_conntrack,
    tcpHoldSyn: config.tcp_hold_syn,
    udpTimeout: config.udp_timeout,
    natMaxEntries: config.nat_max_entries,
  };
}

/** How many relay threads a config asks for: relay_threads, or 0 for one per usable CPU. */
export function relayThreadCount(config: Config, cpus: () => number[] = relayCpus): number {
  if (config.relay_threads > 0) return config.relay_threads;
  return Math.max(1, Math.min(64, cpus().length));
}

/** The relay daemon. Create with {@link Daemon.create}, then {@link Daemon.open}. */
export class Daemon {
  #config: Config;
  #settings: RewriterSettings;
  #state: RelayState = "stopped";
  #datapath?: Datapath;
  #loop?: PacketLoop;
  #loopDone: Promise<void> = new Promise(() => {});
  #sweeper?: ReturnType<typeof setInterval>;
  #installed = "";
  /** The relay threads (relay_threads > 1), and the counters of those closed. */
  #threads?: RelayThreads;
  #threadsDone: TcpRelayStats = NO_STATS;
  /** Rejects when a relay thread fails: krelay cannot repair it and exits (see run.ts). */
  readonly #fatal = Promise.withResolvers<never>();
  /** Steering changes run one at a time, in order (a sync tick must not follow a removal). */
  #steeringQueue: Promise<void> = Promise.resolve();
  readonly #startedAt = new Date();
  readonly #startedClock: number;
  readonly table: NatTable;
  readonly engine: Rewriter;
  readonly relay: TcpRelay;
  /** Packet scripts (`krelay script ...`). */
  readonly scripts: ScriptHost;
  /** The real servers and their health. */
  readonly servers: Servers;
  /** Connections made for clients whose SYN the gate held, for the relay to take. */
  readonly registry = new UpstreamRegistry();
  #gate?: SynGate;

  private constructor(
    config: Config,
    readonly relayIp: string,
    private readonly deps: DaemonDeps,
    /** The relay's IPv6 address, when IPv6 clients are relayed. */
    readonly relayIp6?: string,
  ) {
    this.#config = config;
    this.servers = new Servers({
      now: deps.now,
      onChange: () => this.#poolChanged(),
      probes: deps.probes,
    });
    this.servers.configure(config);
    this.#settings = rewriterSettings(config, relayIp, [], this.servers.pool(), relayIp6);
    this.#startedClock = deps.now();
    // Awaited by whoever runs the daemon (run.ts); unawaited, a failure is not an unhandled one.
    this.#fatal.promise.catch(() => {});
    this.table = new NatTable({ capacity: config.nat_max_entries, now: deps.now });
    this.table.addRemoveListener((e, reason) => {
      // A user-space UDP flow (a scripted service) that timed out: was it ever answered?
      if (reason !== "expired" || e.protocol !== "udp") return;
      if (!this.#settings.scriptedUdpPorts.has(e.servicePort)) return;
      this.servers.passiveUdp(e.servicePort, e.server, e.state !== "unreplied");
    });
    const mirror = deps.natMirror;
    if (mirror) {
      this.table.addChangeListener((e) => mirror.put(e));
      this.table.addRemoveListener((e) => mirror.remove(e));
    }
    this.engine = new Rewriter({
      table: this.table,
      settings: () => this.#settings,
      now: deps.now,
    });
    this.relay = new TcpRelay({
      targets: this.engine.tcp,
      now: deps.now,
      settings: () => relaySettings(this.#config),
      registry: this.registry,
    });
    this.scripts = new ScriptHost({
      policy: () => scriptPolicy(this.#config),
      relayIp: () => this.#settings.relayIp,
      serverOf: (protocol, client, clientPort, service, servicePort) => {
        // A relayed TCP connection has no entry: it goes to the server picked for its client
        // (round robin: the one the next connection would get).
        const e = protocol === 17
          ? this.table.get(udpRequestKey(client, clientPort, service, servicePort))
          : undefined;
        if (e) return [e.server, e.serverPort];
        const t = this.engine.tcp.target(servicePort, service | 0, client);
        return [t ? t.server >>> 0 : this.#settings.pool.servers[0].ip >>> 0, servicePort];
      },
      now: deps.now,
      onServicesChanged: () => this.#scriptsChanged(),
    });
  }

  /** Builds a daemon for `config`, detecting the relay address if it is not set. */
  static async create(config: Config, deps: DaemonDeps): Promise<Daemon> {
    const real = firstOfEach(config.real_ip);
    const relay = firstOfEach(config.relay_ip);
    const relayIp = relay.v4 ?? await detectRelayIp(deps.run, real.v4!);
    let relayIp6 = relay.v6;
    if (relayIp6 === undefined && real.v6 !== undefined) {
      relayIp6 = await detectRelayIp6(deps.run, real.v6).catch((e) => {
        log.warning("IPv6 clients are not relayed: {error}", { error: String(e) });
        return undefined;
      });
    }
    checkRealServers(config.real_ip, [relayIp, ...await ownAddresses(deps.run)], relayIp6);
    return new Daemon(config, relayIp, deps, relayIp6);
  }

  /** The configuration in force. */
  get config(): Config {
    return this.#config;
  }

  /** started or stopped. */
  get state(): RelayState {
    return this.#state;
  }

  /** Rejects when a part the daemon cannot repair fails (a relay thread); never resolves. */
  get failure(): Promise<never> {
    return this.#fatal.promise;
  }

  /** Settles when the packet loop ends; rejects when the datapath fails. */
  get loopDone(): Promise<void> {
    return this.#loopDone;
  }

  /** Binds the queue and starts the packet loop. Changes nothing else; throws if it cannot. */
  async open(): Promise<void> {
    this.#datapath = await this.deps.openDatapath(this.#config);
    this.#gate = new SynGate({
      targets: this.engine.tcp,
      registry: this.registry,
      settings: () => relaySettings(this.#config),
      now: this.deps.now,
    });
    this.#loop = new PacketLoop(this.#datapath, this.engine, 200, this.scripts, this.#gate);
    this.#loopDone = this.#loop.start();
    // The loop's failure is awaited through loopDone by whoever runs the daemon.
    this.#loopDone.catch(() => {});
    this.#sweeper = setInterval(() => this.#tick(), 1000);
  }

  /** Starts relaying: the gateway listener, then the steering. Undone if either fails. */
  async start(): Promise<void> {
    if (this.#state === "started") return;
    // Until the steering is installed, the module's files hold its old values, not ours.
    this.#starting = true;
    try {
      // The listener before the rules: a taken gateway port fails before anything is steered.
      if (this.#config.tcp_ports.length > 0) await this.#listen(this.#config.gport);
      await this.#steer(async () => {
        const spec = this.#spec();
        await this.deps.steering.install(spec);
        this.#installed = JSON.stringify(spec);
      });
    } catch (e) {
      this.relay.unlisten();
      await this.#closeThreads();
      await this.#steer(() => this.deps.steering.remove()).catch(() => {});
      throw e;
    } finally {
      this.#starting = false;
    }
    this.#state = "started";
    this.servers.start();
    const c = this.#config;
    log.info(
      "relaying on {relay} to {real}: UDP {udp} by NAT, TCP {tcp} through gateway port " +
        "{gport} (queue {queue})",
      {
        relay: this.relayIp,
        real: c.real_ip,
        udp: c.udp_ports.join(",") || "none",
        tcp: c.tcp_ports.join(",") || "none",
        gport: c.gport,
        queue: c.queue,
      },
    );
  }

  /**
   * Stops relaying: relayed connections are reset while the rules still translate their last
   * segments, then the steering goes and the NAT table is emptied.
   */
  async stop(): Promise<void> {
    if (this.#state === "stopped") return;
    this.#state = "stopped";
    await this.servers.stop();
    await this.relay.close();
    await this.#closeThreads();
    await this.#steer(async () => {
      await this.deps.steering.remove();
      this.#installed = "";
    }).catch((e) => log.error("removing steering failed: {error}", { error: String(e) }));
    this.table.flush();
    log.info("stopped relaying");
  }

  /**
   * Changes one live key, given as text like a flag. Validated like the config file; refused
   * with the reason, changing nothing, when the value is bad, the key is not live, or (gport)
   * the new port cannot be bound.
   */
  async setConfig(key: string, text: string): Promise<ConfigChange> {
    if (!(LIVE_KEYS as readonly string[]).includes(key)) {
      const known = Object.keys(this.#config).includes(key) || key === "relay_ip" ||
        key === "metrics";
      throw new Error(
        known
          ? `${key} cannot change while krelay runs; live keys: ${LIVE_KEYS.join(", ")}`
          : `unknown key ${key}; live keys: ${LIVE_KEYS.join(", ")}`,
      );
    }
    const result = parseConfig({ ...this.#config, [key]: valueFromText(key, text) });
    if (!result.ok) throw new Error(result.errors.join("; "));
    const next = result.config;
    if (key === "real_ip") {
      checkRealServers(
        next.real_ip,
        [this.relayIp, ...await ownAddresses(this.deps.run)],
        this.relayIp6,
      );
    }
    const from = this.#config[key as ConfigKey];
    if (key === "gport" && this.#state === "started" && next.tcp_ports.length > 0) {
      await this.#listen(next.gport);
    }
    this.#config = next;
    this.servers.configure(next);
    this.#settings = this.#rewriterSettings();
    await this.#threads?.configure(this.#threadSettings());
    // A new or no longer IPv6 real server: the relay's IPv6 listener follows.
    if (key === "real_ip" && this.#state === "started" && next.tcp_ports.length > 0) {
      await this.#listen(next.gport);
    }
    if (key === "tcp_ports" && this.#state === "started") {
      if (next.tcp_ports.length > 0) await this.#listen(next.gport);
      else {
        this.relay.unlisten();
        await this.#threads?.unlisten();
      }
    }
    if (this.#state === "started") await this.#syncSteering();
    const to = next[key as ConfigKey];
    log.info("config {key}: {from} -> {to}", { key, from: String(from), to: String(to) });
    return { key, from, to };
  }

  /** The status report. */
  status(): StatusReport {
    return {
      pid: Deno.pid,
      state: this.#state,
      startedAt: this.#startedAt.toISOString(),
      uptimeSeconds: (this.deps.now() - this.#startedClock) / 1000,
      relayIp: this.relayIp,
      ...(this.relayIp6 === undefined ? {} : { relayIp6: this.relayIp6 }),
      config: this.#config,
      packets: { ...this.engine.counters },
      engineErrors: this.#loop?.engineErrors ?? 0,
      datapath: this.#datapath?.stats() ?? { received: 0, verdicts: 0, enobufs: 0, errors: 0 },
      queue: this.#datapath ? readKernelQueue(this.#config.queue) : undefined,
      tcp: this.#tcpStats(),
      relayThreads: this.#threads?.threads() ?? [],
      nat: this.table.stats(),
      servers: this.servers.view(this.#serverCounts(), (ip) => {
        let flows = 0;
        for (const e of this.table.entries()) if (e.protocol === "udp" && e.server === ip) flows++;
        return flows;
      }),
    };
  }

  /** The relay's TCP connections by "port/server": the main thread's and the threads'. */
  #serverCounts() {
    return sumCounts(this.relay.serverCounts(), this.#threads?.serverCounts() ?? {});
  }

  #rewriterSettings(): RewriterSettings {
    return rewriterSettings(
      this.#config,
      this.relayIp,
      this.scripts.scriptedPorts().udp,
      this.servers.pool(),
      this.relayIp6,
    );
  }

  /** A server went down or came back: new flows follow at once, in every thread. */
  #poolChanged(): void {
    this.#settings = this.#rewriterSettings();
    // A UDP service with no server up is refused by the kernel (see SteeringSpec).
    if (this.#state === "started") {
      this.#syncSteering().catch((e) =>
        log.error("updating steering failed: {error}", { error: String(e) })
      );
    }
    this.#threads?.configure(this.#threadSettings()).catch((e) =>
      log.error("passing server health to the relay threads failed: {error}", {
        error: String(e),
      })
    );
  }

  /** The NAT table's entries (UDP), and the relayed TCP connections, which have none. */
  async nat(): Promise<NatEntryView[]> {
    const now = this.deps.now();
    const threads = await this.#threads?.diverted(now) ?? [];
    // IPv6 UDP flows are the kernel's alone (no queue sees them): listed from its set.
    const six = this.relayIp6 !== undefined && this.#state === "started"
      ? await readIpv6Flows(this.deps.run)
      : [];
    return [
      ...[...this.table.entries()].map((e) => natEntryView(e, now)),
      ...six.map((f) => ipv6FlowView(f, this.relayIp6!)),
      ...[...this.relay.diverted(), ...threads].map((c) => divertedView(c, now)),
    ];
  }

  /**
   * The gateway listener on `port`: the main thread's with one relay thread, else the relay
   * threads', started the first time. The main thread then relays nothing: its loop also serves
   * the queue and the control socket, so it would wait for sockets through a helper thread (see
   * Poller), where a relay thread waits in epoll_wait itself.
   */
  async #listen(port: number): Promise<void> {
    const threads = relayThreadCount(this.#config);
    // Before the steering: no client meets the relay's code cold (see warm_up.ts).
    const warm = this.#config.relay_warm_up;
    if (threads < 2) {
      await this.relay.listen(port);
      return await warmUp(this.relay, warm);
    }
    this.#threads ??= await RelayThreads.start(
      threads,
      this.deps.log ?? { level: this.#config.log_level, json: false },
      this.#threadSettings(),
      {
        onFailure: (error) => this.#fatal.reject(error),
        cpus: this.#config.relay_cpu_affinity ? relayCpus() : [],
        registry: this.registry.buffer,
      },
    );
    await this.#threads.listen(port, warm);
  }

  async #closeThreads(): Promise<void> {
    const threads = this.#threads;
    if (threads === undefined) return;
    this.#threads = undefined;
    await threads.close();
    this.#threadsDone = addStats(this.#threadsDone, threads.stats());
  }

  #threadSettings(): ThreadSettings {
    return { nat: this.#settings, relay: relaySettings(this.#config) };
  }

  /** All threads' counters: the main one's, the relay threads' as last reported, closed ones'. */
  #tcpStats(): TcpRelayStats {
    const threads = this.#threads?.stats() ?? NO_STATS;
    return addStats(this.relay.stats(), this.#threadsDone, threads);
  }

  /** Stops relaying, ends the loop (queued packets get their verdicts) and releases the queue. */
  async close(): Promise<void> {
    clearInterval(this.#sweeper);
    await this.stop();
    if (this.#loop) {
      await this.#loop.stop();
      await this.#loop.drainOnce(50).catch(() => 0);
    }
    // Held SYNs get their verdict (dropped) while the queue is still there.
    await this.#gate?.close();
    await this.scripts.close();
    this.#datapath?.close();
    this.deps.natMirror?.flush();
    this.deps.natMirror?.close();
    log.info("closed; counters {counters} syn {syn} tcp {tcp} nat {nat} datapath {datapath}", {
      counters: this.engine.counters,
      syn: this.#gate?.counters,
      tcp: this.#tcpStats(),
      nat: this.table.stats(),
      datapath: this.#datapath?.stats(),
    });
  }

  #tick(): void {
    this.table.sweep();
    const pressure = this.#pressure.check(this.table.stats(), this.deps.now());
    if (pressure) {
      log.warning(
        "NAT table full ({entries} entries): {evicted} flows evicted ({unanswered} unanswered, " +
          "the rest answered but not assured) and {refused} new flows refused in {seconds} s",
        { ...pressure, unanswered: pressure.evictedUnanswered },
      );
    }
    if (this.#state === "started") {
      // The relay's failed connections since the last tick count against their servers.
      this.servers.passive(this.#serverCounts());
      this.#syncSteering().catch((e) =>
        log.error("updating steering failed: {error}", { error: String(e) })
      );
    }
    if (this.deps.steering.observe && !this.#observing && !this.#starting) {
      this.#observing = true;
      this.#follow().catch((e) =>
        log.error("following the module failed: {error}", { error: String(e) })
      )
        .finally(() => (this.#observing = false));
    }
  }

  #observing = false;
  /** A start is installing the steering (see start()). */
  #starting = false;
  readonly #pressure = new TablePressure();

  /**
   * Follows what others wrote in the steering's own files (krelay.ko's /proc/krelay/gport and
   * real_ip, and its start parameter), as the specification's tcp_relay followed them.
   */
  async #follow(): Promise<void> {
    const seen = await this.deps.steering.observe!();
    if (seen.gport !== this.#config.gport) {
      await this.#adopt("gport", String(seen.gport));
    }
    // The module holds one address: the first IPv4 server. Another one written there is a list
    // of that one server, as the specification's single real_ip was (IPv6 servers stay).
    if (seen.realIp !== firstServer(this.#config)) {
      const v6 = addressFamilies(this.#config.real_ip).v6;
      await this.#adopt("real_ip", [seen.realIp, ...v6].join(","));
    }
    if (seen.started && this.#state === "stopped") {
      log.info("krelay.ko was started: relaying");
      await this.start();
    } else if (!seen.started && this.#state === "started") {
      log.info("krelay.ko was stopped: not relaying");
      await this.stop();
    }
  }

  async #adopt(key: "gport" | "real_ip", value: string): Promise<void> {
    try {
      await this.setConfig(key, value);
    } catch (e) {
      // The module took a value krelay cannot use (e.g. a gport that is taken): put ours back.
      log.error("{key} {value} from krelay.ko refused: {error}", { key, value, error: String(e) });
      if (this.#state === "started") await this.deps.steering.install(this.#spec());
    }
  }

  /** The spec for the current config, live flows and scripts. */
  #spec(): SteeringSpec {
    const udp = new Set<number>();
    for (const e of this.table.entries()) if (e.protocol === "udp") udp.add(e.servicePort);
    const tcp = new Set<number>(this.relay.divertedPorts());
    for (const port of this.#threads?.divertedPorts() ?? []) tcp.add(port);
    const spec = steeringSpec(
      this.#config,
      this.relayIp,
      { udpPorts: udp, tcpPorts: tcp },
      this.scripts.scriptedPorts(),
      this.relayIp6,
    );
    const main = this.relay.listenerFd;
    const main6 = this.relay.listenerFd6;
    const pool = this.#settings.pool;
    const refused = this.#config.udp_ports.filter((p) =>
      pool.up[serviceKey("udp", p)]?.every((up) => !up) === true
    );
    return {
      ...spec,
      listeners: this.#threads?.listeners ?? (main >= 0 ? [main] : []),
      listeners6: this.#threads?.listeners6 ?? (main6 >= 0 ? [main6] : []),
      ...(refused.length > 0 ? { refusedUdpPorts: refused } : {}),
    };
  }

  /**
   * Scripts were loaded or unloaded: the engine NATs the scripted UDP services itself, and the
   * steering sends their packets through the queue (or, unloaded, back to the kernel path).
   */
  async #scriptsChanged(): Promise<void> {
    this.#settings = this.#rewriterSettings();
    if (this.#state !== "started") return;
    await this.#syncSteering().catch((e) =>
      log.error("updating steering failed: {error}", { error: String(e) })
    );
  }

  #syncSteering(): Promise<void> {
    return this.#steer(async () => {
      // Stopped meanwhile: updating would recreate chains that stop() just removed.
      if (this.#state !== "started" || this.#installed === "") return;
      const spec = this.#spec();
      const key = JSON.stringify(spec);
      if (key === this.#installed) return;
      await this.deps.steering.update(spec);
      this.#installed = key;
    });
  }

  #steer(op: () => Promise<void>): Promise<void> {
    const run = this.#steeringQueue.then(op);
    this.#steeringQueue = run.catch(() => {});
    return run;
  }
}

/**
 * real_ip.ts's rule for each real server: the IPv4 ones against the relay's own IPv4 addresses
 * (`own`), the IPv6 ones against its IPv6 address. Throws `real_ip: <why>`.
 */
function checkRealServers(realIp: string, own: readonly string[], relayIp6?: string): void {
  checkRealIp(realIp, relayIp6 === undefined ? own : [...own, relayIp6]);
}

/** The CPUs the relay threads keep to: the process's own (a cpuset or taskset narrows them). */
function relayCpus(): number[] {
  try {
    return allowedCpus();
  } catch (e) {
    log.warning("relay threads run on any CPU: {error}", { error: (e as Error).message });
    return [];
  }
}
