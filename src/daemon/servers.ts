/**
 * The real servers of a running relay: the list from `real_ip`, their health (active checks
 * by checker.ts, passive results from the relay's connection counts), the {@link ServerPool}
 * the relay's settings carry, and the servers as `krelay status` shows them.
 *
 * @example
 * ```ts ignore
 * const servers = new Servers({ now: () => performance.now(), onChange: () => resend() });
 * servers.configure(config);
 * servers.start();
 * settings.pool = servers.pool();
 * ```
 * @module
 */

import type { Config } from "../config/schema.ts";
import type { FlowCounts } from "../nat/tcp_targets.ts";
import { logger } from "../system/log.ts";
import type { ServerPool } from "../servers/balancer.ts";
import { Checker, type CheckerOptions, udpProbe } from "../servers/checker.ts";
import {
  type HealthSettings,
  type HealthState,
  ServerHealth,
  type Service,
} from "../servers/health.ts";
import { ofFamily, type ServerEntry, serverList } from "../servers/list.ts";

const log = logger("health");

const NO_COUNTS: FlowCounts = { active: 0, total: 0, connected: 0, failed: 0 };

/** One service's check of a server, as status shows it. */
export interface CheckView {
  /** "tcp/80", "udp/53". */
  service: string;
  state: HealthState;
  /** Seconds in this state. */
  forSeconds: number;
  /** Active probes and their failures, and flows of the relay that could not reach it. */
  checks: number;
  checkFailures: number;
  passiveFailures: number;
  /** The last probe: "ok", why it failed, or "" before the first. */
  last: string;
}

/** One real server as `krelay status` shows it. */
export interface ServerView {
  address: string;
  weight: number;
  backup: boolean;
  /** up: every service up; down: every one down; partial: some down (they get no new flows). */
  state: "up" | "down" | "partial";
  checks: CheckView[];
  /** TCP connections relayed to it: open now, since start, refused or unreachable. */
  tcpActive: number;
  tcpTotal: number;
  tcpFailed: number;
  /** UDP flows to it that krelay's NAT table holds now (first packets within udp_timeout). */
  udpFlows: number;
}

/** The health settings of a config. */
export function healthSettings(config: Config): HealthSettings {
  return {
    intervalMs: config.health_interval * 1000,
    timeoutMs: config.health_timeout * 1000,
    rise: config.health_rise,
    fall: config.health_fall,
  };
}

/**
 * A pool of every listed server of `family` up, for a config (what a relay without health
 * checks uses).
 */
export function staticPool(config: Config, family: 4 | 6 = 4): ServerPool {
  return { servers: ofFamily(serverList(config.real_ip), family), balance: config.balance, up: {} };
}

/** The pool of one family: its servers, and their columns of each service's health. */
function familyPool(
  list: readonly ServerEntry[],
  family: 4 | 6,
  balance: ServerPool["balance"],
  up: Record<string, boolean[]>,
): ServerPool {
  const index = list.flatMap((s, i) => s.family === family ? [i] : []);
  const own: Record<string, boolean[]> = {};
  for (const [key, all] of Object.entries(up)) own[key] = index.map((i) => all[i]);
  return { servers: index.map((i) => list[i]), balance, up: own };
}

/** The servers of a relay, their health and their checks. */
export class Servers {
  #list: ServerEntry[] = [];
  #balance: ServerPool["balance"] = "client-hash";
  #pool: ServerPool = { servers: [], balance: "client-hash", up: {} };
  #pool6: ServerPool = { servers: [], balance: "client-hash", up: {} };
  #poolGeneration = -1;
  readonly #health: ServerHealth;
  readonly #checker: Checker;
  #config?: Config;
  /** The connection counts last seen, by "port/server", for the passive checks' deltas. */
  #seen: Record<string, FlowCounts> = {};

