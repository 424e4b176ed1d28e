/**
 * Memory per relayed TCP connection: krelay's resident memory before and after N idle
 * connections are established through it (client -> relay -> a server that holds them), in
 * a lab of namespaces, for each rewriting mode. Run as root: `deno run -A tools/bench_memory.ts
 * [N]` (default 10000). Prints KiB per connection.
 */

import { LAB_ADDR } from "../src/lab/addresses.ts";
import { LAB_RELAY_FLAGS, spawnKrelay } from "../src/lab/krelay_process.ts";
import { Lab } from "../src/lab/topology.ts";
import { waitFor } from "../src/lab/wait.ts";

const N = Number(Deno.args[0] ?? 10_000);
const ROOT = new URL("../", import.meta.url).pathname;
const DENO = `${ROOT}node_modules/deno/deno`;

const holdServer = `
import net from "node:net";
let n = 0;
// A deep backlog: the relay opens connections faster than a default one (511) is drained.
net.createServer((s) => { n++; s.on("error", () => {}); })
  .listen({ port: 8080, host: "${LAB_ADDR.server}", backlog: 65535 });
setInterval(() => Deno.writeTextFileSync(Deno.args[0], String(n)), 200);
`;
const idleClients = `
import net from "node:net";
const n = Number(Deno.args[0]);
const socks = [];
let open = 0;
for (let i = 0; i < n; i++) {
  const s = net.connect({ host: "${LAB_ADDR.relay}", port: 8080 }, () => open++);
  s.on("error", () => {});
  socks.push(s);
  if (i % 200 === 199) await new Promise((r) => setTimeout(r, 20));
}
setInterval(() => Deno.writeTextFileSync(Deno.args[1], String(open)), 200);
`;

function rssKiB(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]);
}

async function measure(): Promise<number> {
  const lab = new Lab({ prefix: "krt-mem" });
  try {
    await lab.up();
    await lab.exec("client", ["sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65000"]);
    await lab.exec("server", ["sysctl", "-qw", "net.core.somaxconn=65535"]);
    const dir = lab.runDir;
    await Deno.writeTextFile(`${dir}/hold.ts`, holdServer);
    await Deno.writeTextFile(`${dir}/idle.ts`, idleClients);
    lab.spawn("server", "hold", [
      "bash",
      "-c",
      `ulimit -n 1048576; exec ${DENO} run -A ${dir}/hold.ts ${dir}/held`,
    ]);
    await lab.waitForListen("server", "tcp", 8080, { timeoutMs: 30_000 });
    const krelay = await spawnKrelay(lab, [
      ...LAB_RELAY_FLAGS,
      "--tcp-ports",
      "8080",
      "--control-socket",
      `${dir}/k.sock`,
      "--nat-max-entries",
      String(N * 2),
    ]);
    const pids = (await lab.exec("relay", ["sh", "-c", `ip netns pids ${lab.ns.relay}`])).stdout;
    const pid = Number(
      pids.trim().split("\n").find((p) => {
        try {
          return Deno.readTextFileSync(`/proc/${p}/cmdline`).includes("main.ts");
        } catch {
          return false;
        }
      }),
    );
    await new Promise((r) => setTimeout(r, 2000));
    const before = rssKiB(pid);
    lab.spawn("client", "idle", [
      "bash",
      "-c",
      `ulimit -n 1048576; exec ${DENO} run -A ${dir}/idle.ts ${N} ${dir}/open`,
    ]);
    const count = async (f: string) =>
      Number(await Deno.readTextFile(`${dir}/${f}`).catch(() => "0"));
    let last = "";
    try {
      await waitFor(async () => {
        last = `client open ${await count("open")}, server held ${await count("held")}`;
        return (await count("held")) >= N;
      }, { timeoutMs: 180_000, intervalMs: 500, what: `${N} held` });
    } catch (e) {
      throw new Error(`${(e as Error).message} (${last})\n${await krelay.logTail(10)}`);
    }
    await new Promise((r) => setTimeout(r, 3000));
    const after = rssKiB(pid);
    return (after - before) / N;
  } finally {
    await lab.down();
  }
}

const perConn = await measure();
console.log(
  `${perConn.toFixed(1)} KiB of resident memory per idle relayed connection (N=${N})`,
);
