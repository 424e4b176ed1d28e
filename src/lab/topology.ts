/**
 * The lab: three network namespaces (client, relay, server) and an optional second server,
 * wired with veth pairs created from inside the namespaces, so nothing is ever added to the
 * machine's own namespace. The relay forwards between the two subnets; the servers route
 * their replies through it. See {@link LAB_ADDR} for the addresses.
 *
 * @example
 * ```ts
 * import { Lab } from "./topology.ts";
 * const lab = await Lab.start({ prefix: "krl", secondServer: true });
 * try {
 *   const r = await lab.exec("client", ["curl", "-s", "http://203.0.113.10/"]);
 * } finally {
 *   await lab.down();
 * }
 * ```
 * Longer than 400 lines: the namespaces, links, addresses (both families), routes and their
 * clean-up are one topology, built and torn down together.
 *
 * @module
 */

import { LAB_ADDR, LAB_ADDR6, LAB_IF, LAB_PREFIX_LEN, LAB_PREFIX_LEN6 } from "./addresses.ts";
import { readOwner, removeLab, writeOwner } from "./cleanup.ts";
import { type LabNamespaces, labNamespaces, type Role } from "./names.ts";
import {
  type LabProcess,
  run,
  runIn,
  type RunOptions,
  type RunResult,
  spawnIn,
} from "./process.ts";
import { type ListenWaitOptions, probeTcp, sleep, waitForListen } from "./wait.ts";

/** Options for {@link Lab}. */
export interface LabOptions {
  /** Namespace name prefix: tests use `krt-<random>`, `krelay lab` uses `krl`. */
  prefix: string;
  /** Also build `<prefix>-srv2` at 203.0.113.20 on the server-side link. */
  secondServer?: boolean;
  /** Parent of the run directory. Default: the system temp directory. */
  baseDir?: string;
  /** Keep the run directory (logs, configs) when the lab goes down. */
  keepRunDir?: boolean;
  /** How long processes get between SIGTERM and SIGKILL on down(). Default 3 s. */
  graceMs?: number;
  /** Progress messages (default: none). */
  log?: (message: string) => void;
}

/** A real server of the lab. */
export interface LabServer {
  /** "srv1" (namespace `<prefix>-srv`) or "srv2" (namespace `<prefix>-srv2`). */
  id: "srv1" | "srv2";
  /** Its namespace. */
  ns: string;
  /** Its address. */
  address: string;
  /** Its IPv6 address. */
  address6: string;
  /** Its role name, for {@link Lab.exec}. */
  role: "server" | "server2";
}

/** Where a command runs: a role, or one of the lab's own namespace names. */
export type Where = Role | string;

type State = "new" | "building" | "up" | "down";

/** A network-namespace lab; build it with {@link Lab.up} (or {@link Lab.start}). */
export class Lab {
  /** The namespace name prefix. */
  readonly prefix: string;
  /** The namespace names. */
  readonly ns: LabNamespaces;
  /** The addresses (the same for every lab). */
  readonly addr: typeof LAB_ADDR = LAB_ADDR;
  /** The IPv6 addresses (the same for every lab). */
  readonly addr6: typeof LAB_ADDR6 = LAB_ADDR6;
  readonly #opts: LabOptions;
  readonly #log: (message: string) => void;
  readonly #processes: LabProcess[] = [];
  #runDir: string | undefined;
  #state: State = "new";

  constructor(opts: LabOptions) {
    this.ns = labNamespaces(opts.prefix, opts.secondServer ?? false);
    this.prefix = opts.prefix;
    this.#opts = opts;
    this.#log = opts.log ?? (() => {});
  }

  /** Builds a lab and returns it, up and checked. */
  static async start(opts: LabOptions): Promise<Lab> {
    const lab = new Lab(opts);
    await lab.up();
    return lab;
  }

  /** True between a successful up() and down(). */
  get isUp(): boolean {
    return this.#state === "up";
  }

  /** True when the lab has the second server. */
  get hasSecondServer(): boolean {
    return this.ns.server2 !== undefined;
  }

