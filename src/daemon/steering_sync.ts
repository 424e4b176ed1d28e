/**
 * The daemon's steering, kept in step with its state: installs, updates and removals run one at
 * a time, in order (a periodic update must not follow a removal, nor two updates cross), and an
 * update is sent only when the spec changed since the one installed.
 *
 * @example
 * ```ts ignore
 * const sync = new SteeringSync(steering);
 * await sync.install(spec);
 * await sync.update(() => currentSpec()); // no-op when nothing changed
 * await sync.remove();
 * ```
 * @module
 */

import type { Steering, SteeringSpec } from "../steering/steering.ts";

/** Serialises a {@link Steering}'s changes and skips the updates that change nothing. */
export class SteeringSync {
  /** The spec installed now, as text; "" when nothing is. */
  #installed = "";
  /** The spec installed now, when one is. */
  #spec: SteeringSpec | undefined;
  #queue: Promise<void> = Promise.resolve();

  constructor(private readonly steering: Steering) {}

  /** Whether a spec is installed. */
  get installed(): boolean {
    return this.#installed !== "";
  }

  /**
   * The spec the kernel has now (undefined when nothing is installed): what the status tells,
   * since a change being applied is not in effect yet.
   */
  get spec(): SteeringSpec | undefined {
    return this.#spec;
  }

  /** Installs `spec()` (after anything queued); rejects, nothing installed, when it fails. */
  install(spec: () => SteeringSpec): Promise<void> {
    return this.#run(async () => {
      const s = spec();
      await this.steering.install(s);
      this.#installed = JSON.stringify(s);
      this.#spec = s;
    });
  }

  /**
   * Updates to `spec()` when a spec is installed and this one differs; `spec()` is called only
   * then, in turn, so it sees the state after whatever ran before it.
   */
  update(spec: () => SteeringSpec): Promise<void> {
    return this.#run(async () => {
      // Removed meanwhile: an update would recreate what the removal took away.
      if (this.#installed === "") return;
      const s = spec();
      const key = JSON.stringify(s);
      if (key === this.#installed) return;
      await this.steering.update(s);
      this.#installed = key;
      this.#spec = s;
    });
  }

  /** Installs `spec()` again whatever is installed (after a change the steering refused). */
  reinstall(spec: () => SteeringSpec): Promise<void> {
    return this.install(spec);
  }

  /** Removes the steering (after anything queued). */
  remove(): Promise<void> {
    return this.#run(async () => {
      this.#installed = "";
      this.#spec = undefined;
      await this.steering.remove();
    });
  }

  #run(op: () => Promise<void>): Promise<void> {
    const run = this.#queue.then(op);
    this.#queue = run.catch(() => {});
    return run;
  }
}
