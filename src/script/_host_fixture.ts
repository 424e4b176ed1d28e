// Test fixture: a ScriptHost for the script host's tests (host_test.ts, limits_test.ts), the
// relay at R relaying clients such as C to the server S, and the paths of the test scripts.

import { parseIpv4 } from "../packet/address.ts";
import { ScriptHost, type ScriptPolicy } from "./host.ts";

export const R = parseIpv4("198.51.100.1");
export const C = parseIpv4("198.51.100.10");
export const S = parseIpv4("203.0.113.10");

/** The path of the test script `_fixtures/NAME.ts`. */
export const fixture = (name: string): string =>
  new URL(`./_fixtures/${name}.ts`, import.meta.url).pathname;

/**
 * A host with `policy` over the defaults; scripts are not type-checked unless `check`.
 * The budget is generous: these tests are about what scripts decide, and a fresh worker's first
 * batch on a loaded machine once took over 200 ms, so its packets went on undecided
 * (fail-open). The budget's own test sets a small one.
 */
export function testHost(policy: Partial<ScriptPolicy> = {}, check = false): ScriptHost {
  const p: ScriptPolicy = {
    defaultVerdict: "accept",
    budgetMs: 5_000,
    maxErrors: 5,
    errorWindowMs: 60_000,
    ...policy,
  };
  return new ScriptHost({
    policy: () => p,
    relayIp: () => R,
    serverOf: (_p, _c, _cp, _s, port) => [S, port],
    now: () => performance.now(),
    check: check ? undefined : () => Promise.resolve(),
  });
}
