/**
 * The active health checks: probes of each server's each service, run from the main thread on
 * the schedule {@link ServerHealth} keeps, their results fed back to it.
 *
 * - TCP service: a connect to server:port; accepted in time is up (the connection is closed at
 *   once).
 * - UDP service: a datagram to server:port, up when any answer comes in time. By default a DNS
 *   query (`health_dns_name`, NS for the root), which any DNS server answers, even with an
 *   error; or the bytes of `health_udp_probe = "hex:..."`; `none`: no active check.
 *
 * Probes leave from the relay's own address toward the servers (the kernel's route), as any
 * local program's connections: the relay's steering diverts only what is sent to the relay.
 *
 * @module
 */

import dgram from "node:dgram";
import { logger } from "../system/log.ts";
import type { ScheduledCheck, ServerHealth } from "./health.ts";

const log = logger("health");

/** How often the checker looks for due checks. */
const POLL_MS = 100;

/** What a UDP probe sends: a DNS query for a name, or fixed bytes. */
export type UdpProbe = { dns: string } | { bytes: Uint8Array } | "none";

/** `health_udp_probe` and `health_dns_name` as a probe. */
export function udpProbe(setting: string, dnsName: string): UdpProbe {
  if (setting === "none") return "none";
  if (setting.startsWith("hex:")) {
    const hex = setting.slice(4);
    return { bytes: Uint8Array.from(hex.match(/../g)!, (b) => parseInt(b, 16)) };
  }
  return { dns: dnsName };
}

/** A DNS query with id `id` for `name`: NS for the root ("."), A otherwise; recursion desired. */
export function dnsQuery(id: number, name: string): Uint8Array {
  const labels = name.split(".").filter((l) => l !== "");
  const qname = labels.flatMap((l) => [l.length, ...new TextEncoder().encode(l)]);
  const type = labels.length === 0 ? 2 : 1;
  return Uint8Array.from([
    id >> 8 & 0xff,
    id & 0xff,
    0x01, // RD
    0x00,
    0, // QDCOUNT 1
    1,
    0,
    0,
    0,
    0,
    0,
    0,
    ...qname,
    0,
    0,
    type,
    0,
    1, // IN
  ]);
}

/** Whether `bytes` is a DNS response (any code: the server answered) to query `id`. */
export function isDnsAnswer(bytes: Uint8Array, id: number): boolean {
  return bytes.length >= 12 && (bytes[0] << 8 | bytes[1]) === id && (bytes[2] & 0x80) !== 0;
}

/** Connects to address:port; resolves to undefined when accepted in time, else why not. */
export async function probeTcp(
  address: string,
  port: number,
  timeoutMs: number,
): Promise<string | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const connecting = Deno.connect({ hostname: address, port, transport: "tcp" });
  const timeout = new Promise<"timeout">((r) => timer = setTimeout(() => r("timeout"), timeoutMs));
  try {
    const got = await Promise.race([connecting, timeout]);
    if (got === "timeout") {
      // Closed when it connects after all.
      connecting.then((c) => c.close(), () => {});
      return `no answer in ${timeoutMs} ms`;
    }
    got.close();
    return undefined;
  } catch (e) {
    return (e as Error).name === "ConnectionRefused" ? "connection refused" : (e as Error).message;
  } finally {
    clearTimeout(timer);
  }
}

/** Sends `probe` to address:port; resolves to undefined when it is answered in time. */
export function probeUdp(
  address: string,
  port: number,
  probe: Exclude<UdpProbe, "none">,
  timeoutMs: number,
): Promise<string | undefined> {
  const id = Math.floor(Math.random() * 0x10000);
  const bytes = "dns" in probe ? dnsQuery(id, probe.dns) : probe.bytes;
  return new Promise((resolve) => {
    const socket = dgram.createSocket(address.includes(":") ? "udp6" : "udp4");
    let done = false;
    const finish = (why: string | undefined) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      try {
        socket.close();
      } catch { /* already closed */ }
      resolve(why);
    };
    const timer = setTimeout(() => finish(`no answer in ${timeoutMs} ms`), timeoutMs);
    socket.on("error", (e) => finish(e.message));
    socket.on("message", (m, from) => {
      if (from.address !== address || from.port !== port) return;
      if ("dns" in probe && !isDnsAnswer(new Uint8Array(m), id)) return;
      finish(undefined);
    });
    socket.send(bytes, port, address, (e) => e && finish(e.message));
  });
}

/** What the checker needs besides the health it feeds. */
export interface CheckerOptions {
  now: () => number;
  /** The UDP probe in force. */
  udpProbe: () => UdpProbe;
  /** Probes; the real ones by default (tests pass others). */
  probeTcp?: typeof probeTcp;
  probeUdp?: typeof probeUdp;
}

/** Runs the due probes of a {@link ServerHealth} until stopped. */
export class Checker {
  #timer: ReturnType<typeof setInterval> | undefined;
  readonly #running = new Set<Promise<void>>();

  constructor(private readonly health: ServerHealth, private readonly options: CheckerOptions) {}

  /** Starts probing. */
  start(): void {
    this.#timer ??= setInterval(() => this.poll(), POLL_MS);
  }

  /** Stops probing; resolves when the probes under way have ended. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    await this.settled();
  }

  /** Resolves when the probes under way have ended. */
  async settled(): Promise<void> {
    await Promise.all(this.#running);
  }

  /** Starts the probes due now (the timer calls it; tests too). */
  poll(): void {
    for (const check of this.health.due(this.options.now())) {
      const run = this.#probe(check).finally(() => this.#running.delete(run));
      this.#running.add(run);
    }
  }

  async #probe(check: ScheduledCheck): Promise<void> {
    const started = this.options.now();
    const { timeoutMs } = this.health.settings;
    const { protocol, port } = check.service;
    let why: string | undefined;
    try {
      if (protocol === "tcp") {
        why = await (this.options.probeTcp ?? probeTcp)(check.address, port, timeoutMs);
      } else {
        const probe = this.options.udpProbe();
        why = probe === "none"
          ? undefined
          : await (this.options.probeUdp ?? probeUdp)(check.address, port, probe, timeoutMs);
      }
    } catch (e) {
      why = String(e);
    }
    log.debug("check {protocol}/{port} of {address}: {result}", {
      protocol,
      port,
      address: check.address,
      result: why ?? "ok",
    });
    this.health.probed(check, why === undefined, started, this.options.now(), why ?? "");
  }
}
