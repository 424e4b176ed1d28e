/**
 * One long TCP connection through the relay (tests/fixtures/long_client.py), for the tests
 * whose change must leave established connections alone: it has one exchange at the start
 * and a second on the same connection when told.
 *
 * @module
 */

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import type { Lab } from "../../src/lab/topology.ts";
import { waitForLine } from "../../src/lab/wait.ts";

const CLIENT = new URL("../fixtures/long_client.py", import.meta.url).pathname;

/** A long connection whose first exchange went through. */
export interface LongClient {
  /** Asserts that a second exchange goes through on the same connection. */
  assertSecond(): Promise<void>;
}

/**
 * Opens the long connection from the client's namespace to `address`:`port` and asserts
 * that its first exchange went through.
 */
export async function startLongClient(
  lab: Lab,
  address: string,
  port: number,
): Promise<LongClient> {
  const trigger = `${lab.runDir}/long-client-go`;
  const long = lab.spawn("client", "long-client", [
    "python3",
    CLIENT,
    address,
    String(port),
    trigger,
  ]);
  await waitForLine(long.logPath, /^(first|error)/, { timeoutMs: 10_000 });
  assert((await long.readLog()).startsWith("first"), await long.readLog());
  return {
    async assertSecond() {
      await Deno.writeTextFile(trigger, "");
      await waitForLine(long.logPath, /^(second|error)/, { timeoutMs: 10_000 });
      assertEquals((await long.readLog()).trim().split("\n"), ["first", "second"]);
    },
  };
}
