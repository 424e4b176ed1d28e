// The lab itself, as root: topology, routing, the real servers, and a teardown that leaves
// nothing behind. Everything runs inside namespaces with random `krt-` prefixes.

import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { LAB_ADDR, LAB_ADDR6, LAB_IF } from "../src/lab/addresses.ts";
import { cleanupStale, listNamespaces, OWNER_DIR } from "../src/lab/cleanup.ts";
import { allLabNamespaces, randomTestPrefix } from "../src/lab/names.ts";
import { pidExists, run, runIn } from "../src/lab/process.ts";
import { startDnsmasq, startNginx, startServers } from "../src/lab/servers.ts";
import { Lab } from "../src/lab/topology.ts";
import { probeTcp } from "../src/lab/wait.ts";
import { LAB_BASE, labTest, requiringTest } from "./support/requirements.ts";

const DIG = ["dig", "+short", "+time=1", "+tries=2"];

labTest("Lab.up() gives the client a route to the server through the relay", [], async (lab) => {
  const route = await lab.exec("client", ["ip", "route", "get", LAB_ADDR.server], { check: true });
  assert(route.stdout.includes(`via ${LAB_ADDR.relay}`), route.stdout);
  assert(route.stdout.includes(`src ${LAB_ADDR.client}`), route.stdout);
  // A reset from the server (nothing listens on port 9) proves the round trip by routing.
  assertEquals(await probeTcp(lab.ns.client, LAB_ADDR.server, 9), "refused");
  const back = await lab.exec("server", ["ip", "route", "get", LAB_ADDR.client], { check: true });
  assert(back.stdout.includes(`via ${LAB_ADDR.relayServerSide}`), back.stdout);
});

labTest(
  "Lab.up() sets the relay's forwarding and the client's two addresses, in both families",
  [],
  async (lab) => {
    const sysctl = async (where: string, key: string) =>
      (await lab.exec(where, ["sysctl", "-n", key], { check: true })).stdout.trim();
    assertEquals(await sysctl("relay", "net.ipv4.ip_forward"), "1");
    assertEquals(await sysctl("relay", "net.ipv4.conf.all.rp_filter"), "0");
    assertEquals(await sysctl("relay", `net.ipv4.conf.${LAB_IF.relayClient}.rp_filter`), "0");
    // Dual stack: IPv6 on, forwarded by the relay, static addresses only.
    assertEquals(await sysctl("relay", "net.ipv6.conf.all.forwarding"), "1");
    for (const where of ["client", "relay", "server"]) {
      assertEquals(await sysctl(where, "net.ipv6.conf.all.disable_ipv6"), "0");
    }
    const addrs6 = await lab.exec("client", ["ip", "-6", "-o", "addr", "show", "dev", LAB_IF.host]);
    assert(addrs6.stdout.includes(`${LAB_ADDR6.client}/64`), addrs6.stdout);
    assert(addrs6.stdout.includes(`${LAB_ADDR6.client2}/64`), addrs6.stdout);
    const relay6 = await lab.exec("relay", ["ip", "-6", "-o", "addr"]);
    assert(relay6.stdout.includes(`${LAB_ADDR6.relay}/64`), relay6.stdout);
    assert(relay6.stdout.includes(`${LAB_ADDR6.relayServerSide}/64`), relay6.stdout);
    const addrs = await lab.exec("client", ["ip", "-4", "-o", "addr", "show", "dev", LAB_IF.host]);
    assert(addrs.stdout.includes(`${LAB_ADDR.client}/24`), addrs.stdout);
    assert(addrs.stdout.includes(`${LAB_ADDR.client2}/24`), addrs.stdout);
    const relay = await lab.exec("relay", ["ip", "-4", "-o", "addr"]);
    assert(
      relay.stdout.includes(`${LAB_IF.relayClient}    inet ${LAB_ADDR.relay}/24`),
      relay.stdout,
    );
    assert(
      relay.stdout.includes(`${LAB_IF.relayServer}    inet ${LAB_ADDR.relayServerSide}/24`),
      relay.stdout,
    );
  },
);