  /** The run directory (logs, configs, served files); exists once up() has begun. */
  get runDir(): string {
    if (this.#runDir === undefined) throw new Error(`lab ${this.prefix} has no run directory yet`);
    return this.#runDir;
  }

  /** The real servers: srv1, and srv2 when the lab has it. */
  get servers(): LabServer[] {
    const list: LabServer[] = [
      {
        id: "srv1",
        ns: this.ns.server,
        address: LAB_ADDR.server,
        address6: LAB_ADDR6.server,
        role: "server",
      },
    ];
    if (this.ns.server2) {
      list.push({
        id: "srv2",
        ns: this.ns.server2,
        address: LAB_ADDR.server2,
        address6: LAB_ADDR6.server2,
        role: "server2",
      });
    }
    return list;
  }

  /** One server by id; throws when the lab does not have it. */
  server(id: "srv1" | "srv2" = "srv1"): LabServer {
    const s = this.servers.find((x) => x.id === id);
    if (!s) throw new Error(`lab ${this.prefix} has no ${id} (build it with secondServer: true)`);
    return s;
  }

  /** Every process the lab started, running or not (kept after down() for checks). */
  get processes(): readonly LabProcess[] {
    return this.#processes;
  }

  /**
   * Builds the lab: removes any earlier lab with the same prefix, creates the namespaces,
   * links, addresses, routes and sysctls, then checks that the client reaches every server
   * by routing. On failure, tears down what it built and rethrows.
   */
  async up(): Promise<void> {
    if (this.#state !== "new") throw new Error(`lab ${this.prefix} was already brought up`);
    this.#state = "building";
    const started = performance.now();
    try {
      if (this.#opts.baseDir) await Deno.mkdir(this.#opts.baseDir, { recursive: true });
      this.#runDir = await Deno.makeTempDir({
        dir: this.#opts.baseDir,
        prefix: `krelay-lab-${this.prefix}-`,
      });
      const removed = await removeLab(this.prefix);
      if (removed.length > 0) this.#log(`removed an earlier lab: ${removed.join(" ")}`);
      await writeOwner(this.prefix, this.#runDir, this.#opts.keepRunDir ?? false);
      await this.#build();
      await this.checkRouting();
      this.#state = "up";
      this.#log(
        `lab ${this.prefix} up in ${Math.round(performance.now() - started)} ms (${this.#runDir})`,
      );
    } catch (e) {
      await this.down().catch((d) => this.#log(`teardown after failed up(): ${d}`));
      throw e;
    }
  }

  async #build(): Promise<void> {
    const ns = this.ns;
    const all = Object.values(ns) as string[];
    await run(["ip", "-batch", "-"], {
      stdin: all.map((n) => `netns add ${n}\n`).join(""),
      check: true,
    });

    // Before any link exists, so every interface inherits them: dual stack with static
    // addresses only (no router advertisements or autoconfiguration), and rp_filter=0.
    const common = [
      "net.ipv6.conf.all.disable_ipv6=0",
      "net.ipv6.conf.default.disable_ipv6=0",
      "net.ipv6.conf.all.accept_ra=0",
      "net.ipv6.conf.default.accept_ra=0",
      "net.ipv6.conf.default.autoconf=0",
    ];
    await Promise.all([
      sysctl(ns.client, [...common, "net.ipv4.tcp_tw_reuse=1"]),
      sysctl(ns.relay, [
        ...common,
        "net.ipv4.ip_forward=1",
        "net.ipv6.conf.all.forwarding=1",
        "net.ipv4.conf.all.rp_filter=0",
        "net.ipv4.conf.default.rp_filter=0",
        "net.ipv4.conf.all.send_redirects=0",
        "net.ipv4.conf.default.send_redirects=0",
      ]),
      // br_netfilter (built into some kernels) would pass bridged frames through iptables with
      // bridge-port names; off, the bridge is a plain link and rules see srv0 only.
      sysctl(ns.relay, [
        "net.bridge.bridge-nf-call-iptables=0",
        "net.bridge.bridge-nf-call-ip6tables=0",
        "net.bridge.bridge-nf-call-arptables=0",
      ], true),
      ...this.servers.map((s) => sysctl(s.ns, common)),
    ]);

    // One bridge for the server side, so both servers share a link and one /24. It goes up
    // before it has ports: a bridge that gets its carrier from a new port waits for the
    // kernel's rate-limited link watcher (about 1 s) before it passes traffic.
    await ipBatch(ns.relay, [
      "link set lo up",
      `link add ${LAB_IF.relayServer} type bridge stp_state 0`,
      `link set ${LAB_IF.relayServer} up`,
    ]);

    const P = LAB_PREFIX_LEN;
    const P6 = LAB_PREFIX_LEN6;
    const ends = [
      ipBatch(ns.client, [
        "link set lo up",
        `link add ${LAB_IF.host} type veth peer name ${LAB_IF.relayClient} netns ${ns.relay}`,
        `addr add ${LAB_ADDR.client}/${P} dev ${LAB_IF.host}`,
        `addr add ${LAB_ADDR.client2}/${P} dev ${LAB_IF.host}`,
        `addr add ${LAB_ADDR6.client}/${P6} dev ${LAB_IF.host} nodad`,
        // Deprecated (preferred_lft 0): a source only when asked for, as client2 is for IPv4.
        `addr add ${LAB_ADDR6.client2}/${P6} dev ${LAB_IF.host} nodad preferred_lft 0`,
        `link set ${LAB_IF.host} up`,
      ]),
      ...this.servers.map((s) => {
        const port = s.id === "srv1" ? LAB_IF.relayServerPort1 : LAB_IF.relayServerPort2;
        return ipBatch(s.ns, [
          "link set lo up",
          `link add ${LAB_IF.host} type veth peer name ${port} netns ${ns.relay}`,
          `addr add ${s.address}/${P} dev ${LAB_IF.host}`,
          `addr add ${s.address6}/${P6} dev ${LAB_IF.host} nodad`,
          `link set ${LAB_IF.host} up`,
        ]);
      }),
    ];
    await Promise.all(ends);

    const ports = this.servers.map((s) =>
      s.id === "srv1" ? LAB_IF.relayServerPort1 : LAB_IF.relayServerPort2
    );
    await ipBatch(ns.relay, [
      ...ports.map((p) => `link set ${p} master ${LAB_IF.relayServer}`),
      `addr add ${LAB_ADDR.relay}/${P} dev ${LAB_IF.relayClient}`,
      `addr add ${LAB_ADDR.relayServerSide}/${P} dev ${LAB_IF.relayServer}`,
      `addr add ${LAB_ADDR6.relay}/${P6} dev ${LAB_IF.relayClient} nodad`,
      `addr add ${LAB_ADDR6.relayServerSide}/${P6} dev ${LAB_IF.relayServer} nodad`,
      `link set ${LAB_IF.relayClient} up`,
      ...ports.map((p) => `link set ${p} up`),
    ]);

    await Promise.all([
      // An explicit source, so the second client address is used only when asked for.
      ipBatch(ns.client, [
        `route add default via ${LAB_ADDR.relay} dev ${LAB_IF.host} src ${LAB_ADDR.client}`,
        `route add ::/0 via ${LAB_ADDR6.relay} dev ${LAB_IF.host} src ${LAB_ADDR6.client}`,
      ]),
      ...this.servers.map((s) =>
        ipBatch(s.ns, [
          `route add default via ${LAB_ADDR.relayServerSide} dev ${LAB_IF.host}`,
          `route add ::/0 via ${LAB_ADDR6.relayServerSide} dev ${LAB_IF.host}`,
        ])
      ),
    ]);
  }

  /**
   * Checks that the client reaches every server through the relay by plain routing: a TCP
   * connection to a closed port must be refused by the server itself (no ping needed).
   * Retries for up to `timeoutMs` while links settle.
   */
  async checkRouting(timeoutMs = 8_000): Promise<void> {
    for (
      const [s, address] of this.servers.flatMap((s) => [[s, s.address], [s, s.address6]] as const)
    ) {
      const deadline = performance.now() + timeoutMs;
      let last = "failed";
      for (let i = 0; i < 40 && performance.now() < deadline; i++) {
        last = await probeTcp(this.ns.client, address, 9, 2_000);
        if (last !== "failed") break;
        await sleep(100);
      }
      if (last === "failed") {
        const routes = await runIn(this.ns.client, [
          "ip",
          address.includes(":") ? "-6" : "-4",
          "route",
        ], { timeoutMs: 2_000 });
        throw new Error(
          `lab ${this.prefix}: the client cannot reach ${s.id} (${address}) through the relay; ` +
            `client routes: ${routes.stdout.trim().replaceAll("\n", "; ")}`,
        );
      }
    }
  }

  /** The namespace for a role or a namespace name; refuses names that are not this lab's. */
  nsOf(where: Where): string {
    const byRole = (this.ns as unknown as Record<string, string | undefined>)[where];
    if (byRole) return byRole;
    if ((Object.values(this.ns) as string[]).includes(where)) return where;
    throw new RangeError(`"${where}" is not a namespace or role of lab ${this.prefix}`);
  }

  /** Runs a command to completion in one of the lab's namespaces (see {@link runIn}). */
  exec(where: Where, cmd: readonly string[], opts?: RunOptions): Promise<RunResult> {
    return runIn(this.nsOf(where), cmd, opts);
  }

  /**
   * Starts a long-running command in one of the lab's namespaces, tracked by PID and stopped
   * by down(); its output goes to `<runDir>/<name>.log`.
   */
  spawn(
    where: Where,
    name: string,
    cmd: readonly string[],
    opts: { env?: Record<string, string> } = {},
  ): LabProcess {
    if (this.#state !== "up" && this.#state !== "building") {
      throw new Error(`lab ${this.prefix} is not up`);
    }
    const p = spawnIn(this.nsOf(where), name, cmd, {
      logPath: this.#uniqueLogPath(name),
      env: opts.env,
    });
    this.#processes.push(p);
    this.#log(`started ${name} (pid ${p.pid}) in ${this.nsOf(where)}: ${cmd.join(" ")}`);
    return p;
  }

  #uniqueLogPath(name: string): string {
    const base = name.replace(/[^A-Za-z0-9._-]/g, "_") || "process";
    const taken = new Set(this.#processes.map((p) => p.logPath));
    let path = `${this.runDir}/${base}.log`;
    for (let i = 2; taken.has(path) && i < 10_000; i++) path = `${this.runDir}/${base}-${i}.log`;
    return path;
  }

  /** Waits until a socket listens on `port` in one of the lab's namespaces. */
  waitForListen(
    where: Where,
    proto: "tcp" | "udp",
    port: number,
    opts?: ListenWaitOptions,
  ): Promise<void> {
    return waitForListen(this.nsOf(where), proto, port, opts);
  }

  /**
   * Tears the lab down: stops every process it started (SIGTERM, SIGKILL after the grace
   * period), stops anything else still inside its namespaces, deletes the namespaces and,
   * unless asked to keep it, the run directory. Safe to call more than once; tries every
   * step and throws an AggregateError afterwards if any failed.
   */
  async down(opts: { keepRunDir?: boolean } = {}): Promise<void> {
    if (this.#state === "down" || this.#state === "new") {
      this.#state = "down";
      return;
    }
    this.#state = "down";
    const grace = this.#opts.graceMs ?? 3_000;
    const errors: unknown[] = [];
    const stops = await Promise.allSettled(this.#processes.map((p) => p.stop(grace)));
    for (const s of stops) if (s.status === "rejected") errors.push(s.reason);
    try {
      // A later lab with the same prefix replaced this one: its namespaces are not ours.
      const owner = await readOwner(this.prefix);
      if (owner && owner.runDir !== this.#runDir) {
        this.#log(`lab ${this.prefix} was replaced by a newer lab; leaving its namespaces`);
      } else {
        await removeLab(this.prefix, { graceMs: grace, keepRunDir: true });
      }
    } catch (e) {
      errors.push(e);
    }
    const keep = opts.keepRunDir ?? this.#opts.keepRunDir ?? false;
    if (this.#runDir !== undefined) {
      if (keep) this.#log(`kept the run directory ${this.#runDir}`);
      else {
        await Deno.remove(this.#runDir, { recursive: true }).catch((e) => {
          if (!(e instanceof Deno.errors.NotFound)) errors.push(e);
        });
      }
    }
    if (errors.length > 0) throw new AggregateError(errors, `lab ${this.prefix}: down() failed`);
  }
}

/** Runs `ip -n NS -batch -` with these lines; throws on the first failing line. */
async function ipBatch(ns: string, lines: string[]): Promise<void> {
  await run(["ip", "-n", ns, "-batch", "-"], { stdin: lines.join("\n") + "\n", check: true });
}

/** Sets sysctls inside a namespace; `ignoreUnknown` tolerates keys this kernel lacks. */
async function sysctl(ns: string, settings: string[], ignoreUnknown = false): Promise<void> {
  const flags = ignoreUnknown ? ["-q", "-e", "-w"] : ["-q", "-w"];
  const r = await runIn(ns, ["sysctl", ...flags, ...settings], { timeoutMs: 5_000 });
  if (!r.success && !ignoreUnknown) {
    throw new Error(`sysctl in ${ns} failed: ${r.stderr.trim()}`);
  }
}
