/**
 * The script host: the loaded scripts, each in its own sandboxed worker and attached to
 * services, and the decisions on the packets of those services. The packet loop asks
 * {@link ScriptHost.request} (before NAT) and {@link ScriptHost.reply} (after NAT) which packets
 * are the scripts', then hands them over in one {@link ScriptHost.run} per batch: one round trip
 * per script concerned, not one per packet.
 *
 * Failures never stop the relay: a packet whose script threw, or every packet of a batch the
 * script did not decide within the budget (its process is then killed and restarted), gets
 * the default verdict; errors are counted and logged with the script's name, and a script with
 * `maxErrors` errors within the window is disabled (its packets then get the default verdict).
 * A script whose process goes past a limit (memory, CPU outside batches, console output; see
 * script_worker.ts) is killed and disabled at once. Its console lines reach krelay's log at
 * most {@link LOG_LINES_PER_S} a second; the rest are counted and reported.
 *
 * @example
 * ```ts ignore
 * const host = new ScriptHost({ policy: () => policy, relayIp: () => relay, serverOf, now });
 * await host.load("logger", "examples/packet_logger.ts", parseServices("udp:53"));
 * const job = host.request(bytes); // a BatchPacket when a script covers its service
 * if (job) await host.run([job]); // job.drop, job.changed, job.bytes
 * ```
 * Longer than 400 lines: the scripts' life (load, swap, unload, restart, disable) and the
 * batches' verdicts act on the same entries and error windows; the process, its framing and
 * its limits live in script_worker.ts, frame.ts and worker_runtime.ts.
 *
 * @module
 */

import { unusableAddress } from "../config/real_ip.ts";
import { unusableIpv6 } from "../config/addresses.ts";
import { Ipv6Packet, parseIpv6Packet } from "../packet/ipv6_packet.ts";
import { formatIpv4 } from "../packet/address.ts";
import { IpProtocol, Ipv4Packet, parseIpv4Packet } from "../packet/ipv4_packet.ts";
import { logger } from "../system/log.ts";
import type { Verdict } from "./api.ts";
import { checkScript, scriptUrl } from "./check.ts";
import { ErrorWindow } from "./error_window.ts";
import {
  type BatchResult,
  DEFAULT_LIMITS,
  type ScriptLimits,
  ScriptWorker,
} from "./script_worker.ts";
import { formatServices, keyOf, type Service, serviceKey } from "./services.ts";
import { type BatchPacket, type LogLine, Outcome } from "./wire.ts";

const log = logger("script");

/** Console lines of one script written to krelay's log per second (a burst of twice that). */
export const LOG_LINES_PER_S = 50;

/** How scripts fail; read on every batch. */
export interface ScriptPolicy {
  /** The verdict for packets a script could not decide. */
  defaultVerdict: Verdict;
  /** How long a script may take on one batch. */
  budgetMs: number;
  /** Errors within `errorWindowMs` that disable a script. */
  maxErrors: number;
  errorWindowMs: number;
  /** The limits of each script's process; default {@link DEFAULT_LIMITS}. */
  limits?: Partial<ScriptLimits>;
}

/** What the host needs from the daemon. */
export interface ScriptHostOptions {
  policy: () => ScriptPolicy;
  /** The relay's address (the service side of every flow). */
  relayIp: () => number;
  /** The real server of a flow: its NAT entry's, or where a new flow would go. */
  serverOf: (
    protocol: number,
    client: number,
    clientPort: number,
    service: number,
    servicePort: number,
  ) => [number, number];
  /** The relay's IPv6 address (canonical text), when IPv6 clients are relayed. */
  relayIp6?: () => string | undefined;
  /**
   * {@link ScriptHostOptions.serverOf} for an IPv6 flow (addresses as canonical text);
   * without it, IPv6 packets are no script's.
   */
  serverOf6?: (
    protocol: number,
    client: string,
    clientPort: number,
    servicePort: number,
  ) => [string, number];
  /** Monotonic clock (ms). */
  now: () => number;
  /** The check before loading; default {@link checkScript} (tests may skip it). */
  check?: (file: string) => Promise<void>;
  /**
   * Called when the set of services with scripts changed (a load or an unload), for the
   * steering to send those services' packets through the queue, or no longer.
   */
  onServicesChanged?: () => void | Promise<void>;
}

