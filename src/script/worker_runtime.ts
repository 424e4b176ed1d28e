/**
 * The script's side: decides each batch the host sends with the script's `match` and
 * `target`, one outcome per packet, and forwards the script's console lines. Runs in the
 * script's own process (a Deno with no permission and a memory limit), whose entry module
 * imports this runtime, then the script, and calls {@link serve}; messages travel as frames
 * (frame.ts) on its stdin and stdout.
 *
 * @module
 */

import { formatIpv4 } from "../packet/address.ts";
import { decodeFrame, encodeFrame, FrameReader } from "./frame.ts";
import type {
  Endpoint,
  Flow,
  MatchFunction,
  Protocol,
  ScriptContext,
  ScriptHook,
  TargetFunction,
} from "./api.ts";
import { ScriptPacket } from "./script_packet.ts";
import {
  type BatchMessage,
  type LogLine,
  Meta,
  META_FIELDS,
  Outcome,
  type ResultMessage,
  type WorkerMessage,
} from "./wire.ts";

/** Console lines kept per batch (or per flush outside one); the rest are counted. */
export const MAX_LOG_LINES = 200;
/** Characters kept of one console line. */
export const MAX_LOG_LINE = 2000;

// Taken before the script runs: the host reads only frames from stdout.
const stdout = Deno.stdout;

/** Sends one message to the host (blocking: a host that does not read holds the script). */
function send(message: WorkerMessage): void {
  const frame = encodeFrame(message);
  for (let at = 0; at < frame.length;) at += stdout.writeSync(frame.subarray(at));
}

/** The flow of one packet, read from the batch's numbers on demand. */
class MetaFlow implements Flow {
  constructor(
    private readonly meta: Uint32Array,
    private readonly at: number,
    /** An IPv6 packet's addresses: client, service, server. */
    private readonly v6?: readonly [string, string, string],
  ) {}
  get protocol(): Protocol {
    return this.meta[this.at + Meta.protocol] === 6 ? "tcp" : "udp";
  }
  get client(): Endpoint {
    return this.#endpoint(Meta.client, Meta.clientPort, 0);
  }
  get service(): Endpoint {
    return this.#endpoint(Meta.service, Meta.servicePort, 1);
  }
  get server(): Endpoint {
    return this.#endpoint(Meta.server, Meta.serverPort, 2);
  }
  #endpoint(address: number, port: number, which: number): Endpoint {
    return {
      address: this.v6 !== undefined ? this.v6[which] : formatIpv4(this.meta[this.at + address]),
      port: this.meta[this.at + port],
    };
  }
}

/** Decides every packet of a batch; never throws (a packet whose script threw is Failed). */
export function decideBatch(
  message: BatchMessage,
  script: string,
  match: MatchFunction | undefined,
  target: TargetFunction | undefined,
): Omit<ResultMessage, "logs"> {
  const { meta, seq } = message;
  const data = new Uint8Array(message.data);
  const count = meta.length / META_FIELDS;
  const outcomes = new Uint8Array(count);
  const changed: [number, Uint8Array][] = [];
  const errors: [number, string][] = [];
  const v6 = new Map<number, [string, string, string]>();
  for (const [i, client, service, server] of message.v6 ?? []) v6.set(i, [client, service, server]);
  for (let i = 0; i < count; i++) {
    const at = i * META_FIELDS;
    const packet = new ScriptPacket(
      data.subarray(meta[at + Meta.offset], meta[at + Meta.offset] + meta[at + Meta.length]),
    );
    const hook: ScriptHook = meta[at + Meta.hook] === 0 ? "request" : "reply";
    const ctx: ScriptContext = { hook, flow: new MetaFlow(meta, at, v6.get(i)), script };
    try {
      let outcome: Outcome;
      if (match !== undefined && !synchronous(match(packet, ctx), "match")) {
        outcome = Outcome.Unmatched;
      } else if (target === undefined) {
        outcome = Outcome.Dropped;
      } else {
        const verdict = synchronous(target(packet, ctx), "target");
        if (verdict === "drop") outcome = Outcome.Dropped;
        else if (verdict === undefined || verdict === "accept") outcome = Outcome.Accepted;
        else throw new TypeError(`target returned ${String(verdict)}, not "accept" or "drop"`);
      }
      if (outcome !== Outcome.Dropped && packet.changed) {
        outcome = Outcome.Changed;
        // Its own buffer, so that only this datagram is transferred.
        const d = packet.data;
        changed.push([i, d.byteLength === d.buffer.byteLength ? d : d.slice()]);
      }
      outcomes[i] = outcome;
    } catch (e) {
      outcomes[i] = Outcome.Failed;
      errors.push([i, errorText(e)]);
    }
  }
  return { kind: "result", seq, outcomes, changed, errors };
}

