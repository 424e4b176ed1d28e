/**
 * A download through the lab, checked by its digest: curl on the client, piped into sha256sum.
 *
 * @module
 */

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import type { Lab } from "../../src/lab/topology.ts";

/**
 * Asserts that the client downloads `url` whole within `seconds`: curl succeeds and what came
 * has the digest `sha256` (the file's, as the server wrote it).
 */
export async function assertDownload(
  lab: Lab,
  url: string,
  sha256: string,
  seconds: number,
): Promise<void> {
  const r = await lab.exec("client", [
    "bash",
    "-c",
    `set -o pipefail; curl -sS --max-time ${seconds} "$0" | sha256sum`,
    url,
  ], { timeoutMs: (seconds + 10) * 1000 });
  assert(r.success, r.stderr);
  assertEquals(r.stdout.split(" ")[0], sha256);
}
