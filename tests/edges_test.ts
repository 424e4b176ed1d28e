/**
 * End to end, as root: at the edges, the relay behaves as kernel NAT would (issue 29): TCP
 * keepalives keep a connection alive, ICMP errors about relayed flows are translated both
 * ways, path MTU discovery works through the relay, large datagrams get through whole.
 */

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { LAB_ADDR } from "../src/lab/addresses.ts";
import { LAB_FLAGS, startKrelay } from "./support/krelay.ts";
import { labTest, type Requirement } from "./support/requirements.ts";

const NEEDS: Requirement[] = ["iptables", "nft", "libnetfilter_queue", "cmd:python3"];
const R = LAB_ADDR.relay;
const FIXTURES = new URL("./fixtures/", import.meta.url).pathname;

labTest(
  "TCP keepalives from either side keep a connection past the idle timeout; silence does not",
  NEEDS,
  async (lab) => {
    const port = 9000;
    const peer = `${FIXTURES}keepalive_peer.py`;
    const server = lab.spawn("server", "keepalive", [
      "python3",
      peer,
      "server",
      LAB_ADDR.server,
      String(port),
    ]);
    await lab.waitForListen("server", "tcp", port);
    const krelay = await startKrelay(lab, [
      ...LAB_FLAGS,
      "--tcp-ports",
      String(port),
      "--tcp-idle-timeout",
      "3",
    ]);
    // Probes every second; seven seconds of silence are more than two timeouts.
    const r = await lab.exec("client", ["python3", peer, "client", R, String(port), "7"], {
      timeoutMs: 30_000,
    });
    assert(r.success, r.stderr);
    const out = JSON.parse(r.stdout);
    assertEquals([out.C, out.K], ["ok", "ok"]);
    assert(out.N !== "ok", `the silent connection outlived the idle timeout: ${out.N}`);
    assertEquals(await krelay.stop(), 0);
    await server.stop();
  },
);
