/**
 * The packet loop: receive a batch from the datapath, decide every packet with the rewrite
 * engine, send all verdicts at once. An exception while deciding one packet accepts that
 * packet unchanged and is counted; it never stops the loop.
 *
 * Packets of a service with packet scripts are the exception: their verdicts follow the rest of
 * the batch, once the scripts have decided (one round trip per batch and script). Requests go
 * to the scripts before the engine, replies after it.
 *
 * @module
 */

import { type Datapath, type PacketVerdict, type QueuedPacket, Verdict } from "../queue/queue.ts";
import { Hook } from "../nat/hook.ts";
import { Action, type Rewriter } from "../nat/rewriter.ts";
import type { ScriptHost, ScriptJob } from "../script/host.ts";
import { Ipv4Packet, parseIpv4Packet } from "../packet/ipv4_packet.ts";
import { Ipv6Packet, parseIpv6Packet } from "../packet/ipv6_packet.ts";
import { SynGate } from "../relay/syn_gate.ts";
import { logger } from "../system/log.ts";

const log = logger("datapath");

/** Rounds in a row the loop waits on its own thread while SYNs are held. */
const SYNC_ROUNDS = 8;
/** How long one such wait lasts at most, in ms. */
const HELD_WAIT_MS = 2;
/** The loop keeps to the gate's wait this long after the last SYN, in ms. */
const RECENT_SYN_MS = 100;

/** Runs the loop until {@link PacketLoop.stop}. */
export class PacketLoop {
  #running = false;
  #done: Promise<void> = Promise.resolve();
  /** Packets whose processing threw (accepted unchanged). */
  engineErrors = 0;

  constructor(
    private readonly datapath: Datapath,
    private readonly engine: Rewriter,
    private readonly receiveTimeoutMs = 200,
    private readonly scripts?: ScriptHost,
    /** Holds clients' SYNs to TCP services until their server has answered (syn_gate.ts). */
    private readonly gate?: SynGate,
  ) {}

  /** Starts the loop; `done` settles when it ends (rejects if the datapath fails). */
  start(): Promise<void> {
    this.#running = true;
    this.#done = this.#run();
    return this.#done;
  }

  /** Asks the loop to end after the batch in hand; resolves when it has. */
  async stop(): Promise<void> {
    this.#running = false;
    await this.#done.catch(() => {});
  }

  /** Handles whatever is queued right now (used to drain on shutdown). */
  async drainOnce(timeoutMs: number): Promise<number> {
    return this.#handle(await this.datapath.receive(timeoutMs));
  }