function synchronous<T>(value: T, what: string): T {
  if (value instanceof Promise) {
    value.catch(() => {});
    throw new TypeError(`${what} returned a promise; scripts must decide synchronously`);
  }
  return value;
}

function errorText(e: unknown): string {
  if (e instanceof Error) return e.stack ?? `${e.name}: ${e.message}`;
  return String(e);
}

/** Collects console lines for the host. */
class ConsoleCapture {
  #lines: LogLine[] = [];
  #dropped = 0;
  #scheduled = false;
  #inBatch = false;

  install(): void {
    const levels: [keyof Console, LogLine["level"]][] = [
      ["log", "info"],
      ["info", "info"],
      ["debug", "debug"],
      ["warn", "warning"],
      ["error", "error"],
    ];
    for (const [method, level] of levels) {
      (console as unknown as Record<string, unknown>)[method] = (...args: unknown[]) =>
        this.#add(level, args);
    }
  }

  /** Lines are kept for the batch's answer until {@link take}. */
  begin(): void {
    this.#inBatch = true;
  }

  take(): LogLine[] {
    this.#inBatch = false;
    const lines = this.#lines;
    if (this.#dropped > 0) {
      lines.push({ level: "warning", text: `(${this.#dropped} more console lines dropped)` });
    }
    this.#lines = [];
    this.#dropped = 0;
    return lines;
  }

  #add(level: LogLine["level"], args: unknown[]): void {
    if (this.#lines.length >= MAX_LOG_LINES) {
      this.#dropped++;
      return;
    }
    let text = args.map((a) => typeof a === "string" ? a : Deno.inspect(a)).join(" ");
    if (text.length > MAX_LOG_LINE) text = `${text.slice(0, MAX_LOG_LINE)}...`;
    this.#lines.push({ level, text });
    if (!this.#inBatch && !this.#scheduled) {
      this.#scheduled = true;
      queueMicrotask(() => {
        this.#scheduled = false;
        if (!this.#inBatch && this.#lines.length > 0) {
          send({ kind: "log", logs: this.take() });
        }
      });
    }
  }
}

/**
 * Installed when this module is evaluated, which the entry module makes happen before the
 * script's own top-level code runs, so that its lines are captured too.
 */
const capture = new ConsoleCapture();
capture.install();

/**
 * Serves the script module `mod` (loaded as `name`): answers `ready` (or `failed` when it
 * exports neither `match` nor `target` as a function), then decides every batch it is sent.
 */
export function serve(mod: Record<string, unknown>, name: string): void {
  const match = typeof mod.match === "function" ? mod.match as MatchFunction : undefined;
  const target = typeof mod.target === "function" ? mod.target as TargetFunction : undefined;
  if (match === undefined && target === undefined) {
    send({
      kind: "failed",
      error: "the script exports neither a match nor a target function",
    });
    return;
  }
  send({ kind: "ready", match: match !== undefined, target: target !== undefined });
  readBatches((message) => {
    capture.begin();
    const result = decideBatch(message, name, match, target) as ResultMessage;
    result.logs = capture.take();
    send(result);
  });
}

/** Reads frames from stdin until it closes (the host is done with the script), then exits. */
async function readBatches(decide: (message: BatchMessage) => void): Promise<void> {
  const frames = new FrameReader();
  for await (const chunk of Deno.stdin.readable) {
    for (const body of frames.push(chunk)) {
      const message = decodeFrame(body) as BatchMessage;
      if (message?.kind === "batch") decide(message);
    }
  }
  Deno.exit(0);
}

/**
 * No threads of the script's own: a Worker would run outside the budget's reach (the host
 * kills the whole process, so none would outlive the script anyway).
 */
function forbidWorkers(): void {
  const refuse = function Worker(): never {
    throw new Deno.errors.NotCapable("a packet script cannot start workers");
  };
  Object.defineProperty(globalThis, "Worker", {
    value: refuse,
    writable: false,
    configurable: false,
  });
}
forbidWorkers();