  constructor(
    private readonly options: {
      now: () => number;
      /** A server went down or came back: the relay's settings must be sent again. */
      onChange: () => void;
      /** Other probes (tests). */
      probes?: Pick<CheckerOptions, "probeTcp" | "probeUdp">;
    },
  ) {
    this.#health = new ServerHealth(
      { intervalMs: 2000, timeoutMs: 1000, rise: 2, fall: 3 },
      (c) => {
        const what = { address: c.address, service: `${c.service.protocol}/${c.service.port}` };
        if (c.state === "down") {
          log.warning("server {address} {service} is down, out of rotation: {detail}", {
            ...what,
            detail: c.detail,
          });
        } else log.info("server {address} {service} is up, back in rotation", what);
        options.onChange();
      },
    );
    this.#checker = new Checker(this.#health, {
      now: options.now,
      udpProbe: () =>
        this.#config
          ? udpProbe(this.#config.health_udp_probe, this.#config.health_dns_name)
          : "none",
      ...options.probes,
    });
  }

  /** Follows a (new) config: the list, the services to check and how. */
  configure(config: Config): void {
    this.#config = config;
    this.#list = serverList(config.real_ip);
    this.#balance = config.balance;
    // One server has no other to take its flows: it is not checked, and behaves as krelay's
    // one real server always did (a client's connection fails as the server's does). Each
    // family is its own pool (a client is relayed within its family).
    const several = [4, 6].some((f) => ofFamily(this.#list, f as 4 | 6).length > 1);
    const checked = several && config.health_checks;
    const services: Service[] = !checked ? [] : [
      ...config.tcp_ports.map((port) => ({ protocol: "tcp" as const, port })),
      ...(config.health_udp_probe === "none"
        ? []
        : config.udp_ports.map((port) => ({ protocol: "udp" as const, port }))),
    ];
    this.#health.configure(
      this.#list.map((s) => s.address),
      services,
      healthSettings(config),
      this.options.now(),
    );
  }

  /**
   * The IPv4 servers' pool for the relay's settings; the same object until the servers or
   * health change.
   */
  pool(): ServerPool {
    this.#makePools();
    return this.#pool;
  }

  /** {@link Servers.pool} for the IPv6 servers. */
  pool6(): ServerPool {
    this.#makePools();
    return this.#pool6;
  }

  #makePools(): void {
    const generation = this.#health.generation;
    if (generation === this.#poolGeneration) return;
    const up = this.#health.up();
    this.#pool = familyPool(this.#list, 4, this.#balance, up);
    this.#pool6 = familyPool(this.#list, 6, this.#balance, up);
    this.#poolGeneration = generation;
  }

  /** Starts the active checks. */
  start(): void {
    this.#checker.start();
  }

  /** Stops the active checks. */
  stop(): Promise<void> {
    return this.#checker.stop();
  }

  /**
   * The relay's connection counts since start, by "port/server" (see TcpRelay.serverCounts;
   * an IPv4 server as an unsigned number, an IPv6 one as its address):
   * connections that failed since the last call count against their server, connected ones
   * for it.
   */
  passive(counts: Record<string, FlowCounts>): void {
    const now = this.options.now();
    for (const [key, c] of Object.entries(counts)) {
      const before = this.#seen[key] ?? NO_COUNTS;
      // Counts went back (relay threads closed and started again): start from these.
      const failed = c.failed >= before.failed ? c.failed - before.failed : 0;
      const connected = c.connected >= before.connected ? c.connected - before.connected : 0;
      if (failed === 0 && connected === 0) continue;
      const address = this.#serverOf(key);
      if (address === undefined) continue;
      const port = Number(key.split("/")[0]);
      this.#health.passive({ protocol: "tcp", port }, address, failed, connected, now);
    }
    this.#seen = counts;
  }

  /**
   * A UDP flow to `server` (unsigned) on `port` ended: unanswered, it counts against the
   * server; answered, for it. Flows whose replies krelay sees (services with a packet script,
   * NATed in user space); the kernel's are {@link Servers.passiveUdpFlows}'.
   */
  passiveUdp(port: number, server: number, answered: boolean): void {
    const address = this.#list.find((s) => s.family === 4 && s.ip >>> 0 === server)?.address;
    if (address === undefined) return;
    const [failed, ok] = answered ? [0, 1] : [1, 0];
    this.#health.passive({ protocol: "udp", port }, address, failed, ok, this.options.now());
  }

  /**
   * Flows of the kernel to `server` (unsigned) on `port` judged in one tick: `failures` that had
   * no answer, `successes` that had (kernel_udp.ts).
   */
  passiveUdpFlows(port: number, server: number, failures: number, successes: number): void {
    const address = this.#list.find((s) => s.family === 4 && s.ip >>> 0 === server)?.address;
    if (address === undefined) return;
    this.#health.passive(
      { protocol: "udp", port },
      address,
      failures,
      successes,
      this.options.now(),
    );
  }

  /** Whether the servers' `udp/port` service is checked (several servers, UDP checks on). */
  checksUdp(port: number): boolean {
    const first = this.#list.find((s) => s.family === 4)?.address;
    return first !== undefined &&
      this.#health.check({ protocol: "udp", port }, first) !== undefined;
  }

  /** The listed server a "port/server" key of the relay's counts is about. */
  #serverOf(key: string): string | undefined {
    const server = key.slice(key.indexOf("/") + 1);
    if (server.includes(":")) return this.#list.find((s) => s.address === server)?.address;
    return this.#list.find((s) => s.family === 4 && s.ip >>> 0 === Number(server))?.address;
  }

  /**
   * The servers as status shows them, given the relay's counts and the UDP flows of each
   * server (by its address).
   */
  view(tcp: Record<string, FlowCounts>, udpFlows: (server: ServerEntry) => number): ServerView[] {
    const now = this.options.now();
    return this.#list.map((s) => {
      const checks: CheckView[] = [];
      const services = [
        ...(this.#config?.tcp_ports ?? []).map((port) => ({ protocol: "tcp" as const, port })),
        ...(this.#config?.udp_ports ?? []).map((port) => ({ protocol: "udp" as const, port })),
      ];
      for (const service of services) {
        const c = this.#health.check(service, s.address);
        if (c === undefined) continue;
        const h = c.health;
        checks.push({
          service: `${service.protocol}/${service.port}`,
          state: h.state,
          forSeconds: Math.max(0, (now - h.since) / 1000),
          checks: h.checks,
          checkFailures: h.checkFailures,
          passiveFailures: h.passiveFailures,
          last: h.last === undefined ? "" : h.last.ok ? "ok" : h.last.detail,
        });
      }
      const down = checks.filter((c) => c.state === "down").length;
      let tcpActive = 0, tcpTotal = 0, tcpFailed = 0;
      for (const [key, c] of Object.entries(tcp)) {
        if (this.#serverOf(key) !== s.address) continue;
        tcpActive += c.active;
        tcpTotal += c.total;
        tcpFailed += c.failed;
      }
      return {
        address: s.address,
        weight: s.weight,
        backup: s.backup,
        state: down === 0 ? "up" : down === checks.length ? "down" : "partial",
        checks,
        tcpActive,
        tcpTotal,
        tcpFailed,
        udpFlows: udpFlows(s),
      };
    });
  }
}
