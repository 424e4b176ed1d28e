/**
 * As root, in a lab namespace: krelay's sk_lookup program (src/steering/sk_lookup.ts) in the
 * real kernel. It hands a new connection to the relay's address and a service port to the
 * gateway listener, follows a change of ports at once, and is gone once closed.
 */

import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { LAB_ADDR } from "../src/lab/addresses.ts";
import { labTest } from "./support/requirements.ts";

const DENO = new URL("../node_modules/deno/deno", import.meta.url).pathname;
const PROBE = new URL("./fixtures/sk_lookup_probe.ts", import.meta.url).pathname;

labTest(
  "sk_lookup hands the service port's connections to the gateway listener",
  [],
  async (lab) => {
    const r = await lab.exec("relay", [DENO, "run", "-A", PROBE, LAB_ADDR.relay, "80", "16000"], {
      timeoutMs: 60_000,
    });
    if (!r.success) throw new Error(`sk_lookup_probe failed (${r.code}): ${r.stderr}`);
    assertEquals(JSON.parse(r.stdout.trim().split("\n").at(-1)!), {
      first: "connected",
      // The accepted socket is where the client meant to go, not the gateway port.
      acceptedLocalPort: 80,
      afterUpdate: { old: "ConnectionRefused", added: "connected" },
      afterClose: "ConnectionRefused",
    });
  },
);
