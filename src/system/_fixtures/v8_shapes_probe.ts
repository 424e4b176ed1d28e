/**
 * Run with `--v8-flags=--allow-natives-syntax`: has V8 optimise a hot function on warm-up values,
 * gives it a client's, and prints as JSON whether its optimised code survived, for each rule of
 * v8_shapes.ts and for the rule broken.
 *
 * @module
 */

import { TcpTargets } from "../../nat/tcp_targets.ts";
import { DOUBLE_ZERO, signed32 } from "../v8_shapes.ts";

// V8's own functions, reached only through code compiled at run time.
const natives = (code: string, f: unknown) => new Function("f", code)(f);
// %GetOptimizationStatus bits of this V8 (Deno 2.9): Maglev 1 << 4, TurboFan 1 << 5.
const OPTIMIZED = (1 << 4) | (1 << 5);

/** Optimises `f` on `warm`, calls it on `client`; true when it is still optimised. */
function survives<A>(f: (a: A) => unknown, warm: A, client: A): boolean {
  natives("%PrepareFunctionForOptimization(f)", f);
  for (let i = 0; i < 20; i++) f(warm);
  natives("%OptimizeFunctionOnNextCall(f)", f);
  f(warm);
  if ((natives("return %GetOptimizationStatus(f)", f) & OPTIMIZED) === 0) {
    throw new Error("the probe could not optimise its function");
  }
  f(client);
  return (natives("return %GetOptimizationStatus(f)", f) & OPTIMIZED) !== 0;
}

const LOOPBACK = 0x7f000001;
const CLIENT = 0xcb007101; // 203.0.113.1, above 2^31 unsigned

/**
 * Rule 2: an accept warmed up on 127.0.0.1, then given a client's address: the flow it records
 * (as relay/relayed.ts's) and the target it looks up (nat/tcp_targets.ts).
 */
function lookup(form: (a: number) => number): boolean {
  const settings = { realIp: LOOPBACK, tcpPorts: new Set([80]) };
  const targets = new TcpTargets(() => settings);
  const f = (client: number) => {
    const t = targets.target(80, client);
    const flow = { client, clientPort: 40000, server: t === undefined ? 0 : t.server };
    return flow.client === flow.server ? 1 : 0;
  };
  return survives(f, form(LOOPBACK), form(CLIENT));
}

/** Rule 1: a byte counter warmed up on small counts, then passing 2^31. */
function counter(start: number): boolean {
  class Direction {
    moved = start;
  }
  const d = new Direction();
  const f = (n: number) => (d.moved += n);
  return survives(f, 1000, 2 ** 31);
}

console.log(JSON.stringify({
  signed: lookup(signed32),
  unsigned: lookup((a) => a >>> 0),
  double: counter(DOUBLE_ZERO),
  smi: counter(0),
}));