labTest(
  "dnsmasq answers the client by plain routing and logs its address",
  ["dnsmasq", "dig"],
  async (lab) => {
    const dns = await startDnsmasq(lab);
    const r = await lab.exec("client", [...DIG, `@${LAB_ADDR.server}`, "lab.example"], {
      check: true,
    });
    assertEquals(r.stdout.trim(), LAB_ADDR.dnsAnswer);
    const q = await dns.waitForQuery((q) => q.name === "lab.example");
    assertEquals(q.client, LAB_ADDR.client);
    assertEquals(q.type, "A");
    const txt = await lab.exec("client", [
      ...DIG,
      `@${LAB_ADDR.server}`,
      "whoami.lab.example",
      "TXT",
    ]);
    assertEquals(txt.stdout.trim(), '"srv1"');
  },
);

labTest(
  "nginx serves the index page and logs the client's address",
  ["nginx", "curl"],
  async (lab) => {
    const web = await startNginx(lab);
    const r = await lab.exec("client", ["curl", "-sS", "--max-time", "5", web.url("/")], {
      check: true,
    });
    assertEquals(r.stdout, web.indexText);
    assert(r.stdout.includes("srv1"));
    const hit = await web.waitForRequest((e) => e.request === "GET / HTTP/1.1");
    assertEquals(hit.remoteAddr, LAB_ADDR.client);
    assertEquals(hit.status, 200);
    const who = await lab.exec("client", ["curl", "-sS", "--max-time", "5", web.url("/whoami")]);
    assert(who.stdout.startsWith(`srv1 ${LAB_ADDR.client}:`), who.stdout);
  },
);

labTest(
  "WebServer.ensureFile() serves a file the client receives intact",
  ["nginx", "curl"],
  async (lab) => {
    const web = await startNginx(lab);
    const file = await web.ensureFile("big.bin", 8 * 1024 * 1024 + 3);
    assertEquals(await web.ensureFile("big.bin", 8 * 1024 * 1024 + 3), file);
    const r = await lab.exec("client", [
      "bash",
      "-c",
      'curl -sS --max-time 20 "$0" | sha256sum',
      web.url(file.urlPath),
    ], { check: true, timeoutMs: 30_000 });
    assertEquals(r.stdout.split(" ")[0], file.sha256);
  },
);

labTest(
  "the second server answers with its own name",
  ["dnsmasq", "nginx", "dig", "curl"],
  async (lab) => {
    const servers = await startServers(lab);
    assert(servers.srv2, "srv2 started");
    const txt = await lab.exec("client", [
      ...DIG,
      `@${LAB_ADDR.server2}`,
      "whoami.lab.example",
      "TXT",
    ], {
      check: true,
    });
    assertEquals(txt.stdout.trim(), '"srv2"');
    const page = await lab.exec("client", [
      "curl",
      "-sS",
      "--max-time",
      "5",
      servers.srv2.web.url(),
    ], {
      check: true,
    });
    assertEquals(page.stdout, servers.srv2.web.indexText);
    assert(page.stdout.includes("srv2"));
    // The second client address is used when asked for, and the server sees it.
    const who = await lab.exec("client", [
      "curl",
      "-sS",
      "--max-time",
      "5",
      "--interface",
      LAB_ADDR.client2,
      servers.srv2.web.url("/whoami"),
    ], { check: true });
    assert(who.stdout.startsWith(`srv2 ${LAB_ADDR.client2}:`), who.stdout);
    assertEquals((await servers.srv1.web.accessLog()).length, 0);
  },
  { secondServer: true },
);

labTest("the relay's iptables sees traffic to either server on srv0", ["iptables"], async (lab) => {
  const ipt = (...args: string[]) =>
    lab.exec("relay", ["iptables", "-w", "5", ...args], { check: true });
  await ipt(
    "-t",
    "mangle",
    "-A",
    "POSTROUTING",
    "-o",
    LAB_IF.relayServer,
    "-p",
    "tcp",
    "--dport",
    "9",
  );
  for (const s of lab.servers) {
    assertEquals(await probeTcp(lab.ns.client, s.address, 9), "refused");
  }
  const list = await ipt("-t", "mangle", "-L", "POSTROUTING", "-v", "-n", "-x");
  const packets = Number(
    list.stdout.split("\n").find((l) => l.includes("dpt:9"))?.trim().split(/\s+/)[0],
  );
  // One SYN per server, unless a SYN was retransmitted.
  assert(packets >= 2, list.stdout);
}, { secondServer: true });

const FULL_LAB = [...LAB_BASE, "dnsmasq", "nginx"] as const;