/** A packet for the scripts, and what they decided. */
export interface ScriptJob extends BatchPacket {
  /** A script dropped it (or it got the default verdict drop). */
  drop: boolean;
  /** A script changed it: `bytes` is the new datagram, checksums fixed. */
  changed: boolean;
  /** Its service's lookup number. */
  key: number;
}

/** Whether a script decides packets. */
export type ScriptState = "enabled" | "disabled";

/** Counters of one script, as `krelay script list` shows them. */
export interface ScriptInfo {
  name: string;
  file: string;
  services: string;
  state: ScriptState;
  /** Why it was disabled. */
  disabledReason?: string;
  exports: { match: boolean; target: boolean };
  loadedAt: string;
  /** Packets handed to the script (or, disabled, that it would have been handed). */
  packets: number;
  /** Packets its match accepted (all it decided, without a match function). */
  matched: number;
  verdicts: { accepted: number; changed: number; dropped: number; default: number };
  /** Exceptions, batches over the budget, crashes, bad changes. */
  errors: number;
  timeouts: number;
  restarts: number;
  /** Mean time per packet it decided, in microseconds (round trips included). */
  usPerPacket: number;
  lastError?: string;
  /** The id of the script's process while it runs. */
  pid?: number;
}

/** One loaded script. */
class ScriptEntry {
  worker?: ScriptWorker;
  restarting?: Promise<void>;
  readonly keys: Set<number>;
  readonly info: ScriptInfo;
  readonly errors: ErrorWindow;
  timeMs = 0;
  decided = 0;
  /** Console lines: tokens left, when last refilled, and lines suppressed since the last note. */
  logTokens = 2 * LOG_LINES_PER_S;
  logRefilled = 0;
  logSuppressed = 0;
  logNotedAt = 0;

  constructor(
    readonly name: string,
    readonly file: string,
    readonly services: Service[],
    policy: ScriptPolicy,
  ) {
    this.keys = new Set(services.map(keyOf));
    this.errors = new ErrorWindow(policy.maxErrors, policy.errorWindowMs);
    this.info = {
      name,
      file,
      services: formatServices(services),
      state: "enabled",
      exports: { match: false, target: false },
      loadedAt: new Date().toISOString(),
      packets: 0,
      matched: 0,
      verdicts: { accepted: 0, changed: 0, dropped: 0, default: 0 },
      errors: 0,
      timeouts: 0,
      restarts: 0,
      usPerPacket: 0,
    };
  }
}

/** The loaded scripts and the decisions on their packets. */
export class ScriptHost {
  /** In load order; a reloaded script keeps its place. */
  #entries: ScriptEntry[] = [];
  /** Service lookup number -> the scripts attached to it, in order. */
  #byService = new Map<number, ScriptEntry[]>();
  #loading: Promise<unknown> = Promise.resolve();
  #closed = false;

  constructor(private readonly options: ScriptHostOptions) {}

  /** True when at least one script is loaded. */
  get active(): boolean {
    return this.#byService.size > 0;
  }

  /** The service ports that have a script, by protocol, sorted. */
  scriptedPorts(): { udp: number[]; tcp: number[] } {
    const udp: number[] = [];
    const tcp: number[] = [];
    for (const key of this.#byService.keys()) {
      (Math.floor(key / 65536) === IpProtocol.UDP ? udp : tcp).push(key % 65536);
    }
    return { udp: udp.sort((a, b) => a - b), tcp: tcp.sort((a, b) => a - b) };
  }

