/**
 * Health of the real servers, per server and service, as a state machine with no I/O (the
 * probes are checker.ts's; the clock is passed in). A check is up or down:
 *
 * - up: `fall` failures in a row (active probes, or flows of the relay that could not reach the
 *   server: passive) take it down; a success resets the count.
 * - down: `rise` active successes in a row bring it back up; a failure resets the count.
 *   Passive results are ignored while down (no new flow goes there).
 *
 * Checks start up, so that a server is used from the first flow (one server behaves as krelay
 * always did), and one that does not answer leaves within `fall` intervals.
 *
 * @example
 * ```ts
 * import { HealthCheck } from "./health.ts";
 * const c = new HealthCheck({ rise: 2, fall: 3 }, 0);
 * c.record(false, 1000); c.record(false, 2000);
 * c.record(false, 3000); // true: it changed
 * c.state; // "down"
 * ```
 * @module
 */

/** A check's state. */
export type HealthState = "up" | "down";

/** When a check changes state. */
export interface RiseFall {
  /** Successes in a row that bring a down check up. */
  rise: number;
  /** Failures in a row that take an up check down. */
  fall: number;
}

/** The schedule and thresholds of the checks. */
export interface HealthSettings extends RiseFall {
  /** Milliseconds between two active probes of a check. */
  intervalMs: number;
  /** Milliseconds a probe may take before it counts as failed. */
  timeoutMs: number;
}

/** The state machine of one server's one service. */
export class HealthCheck {
  state: HealthState = "up";
  /** Clock value of the last change (or of the start). */
  since: number;
  /** Results of each kind since the start. */
  checks = 0;
  checkFailures = 0;
  passiveFailures = 0;
  /** The last active result and why it failed, if it did. */
  last: { ok: boolean; at: number; detail: string } | undefined;
  #successes = 0;
  #failures = 0;

  constructor(private thresholds: RiseFall, now: number) {
    this.since = now;
  }

  /** New thresholds; the counts in progress are kept. */
  setThresholds(thresholds: RiseFall): void {
    this.thresholds = thresholds;
  }

  /**
   * Records a result, active (a probe) or passive (a flow's fate); returns whether the state
   * changed.
   */
  record(ok: boolean, now: number, passive = false, detail = ""): boolean {
    if (passive) {
      if (this.state === "down") return false;
      if (!ok) this.passiveFailures++;
    } else {
      this.checks++;
      if (!ok) this.checkFailures++;
      this.last = { ok, at: now, detail };
    }
    if (ok) {
      this.#failures = 0;
      this.#successes++;
      if (this.state === "down" && this.#successes >= this.thresholds.rise) {
        return this.#set("up", now);
      }
    } else {
      this.#successes = 0;
      this.#failures++;
      if (this.state === "up" && this.#failures >= this.thresholds.fall) {
        return this.#set("down", now);
      }
    }
    return false;
  }

  #set(state: HealthState, now: number): boolean {
    this.state = state;
    this.since = now;
    this.#successes = 0;
    this.#failures = 0;
    return true;
  }
}

/** A service of the relay: what the checks probe on each server. */
export interface Service {
  protocol: "tcp" | "udp";
  port: number;
}

/** One check: a server's service, its state machine and its schedule. */
export interface ScheduledCheck {
  readonly key: string;
  /** The server's address as listed ("203.0.113.10"). */
  readonly address: string;
  readonly service: Service;
  readonly health: HealthCheck;
  /** Clock value of the next probe. */
  next: number;
  /** A probe is under way. */
  running: boolean;
}

/** A state change, for the log. */
export interface HealthChange {
  address: string;
  service: Service;
  state: HealthState;
  /** Why: the last probe's failure, or the passive failures. */
  detail: string;
}

/**
 * Every server's checks, one per service. Configured with the servers and services in force;
 * checks of servers and services that stay keep their state.
 */
export class ServerHealth {
  #checks = new Map<string, ScheduledCheck>();
  #settings: HealthSettings;
  #addresses: readonly string[] = [];
  #services: readonly Service[] = [];
  /** Bumped at each change of state or configuration: readers remake what they derive. */
  generation = 0;

  constructor(settings: HealthSettings, private readonly onChange: (c: HealthChange) => void) {
    this.#settings = settings;
  }

  /** The servers (addresses in list order) and services to check, and how. */
  configure(
    addresses: readonly string[],
    services: readonly Service[],
    settings: HealthSettings,
    now: number,
  ): void {
    this.#settings = settings;
    this.#addresses = addresses;
    this.#services = services;
    const checks = new Map<string, ScheduledCheck>();
    for (const service of services) {
      addresses.forEach((address, i) => {
        const key = checkKey(service, address);
        const old = this.#checks.get(key);
        old?.health.setThresholds(settings);
        checks.set(
          key,
          old ?? {
            key,
            address,
            service,
            health: new HealthCheck(settings, now),
            // Spread the first probes over an interval, not all at once.
            next: now + (settings.intervalMs * i) / Math.max(1, addresses.length),
            running: false,
          },
        );
      });
    }
    this.#checks = checks;
    this.generation++;
  }

  /** The settings in force. */
  get settings(): HealthSettings {
    return this.#settings;
  }

  /** The checks due a probe at `now` (none under way); each is marked running. */
  due(now: number): ScheduledCheck[] {
    const due: ScheduledCheck[] = [];
    for (const c of this.#checks.values()) {
      if (c.running || c.next > now) continue;
      c.running = true;
      due.push(c);
    }
    return due;
  }

  /** A probe of `check` ended at `now`, started at `started`. */
  probed(check: ScheduledCheck, ok: boolean, started: number, now: number, detail = ""): void {
    check.running = false;
    check.next = Math.max(now, started + this.#settings.intervalMs);
    // A check removed meanwhile (servers changed) records nothing.
    if (this.#checks.get(check.key) !== check) return;
    if (check.health.record(ok, now, false, detail)) this.#changed(check, detail);
  }

  /** Flows of the relay to `address`'s `service` that could (not) reach it. */
  passive(service: Service, address: string, failures: number, successes: number, now: number) {
    const check = this.#checks.get(checkKey(service, address));
    if (check === undefined) return;
    // Successes first: the failures, being the news, decide.
    if (successes > 0) check.health.record(true, now, true);
    for (let i = 0; i < failures; i++) {
      if (check.health.record(false, now, true)) {
        this.#changed(check, `${failures} flow(s) could not reach it`);
        break;
      }
    }
  }

  #changed(check: ScheduledCheck, detail: string): void {
    this.generation++;
    this.onChange({
      address: check.address,
      service: check.service,
      state: check.health.state,
      detail,
    });
  }

  /** The check of `address`'s `service`, if it is configured. */
  check(service: Service, address: string): ScheduledCheck | undefined {
    return this.#checks.get(checkKey(service, address));
  }

  /**
   * Per service ("tcp/80"), whether each server (in list order) is up: the `up` of a
   * ServerPool.
   */
  up(): Record<string, boolean[]> {
    const up: Record<string, boolean[]> = {};
    for (const service of this.#services) {
      up[`${service.protocol}/${service.port}`] = this.#addresses.map((a) =>
        this.#checks.get(checkKey(service, a))?.health.state !== "down"
      );
    }
    return up;
  }
}

function checkKey(service: Service, address: string): string {
  return `${service.protocol}/${service.port}/${address}`;
}