  async #run(): Promise<void> {
    const gate = this.gate;
    const fd = this.datapath.fd;
    const driven = gate !== undefined && gate.driven && fd !== undefined &&
      this.datapath.drain !== undefined;
    if (driven) gate.watchQueue(fd, () => this.#queueReady = true);
    let rounds = 0;
    while (this.#running) {
      // SYNs are held, or came a moment ago (more will): the driven wait, below.
      if (!driven || (gate.pending === 0 && performance.now() - gate.lastSynAt > RECENT_SYN_MS)) {
        rounds = 0;
        const batch = await this.datapath.receive(this.receiveTimeoutMs);
        await this.#handle(batch);
        this.#flushHeld();
        continue;
      }
      // Wait for the held SYNs' servers and the queue at once, on this thread for a few rounds
      // (as a C program would: no helper thread), then off it, so that timers and the control
      // socket get their turn.
      this.#queueReady = false;
      this.#batching = true;
      let n = 0;
      if (rounds < SYNC_ROUNDS) n = gate.waitNow(HELD_WAIT_MS);
      if (n === 0) {
        rounds = 0;
        this.#flushHeld();
        // Meanwhile timers run: the gate's sweep sends its verdicts at once.
        this.#batching = false;
        await gate.waitOff(this.receiveTimeoutMs);
        this.#batching = true;
      } else rounds++;
      if (this.#queueReady) await this.#handle(this.datapath.drain!());
      this.#batching = false;
      this.#flushHeld();
    }
  }

  /** The queue's socket has packets (a driven gate's poller says so). */
  #queueReady = false;
  /** Held SYNs' verdicts are collected (sent together by #flushHeld) rather than sent one by one. */
  #batching = false;
  readonly #heldVerdicts: PacketVerdict[] = [];

  #flushHeld(): void {
    if (this.#heldVerdicts.length === 0) return;
    this.datapath.send(this.#heldVerdicts);
    this.#heldVerdicts.length = 0;
  }

  #verdicts: PacketVerdict[] = [];

  #handle(batch: Awaited<ReturnType<Datapath["receive"]>>): number | Promise<number> {
    if (batch.length === 0) return 0;
    const scripts = this.scripts?.active ? this.scripts : undefined;
    const verdicts = this.#verdicts;
    verdicts.length = 0;
    let scripted: Scripted[] | undefined;
    for (const packet of batch) {
      if (scripts !== undefined) {
        const job = packet.hook === Hook.PreRouting ? scripts.request(packet.bytes) : undefined;
        if (job !== undefined) {
          (scripted ??= []).push({ packet, job, request: true, rewritten: false });
          continue;
        }
      }
      if (this.#held(packet, false)) continue;
      const action = this.#decide(packet);
      if (scripts !== undefined && action !== Action.Drop && packet.hook === Hook.PostRouting) {
        const job = scripts.reply(packet.bytes);
        if (job !== undefined) {
          const rewritten = action === Action.AcceptRewritten;
          (scripted ??= []).push({ packet, job, request: false, rewritten });
          continue;
        }
      }
      verdicts.push({
        packet,
        verdict: action === Action.Drop ? Verdict.Drop : Verdict.Accept,
        mangled: action === Action.AcceptRewritten,
      });
    }
    if (verdicts.length > 0) this.datapath.send(verdicts);
    if (scripted === undefined) return batch.length;
    return this.#afterScripts(scripts!, scripted).then(() => batch.length);
  }

  /** Awaits the scripts' verdicts, then runs requests they accepted through the engine. */
  async #afterScripts(scripts: ScriptHost, scripted: Scripted[]): Promise<void> {
    await scripts.run(scripted.map((s) => s.job));
    const verdicts: PacketVerdict[] = [];
    for (const { packet, job, request, rewritten } of scripted) {
      if (job.drop) {
        verdicts.push({ packet, verdict: Verdict.Drop, mangled: false });
        continue;
      }
      if (job.changed) packet.bytes = job.bytes;
      if (request && this.#held(packet, job.changed)) continue;
      const action = request ? this.#decide(packet) : Action.Accept;
      verdicts.push({
        packet,
        verdict: action === Action.Drop ? Verdict.Drop : Verdict.Accept,
        mangled: job.changed || rewritten || action === Action.AcceptRewritten,
      });
    }
    this.datapath.send(verdicts);
  }

  /** A client's SYN goes to the gate, which gives its verdict once the server has answered. */
  #held(packet: QueuedPacket, mangled: boolean): boolean {
    if (this.gate === undefined || packet.hook !== Hook.PreRouting) return false;
    const decide = (accept: boolean) => {
      const verdict = { packet, verdict: accept ? Verdict.Accept : Verdict.Drop, mangled };
      if (this.#batching) this.#heldVerdicts.push(verdict);
      else this.datapath.send([verdict]);
    };
    if (packet.bytes[0] >>> 4 === 6) {
      if (!SynGate.isSyn6(packet.bytes)) return false;
      const syn = parseIpv6Packet(packet.bytes);
      if (!(syn instanceof Ipv6Packet)) return false;
      this.gate.hold6(syn, decide);
      return true;
    }
    if (!SynGate.isSyn(packet.bytes)) return false;
    const syn = parseIpv4Packet(packet.bytes);
    if (!(syn instanceof Ipv4Packet)) return false;
    this.gate.hold(syn, decide);
    return true;
  }

  #decide(packet: QueuedPacket): Action {
    try {
      return this.engine.process(packet.hook, packet.bytes, packet.checksumPartial);
    } catch (e) {
      // Unmangled accept: the kernel keeps its own copy of the bytes.
      this.engineErrors++;
      log.error("packet {id} failed in the engine: {error}", { id: packet.id, error: String(e) });
      return Action.Accept;
    }
  }
}

/** A packet waiting for the scripts. */
interface Scripted {
  packet: QueuedPacket;
  job: ScriptJob;
  /** At the request hook (the engine runs after the scripts). */
  request: boolean;
  /** A reply the engine rewrote. */
  rewritten: boolean;
}
