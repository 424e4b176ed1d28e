/**
 * Real servers in the lab's server namespaces: dnsmasq on port 53 and nginx on port 80, each
 * naming the server it runs on (srv1 or srv2) so tests can tell them apart. Both are started
 * through the lab, so `lab.down()` stops them.
 *
 * @example
 * ```ts
 * import { Lab } from "./topology.ts";
 * import { startServers } from "./servers.ts";
 * const lab = await Lab.start({ prefix: "krl" });
 * const { srv1 } = await startServers(lab);
 * const file = await srv1.web.ensureFile("big.bin", 10 * 1024 * 1024);
 * // curl from the client, then compare its sha256 with file.sha256
 * ```
 * @module
 */

import { dnsmasqArgs, type DnsmasqConfig, type DnsQuery, parseDnsmasqLog } from "./dnsmasq.ts";
import {
  type AccessLogEntry,
  indexPage,
  type NginxConfig,
  type NginxPaths,
  nginxPaths,
  parseAccessLog,
  renderNginxConfig,
} from "./nginx.ts";
import { writePayloadFile } from "./payload.ts";
import type { LabProcess } from "./process.ts";
import type { Lab, LabServer } from "./topology.ts";
import { waitFor } from "./wait.ts";

/** Options for {@link startDnsmasq}. */
export interface DnsOptions extends Pick<DnsmasqConfig, "a" | "txt" | "extraArgs"> {
  /** How long to wait for port 53 to listen. Default 5 s. */
  timeoutMs?: number;
}

/** A running lab DNS server. */
export interface DnsServer {
  server: LabServer;
  process: LabProcess;
  /** The query log: one line per query, with the client's address and port. */
  queryLogPath: string;
  /** The queries logged so far. */
  queries(): Promise<DnsQuery[]>;
  /** Waits until a logged query matches `pred`, and returns it. */
  waitForQuery(pred: (q: DnsQuery) => boolean, timeoutMs?: number): Promise<DnsQuery>;
  /** Stops it (the lab would at down()). */
  stop(): Promise<void>;
}

/** Starts dnsmasq on a lab server and waits until it listens on UDP and TCP port 53. */
export async function startDnsmasq(
  lab: Lab,
  id: "srv1" | "srv2" = "srv1",
  opts: DnsOptions = {},
): Promise<DnsServer> {
  const server = lab.server(id);
  const queryLogPath = `${lab.runDir}/dns-${id}-queries.log`;
  const argv = dnsmasqArgs({
    address: server.address,
    address6: server.address6,
    name: id,
    logPath: queryLogPath,
    pidPath: `${lab.runDir}/dnsmasq-${id}.pid`,
    a: opts.a,
    txt: opts.txt,
    extraArgs: opts.extraArgs,
  });
  const proc = lab.spawn(server.role, `dnsmasq-${id}`, argv);
  await waitUntilServing(lab, server, proc, [["udp", 53], ["tcp", 53]], opts.timeoutMs);
  const queries = async () => parseDnsmasqLog(await readIfExists(queryLogPath));
  return {
    server,
    process: proc,
    queryLogPath,
    queries,
    async waitForQuery(pred, timeoutMs = 5_000) {
      let hit: DnsQuery | undefined;
      await waitFor(async () => (hit = (await queries()).find(pred)) !== undefined, {
        timeoutMs,
        what: `a matching query in ${queryLogPath}`,
      });
      return hit!;
    },
    async stop() {
      await proc.stop();
    },
  };
}

/** Options for {@link startNginx}. */
export interface WebOptions
  extends Pick<NginxConfig, "workerConnections" | "workerProcesses" | "keepaliveTimeoutS"> {
  /** How long to wait for port 80 to listen. Default 5 s. */
  timeoutMs?: number;
}

/** A file a lab web server serves. */
export interface ServedFile {
  /** Path part of the URL, e.g. "/big.bin". */
  urlPath: string;
  /** Where it is on disk. */
  file: string;
  bytes: number;
  /** Hex SHA-256 of its content. */
  sha256: string;
}

/** A running lab web server. */
export interface WebServer {
  server: LabServer;
  process: LabProcess;
  paths: NginxPaths;
  /** The index page's exact content (it names the server). */
  indexText: string;
  /** `http://<server address><path>`: the URL for reaching it directly. */
  url(path?: string): string;
  /**
   * Makes sure the server has a file `name` of exactly `bytes` pseudo-random bytes (the same
   * content for the same name and size) and returns its URL path and SHA-256.
   */
  ensureFile(name: string, bytes: number): Promise<ServedFile>;
  /** The requests logged so far. */
  accessLog(): Promise<AccessLogEntry[]>;
  /** Waits until a logged request matches `pred`, and returns it. */
  waitForRequest(
    pred: (e: AccessLogEntry) => boolean,
    timeoutMs?: number,
  ): Promise<AccessLogEntry>;
  /** Stops it (the lab would at down()). */
  stop(): Promise<void>;
}

