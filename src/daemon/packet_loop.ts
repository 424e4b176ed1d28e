/**
 * The packet loop: receive a batch from the datapath, decide every packet with the rewrite
 * engine, send all verdicts at once. An exception while deciding one packet accepts that
 * packet unchanged and is counted; it never stops the loop.
 *
 * @module
 */

import { type Datapath, type PacketVerdict, Verdict } from "../datapath/datapath.ts";
import { Action, type Rewriter } from "../nat/rewriter.ts";
import { logger } from "../system/log.ts";

const log = logger("datapath");

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
    while (this.#running) {
      const batch = await this.datapath.receive(this.receiveTimeoutMs);
      this.#handle(batch);
    }
  }

  #verdicts: PacketVerdict[] = [];

  #handle(batch: Awaited<ReturnType<Datapath["receive"]>>): number {
    if (batch.length === 0) return 0;
    const verdicts = this.#verdicts;
    verdicts.length = 0;
    for (const packet of batch) {
      let action: Action = Action.Accept;
      try {
        action = this.engine.process(packet.hook, packet.bytes, packet.checksumPartial);
      } catch (e) {
        // Unmangled accept: the kernel keeps its own copy of the bytes.
        this.engineErrors++;
        log.error("packet {id} failed in the engine: {error}", { id: packet.id, error: String(e) });
      }
      verdicts.push({
        packet,
        verdict: action === Action.Drop ? Verdict.Drop : Verdict.Accept,
        mangled: action === Action.AcceptRewritten,
      });
    }
    this.datapath.send(verdicts);
    return batch.length;
  }
}