  /**
   * Checks the script at `file`, starts it in a new worker and attaches it to `services`
   * under `name`. A script already loaded under `name` is replaced once the new one runs
   * (its batch in flight, if any, is finished by the old one; no packet goes without a
   * script). Refused with the reason, changing nothing, when the check or the start fails.
   */
  load(name: string, file: string, services: Service[]): Promise<ScriptInfo> {
    const run = this.#loading.then(() => this.#load(name, file, services));
    this.#loading = run.catch(() => {});
    return run;
  }

  async #load(name: string, file: string, services: Service[]): Promise<ScriptInfo> {
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name)) {
      throw new Error(`bad script name "${name}": use 1-64 letters, digits, _ . -`);
    }
    if (services.length === 0) throw new Error("a script needs at least one service");
    if (this.#closed) throw new Error("krelay is closing");
    await (this.options.check ?? checkScript)(file);
    const entry = new ScriptEntry(name, file, services, this.options.policy());
    entry.worker = await this.#startWorker(entry);
    entry.info.exports = { ...entry.worker.exports };
    const at = this.#entries.findIndex((e) => e.name === name);
    const old = at === -1 ? undefined : this.#entries[at];
    if (old) this.#entries[at] = entry;
    else this.#entries.push(entry);
    this.#index();
    await this.options.onServicesChanged?.();
    old?.worker?.retire();
    log.info("script {script} {what} from {file} on {services}", {
      script: name,
      what: old ? "reloaded" : "loaded",
      file,
      services: entry.info.services,
    });
    return this.#snapshot(entry);
  }

  /** Unloads `name`: its worker (and all its state) ends. False when no such script. */
  unload(name: string): Promise<boolean> {
    const run = this.#loading.then(async () => {
      const entry = this.#entries.find((e) => e.name === name);
      if (!entry) return false;
      this.#entries = this.#entries.filter((e) => e !== entry);
      this.#index();
      // The steering first: the service's packets go back to the kernel path, then the
      // worker ends (packets still queued meanwhile get the default verdict).
      await this.options.onServicesChanged?.();
      entry.worker?.retire();
      entry.worker = undefined;
      log.info("script {script} unloaded", { script: name });
      return true;
    });
    this.#loading = run.catch(() => {});
    return run;
  }

  /** Every loaded script with its counters. */
  list(): ScriptInfo[] {
    return this.#entries.map((e) => this.#snapshot(e));
  }

  /** Ends every worker; later loads are refused. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#loading;
    for (const e of this.#entries) e.worker?.terminate();
    this.#entries = [];
    this.#index();
  }

  /**
   * The job for a packet at the request hook (client -> relay:service, before NAT) when a
   * script is attached to its service; else undefined.
   */
  request(bytes: Uint8Array): ScriptJob | undefined {
    if (bytes[0] >>> 4 === 6) return this.#job6(bytes, 0);
    const p = this.#scriptable(bytes);
    if (p === undefined || p.dst !== this.options.relayIp()) return undefined;
    const key = serviceKey(p.protocol, p.dstPort);
    if (!this.#byService.has(key)) return undefined;
    const [server, serverPort] = this.options.serverOf(
      p.protocol,
      p.src,
      p.srcPort,
      p.dst,
      p.dstPort,
    );
    return job(bytes, 0, p.protocol, key, p.src, p.srcPort, p.dst, p.dstPort, server, serverPort);
  }

  /**
   * The job for a packet at the reply hook (relay:service -> client, after NAT) when a script
   * is attached to its service; else undefined.
   */
  reply(bytes: Uint8Array): ScriptJob | undefined {
    if (bytes[0] >>> 4 === 6) return this.#job6(bytes, 1);
    const p = this.#scriptable(bytes);
    if (p === undefined || p.src !== this.options.relayIp()) return undefined;
    const key = serviceKey(p.protocol, p.srcPort);
    if (!this.#byService.has(key)) return undefined;
    const [server, serverPort] = this.options.serverOf(
      p.protocol,
      p.dst,
      p.dstPort,
      p.src,
      p.srcPort,
    );
    return job(bytes, 1, p.protocol, key, p.dst, p.dstPort, p.src, p.srcPort, server, serverPort);
  }

  /**
   * Runs `jobs` through their scripts, in load order (a packet dropped by one script is not
   * shown to the next). Sets each job's `drop`, `changed` and `bytes`. Never rejects.
   */
  async run(jobs: readonly ScriptJob[]): Promise<void> {
    const entries = this.#entries;
    for (const entry of entries) {
      const mine = jobs.filter((j) => !j.drop && entry.keys.has(j.key));
      if (mine.length === 0) continue;
      await this.#runEntry(entry, mine).catch((e) => {
        this.#defaultAll(entry, mine);
        this.#error(entry, `the host failed: ${String(e)}`);
      });
    }
  }

  async #runEntry(entry: ScriptEntry, jobs: ScriptJob[]): Promise<void> {
    const info = entry.info;
    info.packets += jobs.length;
    const worker = entry.worker;
    if (info.state === "disabled" || worker === undefined || !worker.alive) {
      this.#defaultAll(entry, jobs);
      return;
    }
    const policy = this.options.policy();
    const started = performance.now();
    const result = await worker.run(jobs, policy.budgetMs);
    entry.timeMs += performance.now() - started;
    entry.decided += jobs.length;
    this.#apply(entry, jobs, result, policy);
  }

  #apply(entry: ScriptEntry, jobs: ScriptJob[], result: BatchResult, policy: ScriptPolicy) {
    const info = entry.info;
    if (result.kind !== "result") {
      this.#defaultAll(entry, jobs);
      if (result.kind === "timeout") {
        info.timeouts++;
        this.#error(
          entry,
          `no verdict for ${jobs.length} packets within ${policy.budgetMs} ms: its process was ` +
            "killed",
        );
      } else {
        this.#error(entry, `the script's process failed: ${result.error}`);
      }
      this.#restart(entry);
      return;
    }
    const { outcomes, changed, errors } = result.result;
    for (let i = 0; i < jobs.length; i++) {
      const o = outcomes[i];
      if (o !== Outcome.Unmatched && o !== Outcome.Failed) info.matched++;
      if (o === Outcome.Accepted || o === Outcome.Unmatched) info.verdicts.accepted++;
      else if (o === Outcome.Dropped) {
        info.verdicts.dropped++;
        jobs[i].drop = true;
      } else if (o === Outcome.Failed) this.#defaultOne(entry, jobs[i]);
    }
    for (const [i, bytes] of changed) {
      const why = fixChanged(jobs[i], bytes);
      if (why === undefined) info.verdicts.changed++;
      else {
        this.#defaultOne(entry, jobs[i]);
        this.#error(entry, `packet ${i} of a batch: ${why}`);
      }
    }
    for (const [, text] of errors) this.#error(entry, text);
  }

  #defaultAll(entry: ScriptEntry, jobs: ScriptJob[]): void {
    for (const j of jobs) this.#defaultOne(entry, j);
  }

  #defaultOne(entry: ScriptEntry, job: ScriptJob): void {
    entry.info.verdicts.default++;
    if (this.options.policy().defaultVerdict === "drop") job.drop = true;
  }

  #error(entry: ScriptEntry, text: string): void {
    const info = entry.info;
    info.errors++;
    info.lastError = text.split("\n")[0];
    log.error("script {script}: {error}", { script: entry.name, error: text });
    if (info.state === "enabled" && entry.errors.add(this.options.now())) {
      this.#disable(entry, `${entry.errors.max} errors within ${entry.errors.windowMs / 1000} s`);
    }
  }

  #disable(entry: ScriptEntry, why: string): void {
    entry.info.state = "disabled";
    entry.info.disabledReason = why;
    entry.worker?.retire();
    log.warning(
      "script {script} disabled: {why}; its packets get the default verdict ({verdict}) until " +
        "it is loaded again",
      { script: entry.name, why, verdict: this.options.policy().defaultVerdict },
    );
  }

  /** Starts a fresh worker for a script whose worker died (its state is lost). */
  #restart(entry: ScriptEntry): void {
    if (entry.restarting || entry.info.state === "disabled") return;
    entry.worker = undefined;
    entry.restarting = this.#startWorker(entry).then((worker) => {
      // Unloaded, replaced or disabled meanwhile.
      if (!this.#entries.includes(entry) || entry.info.state === "disabled") worker.terminate();
      else {
        entry.worker = worker;
        entry.info.restarts++;
      }
    }, (e) => this.#disable(entry, `it cannot restart: ${(e as Error).message}`)).finally(() => {
      entry.restarting = undefined;
    });
  }

  #startWorker(entry: ScriptEntry): Promise<ScriptWorker> {
    const limits = { ...DEFAULT_LIMITS, ...this.options.policy().limits };
    return ScriptWorker.start(scriptUrl(entry.file), entry.name, {
      onLog: (lines) => this.#log(entry, lines),
      onCrash: (error) => {
        this.#error(entry, `the script's process failed: ${error}`);
        this.#restart(entry);
      },
      onLimit: (why) => {
        if (entry.info.state === "disabled") return;
        entry.info.errors++;
        entry.info.lastError = why;
        this.#disable(entry, why);
      },
    }, limits);
  }

  #log(entry: ScriptEntry, lines: LogLine[]): void {
    const { pass, note } = rateLimitLines(entry, lines.length, this.options.now());
    for (const line of lines.slice(0, pass)) {
      log[line.level]("{script}: {line}", { script: entry.name, line: line.text });
    }
    if (note > 0) {
      log.warning("{script}: {n} console lines suppressed (over {rate} a second)", {
        script: entry.name,
        n: note,
        rate: LOG_LINES_PER_S,
      });
    }
  }

  #index(): void {
    const map = new Map<number, ScriptEntry[]>();
    for (const e of this.#entries) {
      for (const key of e.keys) map.set(key, [...(map.get(key) ?? []), e]);
    }
    this.#byService = map;
  }

  #snapshot(e: ScriptEntry): ScriptInfo {
    const us = e.decided === 0 ? 0 : (e.timeMs * 1000) / e.decided;
    return {
      ...e.info,
      exports: { ...e.info.exports },
      verdicts: { ...e.info.verdicts },
      usPerPacket: Math.round(us * 10) / 10,
      pid: e.worker?.alive ? e.worker.pid : undefined,
    };
  }

  /**
   * {@link ScriptHost.request} (hook 0: client -> relay:service) and
   * {@link ScriptHost.reply} (hook 1) for an IPv6 packet: a whole TCP/UDP datagram with no
   * extension header (the packet scripts see has none).
   */
  #job6(bytes: Uint8Array, hook: 0 | 1): ScriptJob | undefined {
    const relay = this.options.relayIp6?.();
    const serverOf = this.options.serverOf6;
    if (this.#byService.size === 0 || relay === undefined || serverOf === undefined) return;
    const p = parseIpv6Packet(bytes);
    if (!(p instanceof Ipv6Packet) || !p.hasPorts || p.isFragment || p.l4Offset !== 40) return;
    if (p.protocol !== IpProtocol.UDP && p.protocol !== IpProtocol.TCP) return undefined;
    const [relayText, client, clientPort, port] = hook === 0
      ? [p.dstText, p.srcText, p.srcPort, p.dstPort]
      : [p.srcText, p.dstText, p.dstPort, p.srcPort];
    if (relayText !== relay) return undefined;
    const key = serviceKey(p.protocol, port);
    if (!this.#byService.has(key)) return undefined;
    const [server, serverPort] = serverOf(p.protocol, client, clientPort, port);
    const j = job(bytes, hook, p.protocol, key, 0, clientPort, 0, port, 0, serverPort);
    j.v6 = [client, relay, server];
    return j;
  }

  /** A whole TCP/UDP datagram (not a fragment), or undefined. */
  #scriptable(bytes: Uint8Array): Ipv4Packet | undefined {
    if (this.#byService.size === 0) return undefined;
    const p = parseIpv4Packet(bytes);
    if (!(p instanceof Ipv4Packet) || !p.hasPorts || p.isFragment) return undefined;
    if (p.protocol !== IpProtocol.UDP && p.protocol !== IpProtocol.TCP) return undefined;
    return p;
  }
}

