/**
 * The relay daemon: the queue, the packet loop, the NAT engine, the TCP relay and the steering,
 * with a state (started: steered and relaying; stopped: no steering, nothing relayed), a live
 * configuration (new flows use new values, established ones finish on the old), and reports.
 *
 * The queue stays bound and the loop runs in both states; only the steering and the gateway
 * listener come and go, like the specification's module registering and unregistering its
 * hooks.
 *
 * Longer than 400 lines: it is the one place where the parts meet (queue, engine, relay and its
 * threads, scripts, servers, steering), each wired in a few lines; what can stand alone has
 * moved out (settings.ts, steering_sync.ts, kmod_follow.ts, servers.ts, reports.ts).
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
import { RelayThreads, sumCounts, type ThreadSettings } from "../relay/relay_threads.ts";
import { warmUp } from "../relay/warm_up.ts";
import { TcpRelay } from "../relay/tcp_relay.ts";
import { addStats, NO_STATS, type TcpRelayStats } from "../relay/stats.ts";
import { ScriptHost } from "../script/host.ts";
import { type ServerPool, serviceKey } from "../servers/balancer.ts";
import { Servers } from "./servers.ts";
import type { CheckerOptions } from "../servers/checker.ts";
import type { CommandRunner } from "../system/command.ts";
import { logger, type LogOptions } from "../system/log.ts";
import { readKernelQueue } from "../queue/kernel_counters.ts";
import { TablePressure } from "../nat/pressure.ts";
import { addGateCounters, SynGate, type SynGateCounters } from "../relay/syn_gate.ts";
import { UpstreamRegistry } from "../relay/upstream_registry.ts";
import { ModuleFollower } from "./kmod_follow.ts";
import { KernelUdp } from "./kernel_udp.ts";
import { PacketLoop } from "./packet_loop.ts";
import { SynDoubt } from "./syn_doubt.ts";
import { SteeringSync } from "./steering_sync.ts";
import {
  checkRealServers,
  relayCpus,
  relaySettings,
  relayThreadCount,
  rewriterSettings,
  scriptPolicy,
  steeringSpec,
} from "./settings.ts";
import { detectRelayIp, detectRelayIp6, ownAddresses } from "./relay_ip.ts";
import { readIpv6Flows } from "../steering/ipv6_flows.ts";
import { firstOfEach } from "../config/addresses.ts";
import { KMOD_IPV4_ONLY } from "../steering/kmod.ts";
import { foldIpv6 } from "../servers/list.ts";
import { parseIpv6 } from "../packet/ipv6_address.ts";
import {
  type ConfigChange,
  divertedView,
  ipv6FlowView,
  type NatEntryView,
  natEntryView,
  type RelayState,
  type StatusReport,
  udp6FlowView,
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

/** The relay daemon. Create with {@link Daemon.create}, then {@link Daemon.open}. */
export class Daemon {
  #config: Config;
  #settings: RewriterSettings;
  #state: RelayState = "stopped";
  #datapath?: Datapath;
  #loop?: PacketLoop;
  #loopDone: Promise<void> = new Promise(() => {});
  #sweeper?: ReturnType<typeof setInterval>;
  /** The steering, changed one step at a time and only when its spec changed. */
  readonly #steering: SteeringSync;
  /** krelay.ko's files followed, when the steering has them (see kmod_follow.ts). */
  readonly #follower?: ModuleFollower;
  /** The relay threads (relay_threads > 1), and the counters of those closed. */
  #threads?: RelayThreads;
  #threadsDone: TcpRelayStats = NO_STATS;
  /** Rejects when a relay thread fails: krelay cannot repair it and exits (see run.ts). */
  readonly #fatal = Promise.withResolvers<never>();
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
  /** The TCP services whose SYNs the gate holds with tcp_hold_syn auto (syn_doubt.ts). */
  readonly #doubt: SynDoubt;
  /** The kernel's IPv4 UDP flows: table pressure and passive health (kernel_udp.ts). */
  readonly kernelUdp: KernelUdp;