requiringTest(
  "Lab.down() leaves no namespace, process or run directory behind",
  FULL_LAB,
  async () => {
    const lab = await Lab.start({ prefix: randomTestPrefix(), secondServer: true });
    let stray: Deno.ChildProcess | undefined;
    try {
      await startServers(lab);
      // A process the lab did not start itself but that runs in its namespace.
      stray = new Deno.Command("ip", {
        args: ["netns", "exec", lab.ns.client, "sleep", "300"],
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).spawn();
      assertEquals(lab.processes.length, 4);
      assert(lab.processes.every((p) => p.running));
    } finally {
      await lab.down().finally(() => killIfRunning(stray));
    }
    const status = await stray!.status;
    assertEquals(status.signal, "SIGTERM");
    const names = await listNamespaces();
    assertEquals(names.filter((n) => n.startsWith(`${lab.prefix}-`)), []);
    for (const p of lab.processes) {
      assert(!p.running, `${p.name} still running`);
      assert(!pidExists(p.pid), `pid ${p.pid} (${p.name}) still exists`);
    }
    await assertGone(lab.runDir);
    await assertGone(`${OWNER_DIR}/${lab.prefix}.json`);
  },
);

requiringTest("Lab.up() replaces an earlier lab with the same prefix", FULL_LAB, async () => {
  const prefix = randomTestPrefix();
  const first = await Lab.start({ prefix });
  const second = new Lab({ prefix });
  try {
    const old = await startDnsmasq(first);
    await second.up();
    // The first lab's server was inside the namespaces that were replaced.
    await old.process.status;
    assert(!old.process.running);
    await startDnsmasq(second);
  } finally {
    await second.down();
    await first.down();
  }
  const names = await listNamespaces();
  assertEquals(names.filter((n) => n.startsWith(`${prefix}-`)), []);
});

requiringTest(
  "cleanupStale() removes a dead run's lab and keeps a live one",
  FULL_LAB,
  async () => {
    const live = await Lab.start({ prefix: randomTestPrefix() });
    const dead = randomTestPrefix();
    let orphan: Deno.ChildProcess | undefined;
    try {
      // What a crashed run leaves: namespaces, a process inside, an owner record naming a
      // process that no longer exists.
      await run(["ip", "-batch", "-"], {
        stdin: allLabNamespaces(dead).slice(0, 3).map((n) => `netns add ${n}\n`).join(""),
        check: true,
      });
      orphan = new Deno.Command("ip", {
        args: ["netns", "exec", `${dead}-srv`, "sleep", "300"],
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).spawn();
      const gone = new Deno.Command("true").spawn();
      await gone.status;
      await Deno.mkdir(OWNER_DIR, { recursive: true });
      await Deno.writeTextFile(
        `${OWNER_DIR}/${dead}.json`,
        JSON.stringify({ prefix: dead, pid: gone.pid, pidStart: "0", runDir: "/nonexistent" }),
      );
      const removed = await cleanupStale(/^krt-/);
      // (Another test run cleaning up at the same moment may have removed it first.)
      assert(!removed.includes(live.prefix));
      assertEquals((await orphan.status).signal, "SIGTERM");
      const names = await listNamespaces();
      assertEquals(names.filter((n) => n.startsWith(`${dead}-`)), []);
      assert(names.includes(live.ns.relay));
      assertEquals(await probeTcp(live.ns.client, LAB_ADDR.server, 9), "refused");
    } finally {
      await killIfRunning(orphan);
      await live.down();
      for (const ns of allLabNamespaces(dead)) {
        await run(["ip", "netns", "delete", ns]);
      }
      await Deno.remove(`${OWNER_DIR}/${dead}.json`).catch(() => {});
    }
  },
);

labTest("Lab.exec() refuses a namespace that is not the lab's", [], async (lab) => {
  let threw = false;
  try {
    await lab.exec("krt-somebody-else-cli", ["true"]);
  } catch (e) {
    threw = e instanceof RangeError;
  }
  assert(threw);
  assert(!lab.hasSecondServer);
  // Nothing runs there yet: a command in the server namespace sees only lo and eth0.
  const links = await runIn(lab.ns.server, ["ip", "-o", "link"], { check: true });
  assertEquals(links.stdout.trim().split("\n").length, 2);
});

async function assertGone(path: string): Promise<void> {
  try {
    await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return;
    throw e;
  }
  throw new Error(`${path} still exists`);
}

/** Test cleanup for a child a test started itself, in case the code under test did not. */
async function killIfRunning(child: Deno.ChildProcess | undefined): Promise<void> {
  if (!child) return;
  try {
    child.kill("SIGKILL");
  } catch {
    // Already exited.
  }
  await child.status;
}