function job(
  bytes: Uint8Array,
  hook: 0 | 1,
  protocol: number,
  key: number,
  client: number,
  clientPort: number,
  service: number,
  servicePort: number,
  server: number,
  serverPort: number,
): ScriptJob {
  return {
    bytes,
    hook,
    protocol,
    key,
    client,
    clientPort,
    service,
    servicePort,
    server,
    serverPort,
    drop: false,
    changed: false,
  };
}

/**
 * Takes a script's changed datagram for `job` after checking it (a whole IPv4 datagram of the
 * same protocol) and recomputing its checksums. Returns why it was refused, if it was.
 */
export function fixChanged(job: ScriptJob, bytes: Uint8Array): string | undefined {
  if (job.v6 !== undefined) return fixChanged6(job, bytes);
  const p = parseIpv4Packet(bytes);
  if (!(p instanceof Ipv4Packet)) return `the changed packet is malformed (${p.reason})`;
  if (p.protocol !== job.protocol || !p.hasPorts || p.isFragment) {
    return "the changed packet is not a whole datagram of the same protocol";
  }
  // The rule on real_ip: a script may not send a client's packet to this host's loopback,
  // nor anywhere no server can be.
  for (const [what, address] of [["destination", p.dst], ["source", p.src]] as const) {
    const why = unusableAddress(address);
    if (why !== undefined) return `the changed packet's ${what} ${formatIpv4(address)} ${why}`;
  }
  p.recomputeIpChecksum();
  // A UDP checksum of 0 means none: it stays none.
  const check = (p.bytes[p.l4ChecksumOffset] << 8) | p.bytes[p.l4ChecksumOffset + 1];
  if (p.protocol === IpProtocol.TCP || check !== 0) p.recomputeL4Checksum();
  job.bytes = p.bytes;
  job.changed = true;
  return undefined;
}