/** Starts nginx on a lab server and waits until it listens on TCP port 80. */
export async function startNginx(
  lab: Lab,
  id: "srv1" | "srv2" = "srv1",
  opts: WebOptions = {},
): Promise<WebServer> {
  const server = lab.server(id);
  const paths = nginxPaths(`${lab.runDir}/nginx-${id}`);
  await Deno.mkdir(paths.root, { recursive: true });
  await Deno.mkdir(paths.temp, { recursive: true });
  const indexText = indexPage(id, server.address);
  await Deno.writeTextFile(`${paths.root}/index.html`, indexText);
  await Deno.writeTextFile(
    paths.config,
    renderNginxConfig({
      paths,
      address: server.address,
      address6: server.address6,
      name: id,
      workerConnections: opts.workerConnections,
      workerProcesses: opts.workerProcesses,
      keepaliveTimeoutS: opts.keepaliveTimeoutS,
    }),
  );
  // -e: nginx opens its error log before reading the config; keep it off /var/log.
  const proc = lab.spawn(server.role, `nginx-${id}`, [
    "nginx",
    "-p",
    paths.dir,
    "-c",
    paths.config,
    "-e",
    paths.errorLog,
  ]);
  await waitUntilServing(lab, server, proc, [["tcp", 80]], opts.timeoutMs, paths.errorLog);

  const files = new Map<string, ServedFile>();
  const accessLog = async () => parseAccessLog(await readIfExists(paths.accessLog));
  return {
    server,
    process: proc,
    paths,
    indexText,
    url: (path = "/") => `http://${server.address}${path.startsWith("/") ? "" : "/"}${path}`,
    async ensureFile(name, bytes) {
      if (!/^[A-Za-z0-9._-]+$/.test(name) || name.startsWith(".")) {
        throw new RangeError(`bad file name "${name}"`);
      }
      const known = files.get(name);
      if (known && known.bytes === bytes) return known;
      const file = `${paths.root}/${name}`;
      const { sha256 } = await writePayloadFile(file, bytes, name);
      const served: ServedFile = { urlPath: `/${name}`, file, bytes, sha256 };
      files.set(name, served);
      return served;
    },
    accessLog,
    async waitForRequest(pred, timeoutMs = 5_000) {
      let hit: AccessLogEntry | undefined;
      await waitFor(async () => (hit = (await accessLog()).find(pred)) !== undefined, {
        timeoutMs,
        what: `a matching request in ${paths.accessLog}`,
      });
      return hit!;
    },
    async stop() {
      await proc.stop();
    },
  };
}

/** The DNS and web server of one lab server. */
export interface ServerPair {
  dns: DnsServer;
  web: WebServer;
}

/** The servers {@link startServers} started. */
export interface LabServers {
  srv1: ServerPair;
  /** Present when the lab has the second server. */
  srv2?: ServerPair;
}

/** Starts dnsmasq and nginx on every server of the lab. */
export async function startServers(
  lab: Lab,
  opts: { dns?: DnsOptions; web?: WebOptions } = {},
): Promise<LabServers> {
  const pairs = await Promise.all(lab.servers.map(async (s) => {
    const [dns, web] = await Promise.all([
      startDnsmasq(lab, s.id, opts.dns),
      startNginx(lab, s.id, opts.web),
    ]);
    return { dns, web };
  }));
  return pairs.length > 1 ? { srv1: pairs[0], srv2: pairs[1] } : { srv1: pairs[0] };
}

async function waitUntilServing(
  lab: Lab,
  server: LabServer,
  proc: LabProcess,
  sockets: ["tcp" | "udp", number][],
  timeoutMs = 5_000,
  extraLog?: string,
): Promise<void> {
  try {
    for (const [proto, port] of sockets) {
      await lab.waitForListen(server.role, proto, port, {
        address: server.address,
        timeoutMs,
        abort: () => proc.running ? undefined : `${proc.name} exited (${proc.exitStatus?.code})`,
      });
    }
  } catch (e) {
    const more = extraLog ? (await readIfExists(extraLog)).trim().split("\n").slice(-10) : [];
    const tail = [await proc.logTail(), ...more].filter((s) => s).join("\n");
    throw new Error(`${proc.name} did not start: ${(e as Error).message}\n${tail}`, { cause: e });
  }
}

async function readIfExists(path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return "";
    throw e;
  }
}