  private constructor(
    config: Config,
    relayIp: string | undefined,
    private readonly deps: DaemonDeps,
    relayIp6?: string,
  ) {
    this.#config = config;
    this.#relayIp = relayIp;
    this.#relayIp6 = relayIp6;
    this.#steering = new SteeringSync(deps.steering);
    const observe = deps.steering.observe?.bind(deps.steering);
    if (observe) {
      this.#follower = new ModuleFollower(
        observe,
        this,
        () => this.#steering.reinstall(() => this.#spec()),
      );
    }
    this.servers = new Servers({
      now: deps.now,
      onChange: () => this.#poolChanged(),
      probes: deps.probes,
    });
    this.servers.configure(config);
    this.#doubt = new SynDoubt({
      now: deps.now,
      rule: () => ({
        rise: this.#config.health_rise,
        quietMs: this.#config.health_interval * 1000,
      }),
      onChange: () => this.#synHoldChanged(),
    });
    this.#settings = rewriterSettings(
      config,
      relayIp,
      [],
      this.servers.pool(),
      relayIp6,
      this.servers.pool6(),
    );
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
    this.kernelUdp = new KernelUdp({
      run: deps.run,
      now: deps.now,
      limits: () => ({
        max: this.#config.nat_max_entries,
        timeoutMs: this.#config.udp_timeout * 1000,
      }),
      judged: (port) => this.servers.checksUdp(port),
      onJudged: (port, server, failed, ok) =>
        this.servers.passiveUdpFlows(port, server, failed, ok),
      // The flowtable would carry an evicted flow on until its next datagram through nftables.
      onEvicted: (flows) => deps.steering.forgetUdpFlows?.(flows),
    });
    this.table.addChangeListener((e) => {
      // A new UDP flow (its first packet, not yet counted) of a service the kernel carries.
      if (e.protocol !== "udp" || e.packetsToServer !== 0 || e.state !== "unreplied") return;
      if (this.#state !== "started" || this.#settings.scriptedUdpPorts.has(e.servicePort)) return;
      this.kernelUdp.created(e.client, e.clientPort, e.servicePort, e.server);
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
      onFailed: () => this.#relayReported(),
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
        return [t ? t.server >>> 0 : (this.#settings.pool.servers[0]?.ip ?? 0) >>> 0, servicePort];
      },
      relayIp6: () => this.#settings.relayIp6,
      serverOf6: (protocol, client, clientPort, servicePort) => {
        // As serverOf: a UDP flow's own server, else the first (a TCP one: the one picked).
        const f = protocol === 17
          ? this.engine.udp6.get(client, clientPort, servicePort)
          : undefined;
        if (f) return [f.server, servicePort];
        const t = protocol === 6
          ? this.engine.tcp.target6(servicePort, foldIpv6(parseIpv6(client)))
          : undefined;
        return [t ? t.server : this.#settings.pool6?.servers[0]?.address ?? "::", servicePort];
      },
      now: deps.now,
      onServicesChanged: () => this.#scriptsChanged(),
    });
  }

  /** Builds a daemon for `config`, detecting the relay address if it is not set. */
  static async create(config: Config, deps: DaemonDeps): Promise<Daemon> {
    const real = firstOfEach(config.real_ip);
    const relay = firstOfEach(config.relay_ip);
    // Without an IPv4 server (an IPv6-only relay), IPv4 clients are not relayed.
    if (real.v4 === undefined && deps.steering.observe !== undefined) {
      throw new Error(KMOD_IPV4_ONLY);
    }
    const relayIp = real.v4 === undefined
      ? undefined
      : relay.v4 ?? await detectRelayIp(deps.run, real.v4);
    let relayIp6 = relay.v6;
    if (relayIp6 === undefined && real.v6 !== undefined) {
      relayIp6 = await detectRelayIp6(deps.run, real.v6).catch((e) => {
        log.warning("IPv6 clients are not relayed: {error}", { error: String(e) });
        return undefined;
      });
    }
    if (relayIp === undefined && relayIp6 === undefined) {
      throw new Error("real_ip: no IPv4 server, and no IPv6 relay address: nothing to relay");
    }
    const own = [...(relayIp === undefined ? [] : [relayIp]), ...await ownAddresses(deps.run)];
    checkRealServers(config.real_ip, own, relayIp6);
    return new Daemon(config, relayIp, deps, relayIp6);
  }

  /**
   * The relay's IPv4 address; undefined when the relay has IPv6 servers only. It may come and
   * go live, with real_ip and relay_ip (see setConfig).
   */
  get relayIp(): string | undefined {
    return this.#relayIp;
  }
  #relayIp?: string;

  /**
   * The relay's IPv6 address, when IPv6 clients are relayed (or would be, given an IPv6
   * server). It may come and go live, as relayIp.
   */
  get relayIp6(): string | undefined {
    return this.#relayIp6;
  }
  #relayIp6?: string;

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
      outcome: (port, connected) =>
        connected ? this.#doubt.connected(port) : this.#doubt.failed(port),
      // The packet loop waits on the gate's poller with the queue's socket.
      driven: this.#datapath.fd !== undefined && this.#datapath.drain !== undefined,
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
      await this.#steering.install(() => this.#spec());
      this.kernelUdp.reset();
    } catch (e) {
      this.relay.unlisten();
      await this.#closeThreads();
      await this.#steering.remove().catch(() => {});
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
    await this.#steering.remove().catch((e) =>
      log.error("removing steering failed: {error}", { error: String(e) })
    );
    this.table.flush();
    this.engine.udp6.flush();
    this.engine.kernel6.flush();
    this.kernelUdp.reset();
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
    const { v4: relayIp, v6: relayIp6 } = key === "real_ip" || key === "relay_ip"
      ? await this.#liveRelayAddresses(key, next)
      : { v4: this.#relayIp, v6: this.#relayIp6 };
    const from = key === "relay_ip" ? this.#relayAddresses() : this.#config[key as ConfigKey];
    if (key === "gport" && this.#state === "started" && next.tcp_ports.length > 0) {
      await this.#listen(next.gport);
    }
    this.#config = next;
    if (relayIp !== this.#relayIp) {
      // IPv4 comes or goes (the steering follows below); its flows time out as they are.
      log.info("IPv4 clients: relay address {from} -> {to}", {
        from: this.#relayIp ?? "none",
        to: relayIp ?? "none",
      });
      this.#relayIp = relayIp;
    }
    if (relayIp6 !== this.#relayIp6) {
      // IPv6 comes (the steering below adds its rules) or goes: krelay's IPv6 flows go with
      // the ip6 table, the IPv4 ones are untouched.
      if (relayIp6 === undefined) {
        this.engine.udp6.flush();
        this.engine.kernel6.flush();
        this.#ipv6Flows = new Map();
      }
      log.info("IPv6 clients: relay address {from} -> {to}", {
        from: this.#relayIp6 ?? "none",
        to: relayIp6 ?? "none",
      });
      this.#relayIp6 = relayIp6;
    }
    this.servers.configure(next);
    this.#settings = this.#rewriterSettings();
    await this.#threads?.configure(this.#threadSettings());
    // A new or no longer IPv6 real server or relay address: the IPv6 listener follows.
    if (
      (key === "real_ip" || key === "relay_ip") && this.#state === "started" &&
      next.tcp_ports.length > 0
    ) {
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
    const to = key === "relay_ip" ? this.#relayAddresses() : next[key as ConfigKey];
    log.info("config {key}: {from} -> {to}", { key, from: String(from), to: String(to) });
    return { key, from, to };
  }

  /** The relay addresses in use, as relay_ip lists them. */
  #relayAddresses(): string {
    return [this.relayIp, this.#relayIp6].filter((a) => a !== undefined).join(",");
  }

  /**
   * The relay address of each family that `next` (real_ip or relay_ip changed, as `key`)
   * gives, as at start: relay_ip's, else, when the family has a server, the one in use or one
   * detected; else none (the family is then not relayed: its rules go). Throws, changing
   * nothing, when `next` asks what cannot change live (IPv4's relay address once it has one),
   * leaves no server of any family, or no IPv4 server with krelay.ko.
   */
  async #liveRelayAddresses(
    key: "real_ip" | "relay_ip",
    next: Config,
  ): Promise<{ v4?: string; v6?: string }> {
    const real = firstOfEach(next.real_ip);
    const relay = firstOfEach(next.relay_ip);
    if (relay.v4 !== undefined && this.#relayIp !== undefined && relay.v4 !== this.#relayIp) {
      throw new Error(
        `relay_ip: the IPv4 relay address (${this.#relayIp}) cannot change while krelay runs`,
      );
    }
    if (real.v4 === undefined && this.#follower !== undefined) throw new Error(KMOD_IPV4_ONLY);
    const none = (family: string) => (e: unknown) => {
      throw new Error(`${key}: no ${family} relay address (give one in relay_ip): ${e}`);
    };
    let v4 = relay.v4;
    if (v4 === undefined && real.v4 !== undefined) {
      v4 = this.#relayIp ?? await detectRelayIp(this.deps.run, real.v4).catch(none("IPv4"));
    }
    let v6 = relay.v6;
    if (v6 === undefined && real.v6 !== undefined) {
      v6 = this.#relayIp6 ?? await detectRelayIp6(this.deps.run, real.v6).catch(none("IPv6"));
    }
    if (
      (real.v4 === undefined || v4 === undefined) && (real.v6 === undefined || v6 === undefined)
    ) {
      throw new Error(`${key}: would leave no server of a family the relay relays`);
    }
    const own = v4 === undefined ? [] : [v4];
    checkRealServers(next.real_ip, [...own, ...await ownAddresses(this.deps.run)], v6);
    return { v4, v6 };
  }

  /** The status report. */
  status(): StatusReport {
    const now = this.deps.now();
    const steered = this.#steering.spec;
    const flowtable = this.deps.steering.flowtable?.();
    return {
      pid: Deno.pid,
      state: this.#state,
      startedAt: this.#startedAt.toISOString(),
      uptimeSeconds: (now - this.#startedClock) / 1000,
      ...(this.relayIp === undefined ? {} : { relayIp: this.relayIp }),
      ...(this.relayIp6 === undefined ? {} : { relayIp6: this.relayIp6 }),
      config: this.#config,
      packets: { ...this.engine.counters },
      engineErrors: this.#loop?.engineErrors ?? 0,
      datapath: this.#datapath?.stats() ?? { received: 0, verdicts: 0, enobufs: 0, errors: 0 },
      queue: this.#datapath ? readKernelQueue(this.#config.queue) : undefined,
      tcp: this.#tcpStats(),
      relayThreads: this.#threads?.threads() ?? [],
      nat: this.table.stats(),
      kernelUdp: { ...this.kernelUdp.stats },
      ...(flowtable === undefined ? {} : { flowtable }),
      servers: this.servers.view(this.#serverCounts(), (server) => {
        // IPv6 flows are the kernel's, counted from its set (see #countIpv6Flows), and the
        // scripted services', krelay's own.
        if (server.family === 6) {
          let flows = this.#ipv6Flows.get(server.address) ?? 0;
          for (const f of this.engine.udp6.entries()) {
            if (f.server === server.address && f.expires > now) flows++;
          }
          return flows;
        }
        let flows = 0;
        for (const e of this.table.entries()) {
          if (e.protocol === "udp" && e.server === server.ip >>> 0) flows++;
        }
        return flows;
      }),
      // What the steering does now: a change still being applied is not in effect yet.
      syn: {
        heldPorts: [...(steered?.heldSynPorts ?? [])],
        refusedPorts: [...(steered?.refusedTcpPorts ?? [])],
        ...(this.#settings.pool6 !== undefined
          ? { refusedPorts6: [...(steered?.refusedTcpPorts6 ?? [])] }
          : {}),
        ...(this.#gate === undefined ? {} : { gate: this.#gateCounters(this.#gate.counters) }),
      },
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
      this.servers.pool6(),
    );
  }

  /** The kernel's IPv6 UDP flows per server, as last read (status shows them). */
  #ipv6Flows = new Map<string, number>();
  #ipv6FlowsRead = -Infinity;

  /** Reads the kernel's IPv6 flows again, every 5 s at most, for the status' servers. */
  async #countIpv6Flows(): Promise<void> {
    const now = this.deps.now();
    if (this.relayIp6 === undefined || now - this.#ipv6FlowsRead < 5000) return;
    this.#ipv6FlowsRead = now;
    const counts = new Map<string, number>();
    for (const f of await readIpv6Flows(this.deps.run)) {
      counts.set(f.server, (counts.get(f.server) ?? 0) + 1);
      // The flow lives on in the kernel: so does the engine's record of its server.
      const ms = Math.max(1, f.expiresSeconds) * 1000;
      this.engine.kernel6.record(f.client, f.clientPort, f.servicePort, f.server, ms);
    }
    this.#ipv6Flows = counts;
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

  /**
   * The relay reported its connection counts (at once after a failed connection): a failure
   * puts its service in doubt, so that with tcp_hold_syn auto its next SYNs are held.
   */
  #relayReported(): void {
    this.#doubt.relayCounts(this.#serverCounts());
  }

  /** A TCP service came into doubt or left it: with tcp_hold_syn auto, the steering follows. */
  #synHoldChanged(): void {
    if (this.#state !== "started" || this.#config.tcp_hold_syn !== "auto") return;
    this.#syncSteering().catch((e) =>
      log.error("updating steering failed: {error}", { error: String(e) })
    );
  }

  /** The NAT table's entries (UDP), and the relayed TCP connections, which have none. */
  async nat(): Promise<NatEntryView[]> {
    const now = this.deps.now();
    const threads = await this.#threads?.diverted(now) ?? [];
    // IPv6 UDP flows are the kernel's (krelay keeps no record of them): listed from its set.
    const six = this.relayIp6 !== undefined && this.#state === "started"
      ? await readIpv6Flows(this.deps.run)
      : [];
    // Scripted IPv6 services' flows are krelay's own (nat/udp6_flows.ts).
    const scripted = this.relayIp6 === undefined
      ? []
      : [...this.engine.udp6.entries()].filter((f) => f.expires > now);
    return [
      ...[...this.table.entries()].map((e) => natEntryView(e, now)),
      ...scripted.map((f) => udp6FlowView(f, this.relayIp6!, now)),
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
        onReport: () => this.#relayReported(),
        cpus: this.#config.relay_cpu_affinity ? relayCpus() : [],
        registry: this.registry.buffer,
        // A relay thread that can hold SYNs itself (thread_gate.ts).
        module: new URL("./gate_thread.ts", import.meta.url),
      },
    );
    await this.#threads.listen(port, warm);
    if (this.#config.tcp_hold_syn === true && this.#threadQueues === undefined) {
      this.#threadQueues = await this.#threads.gate(this.#config.queue + 1);
    }
  }

  /** The queue each relay thread holds SYNs of (null: none), once asked (tcp_hold_syn true). */
  #threadQueues?: (number | null)[];

  /**
   * The relay threads' SYN queues, for IPv4 clients' held SYNs with tcp_hold_syn true, when
   * every thread holds one (each keeps to a CPU of its own): queue `base` + CPU is that
   * CPU's thread's. Otherwise the main thread's gate holds them.
   */
  #heldSynQueues(): { base: number; count: number } | undefined {
    const queues = this.#threadQueues;
    if (this.#config.tcp_hold_syn !== true || queues === undefined || this.#threads === undefined) {
      return undefined;
    }
    if (queues.length === 0 || queues.some((q) => q === null)) return undefined;
    const base = this.#config.queue + 1;
    return { base, count: Math.max(...(queues as number[])) - base + 1 };
  }

  async #closeThreads(): Promise<void> {
    const threads = this.#threads;
    if (threads === undefined) return;
    this.#threads = undefined;
    this.#threadQueues = undefined;
    await threads.close();
    this.#threadsDone = addStats(this.#threadsDone, threads.stats());
    const gates = threads.gateCounters();
    if (gates !== undefined) {
      this.#threadGatesDone = addGateCounters({ ...gates }, this.#threadGatesDone);
    }
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
      syn: this.#gate && this.#gateCounters(this.#gate.counters),
      tcp: this.#tcpStats(),
      nat: this.table.stats(),
      datapath: this.#datapath?.stats(),
    });
  }

  #tick(): void {
    this.table.sweep();
    this.engine.udp6.sweep();
    this.engine.kernel6.sweep();
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
      const counts = this.#serverCounts();
      this.servers.passive(counts);
      this.#doubt.relayCounts(counts);
      this.#doubt.sweep();
      this.#doubt.retain(this.#config.tcp_ports);
      this.#countIpv6Flows().catch(() => {});
      this.kernelUdp.tick().catch((e) =>
        log.error("following the kernel's UDP flows failed: {error}", { error: String(e) })
      );
      this.#syncSteering().catch((e) =>
        log.error("updating steering failed: {error}", { error: String(e) })
      );
    }
    if (!this.#starting) this.#follower?.tick();
  }

  /** A start is installing the steering (see start()). */
  #starting = false;
  readonly #pressure = new TablePressure();

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
    const refused = this.#noServerUp("udp");
    const refusedTcp = this.#noServerUp("tcp");
    const pool6 = this.#settings.pool6;
    const refused6 = pool6 === undefined ? [] : this.#noServerUp("udp", pool6);
    const refusedTcp6 = pool6 === undefined ? [] : this.#noServerUp("tcp", pool6);
    for (const s of pool6?.servers ?? []) {
      if (s.address !== undefined && !this.#ids6.has(s.address)) {
        this.#ids6.set(s.address, this.#ids6.size);
      }
    }
    const heldSynQueues = this.#heldSynQueues();
    return {
      ...spec,
      heldSynPorts: this.#heldSynPorts(),
      ...(heldSynQueues === undefined ? {} : { heldSynQueues }),
      ...(refusedTcp.length > 0 ? { refusedTcpPorts: refusedTcp } : {}),
      listeners: this.#threads?.listeners ?? (main >= 0 ? [main] : []),
      listeners6: this.#threads?.listeners6 ?? (main6 >= 0 ? [main6] : []),
      ...(refused.length > 0 ? { refusedUdpPorts: refused } : {}),
      ...(refused6.length > 0 ? { refusedUdpPorts6: refused6 } : {}),
      ...(refusedTcp6.length > 0 ? { refusedTcpPorts6: refusedTcp6 } : {}),
      servers6: [...this.#ids6].map(([address, id]) => ({ address, id })),
    };
  }

  /** The configured services of `protocol` with no server up in `pool` (refused by the kernel). */
  #noServerUp(protocol: "udp" | "tcp", pool: ServerPool = this.#settings.pool): number[] {
    const ports = protocol === "udp" ? this.#config.udp_ports : this.#config.tcp_ports;
    return ports.filter((p) => pool.up[serviceKey(protocol, p)]?.every((up) => !up) === true);
  }

  /** The gates of relay threads closed since the start (thread_gate.ts), added up. */
  #threadGatesDone?: SynGateCounters;

  /** The main thread's gate's counters and the relay threads' (thread_gate.ts), added up. */
  #gateCounters(main: SynGateCounters): SynGateCounters {
    return addGateCounters(
      addGateCounters({ ...main }, this.#threadGatesDone),
      this.#threads?.gateCounters(),
    );
  }

  /** The TCP services whose clients' SYNs the gate holds, by tcp_hold_syn. */
  #heldSynPorts(): number[] {
    const mode = this.#config.tcp_hold_syn;
    if (mode === "auto") return this.#doubt.ports();
    return mode ? [...this.#config.tcp_ports] : [];
  }

  /**
   * The id of each IPv6 server's flow set (udp6_rules.ts), for the run: a server taken out of
   * real_ip keeps its set, so that its flows go on to it until they time out.
   */
  readonly #ids6 = new Map<string, number>();

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
    return this.#steering.update(() => this.#spec());
  }
}