/** {@link fixChanged} for an IPv6 packet. */
function fixChanged6(job: ScriptJob, bytes: Uint8Array): string | undefined {
  const p = parseIpv6Packet(bytes);
  if (!(p instanceof Ipv6Packet)) return `the changed packet is malformed (${p.reason})`;
  if (p.protocol !== job.protocol || !p.hasPorts || p.isFragment || p.l4Offset !== 40) {
    return "the changed packet is not a whole datagram of the same protocol";
  }
  for (const [what, address] of [["destination", p.dstText], ["source", p.srcText]] as const) {
    const why = unusableIpv6(address);
    if (why !== undefined) return `the changed packet's ${what} ${address} ${why}`;
  }
  // IPv6's UDP checksum is never optional.
  p.recomputeL4Checksum();
  job.bytes = p.bytes;
  job.changed = true;
  return undefined;
}

/** A script's console-line budget (a token bucket) and what it suppressed. */
export interface LogBucket {
  logTokens: number;
  logRefilled: number;
  logSuppressed: number;
  logNotedAt: number;
}

/**
 * Refills the bucket and takes one token per line: `pass` lines may be logged; `note` > 0 is
 * the count of lines suppressed so far, to be told (at most once a second).
 */
export function rateLimitLines(
  bucket: LogBucket,
  lines: number,
  now: number,
): { pass: number; note: number } {
  const elapsed = Math.max(0, now - bucket.logRefilled) / 1000;
  bucket.logTokens = Math.min(2 * LOG_LINES_PER_S, bucket.logTokens + elapsed * LOG_LINES_PER_S);
  bucket.logRefilled = now;
  const pass = Math.min(lines, Math.floor(bucket.logTokens));
  bucket.logTokens -= pass;
  bucket.logSuppressed += lines - pass;
  let note = 0;
  if (bucket.logSuppressed > 0 && now - bucket.logNotedAt >= 1000) {
    note = bucket.logSuppressed;
    bucket.logSuppressed = 0;
    bucket.logNotedAt = now;
  }
  return { pass, note };
}
