/**
 * Steering: what makes the kernel hand exactly the relayed packets to krelay's queue.
 * Implementations: iptables rules ({@link IptablesSteering}); later the kernel module's hooks.
 *
 * @module
 */

import type { SteeringSpec } from "./iptables_rules.ts";
export type { SteeringSpec };

/** Installs and removes the steering. Both are idempotent. */
export interface Steering {
  /** Removes anything left by an earlier (crashed) run, then installs for `spec`. */
  install(spec: SteeringSpec): Promise<void>;
  /** Changes the installed steering to `spec` at once (no moment without it). */
  update(spec: SteeringSpec): Promise<void>;
  /**
   * What others set in the steering's own configuration (krelay.ko's /proc files), for the
   * daemon to follow; absent when the steering has no such place.
   */
  observe?(): Promise<{ gport: number; realIp: string; started: boolean }>;
  /** Removes everything krelay installed; safe to call when nothing is installed. */
  remove(): Promise<void>;
}
