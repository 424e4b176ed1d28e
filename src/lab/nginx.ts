/**
 * nginx as the lab's web server: a self-contained configuration (every path inside the
 * server's own directory, nothing read from /etc/nginx) and the parsing of its access log.
 *
 * @example
 * ```ts
 * import { nginxPaths, renderNginxConfig } from "./nginx.ts";
 * const text = renderNginxConfig({
 *   paths: nginxPaths("/tmp/lab/nginx-srv1"),
 *   address: "203.0.113.10",
 *   name: "srv1",
 * });
 * ```
 * @module
 */

/** Where one nginx instance keeps its files. */
export interface NginxPaths {
  /** The instance's directory (nginx's prefix). */
  dir: string;
  config: string;
  /** Document root. */
  root: string;
  accessLog: string;
  errorLog: string;
  pid: string;
  /** Parent of the temp directories nginx wants. */
  temp: string;
}

/** The file layout of an nginx instance in `dir`. */
export function nginxPaths(dir: string): NginxPaths {
  return {
    dir,
    config: `${dir}/nginx.conf`,
    root: `${dir}/www`,
    accessLog: `${dir}/access.log`,
    errorLog: `${dir}/error.log`,
    pid: `${dir}/nginx.pid`,
    temp: `${dir}/tmp`,
  };
}

/** What {@link renderNginxConfig} needs. */
export interface NginxConfig {
  paths: NginxPaths;
  /** The address to listen on. */
  address: string;
  /** Its IPv6 address, listened on too when given. */
  address6?: string;
  /** Default 80. */
  port?: number;
  /** The server's name, shown by the index page and /whoami. */
  name: string;
  /** Per worker; default 4096 (2000 concurrent client connections fit with room to spare). */
  workerConnections?: number;
  /** Default 1: the relay under test needs the other core more. */
  workerProcesses?: number;
  /** Seconds an idle keep-alive connection stays open. Default 15. */
  keepaliveTimeoutS?: number;
}

/** The fields each access-log line holds, in order (see {@link parseAccessLog}). */
export const ACCESS_LOG_FORMAT =
  '$remote_addr $remote_port $server_addr:$server_port [$time_iso8601] "$request" ' +
  "$status $body_bytes_sent $request_time";

/** The text of nginx.conf for one lab web server. */
export function renderNginxConfig(cfg: NginxConfig): string {
  const p = cfg.paths;
  const wc = cfg.workerConnections ?? 4096;
  const port = cfg.port ?? 80;
  return `# krelay lab web server ${cfg.name}; generated, every path inside ${p.dir}
daemon off;
master_process on;
# The run directory is private to root.
user root;
worker_processes ${cfg.workerProcesses ?? 1};
worker_rlimit_nofile ${wc * 2 + 64};
pid ${p.pid};
error_log ${p.errorLog} warn;

events {
    worker_connections ${wc};
}

http {
    log_format lab '${ACCESS_LOG_FORMAT}';
    access_log ${p.accessLog} lab;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout ${cfg.keepaliveTimeoutS ?? 15}s;
    keepalive_requests 10000;
    reset_timedout_connection on;
    server_tokens off;
    client_body_temp_path ${p.temp}/body;
    proxy_temp_path ${p.temp}/proxy;
    fastcgi_temp_path ${p.temp}/fastcgi;
    uwsgi_temp_path ${p.temp}/uwsgi;
    scgi_temp_path ${p.temp}/scgi;
    types {
        text/html html;
        text/plain txt;
    }
    default_type application/octet-stream;

    server {
        listen ${cfg.address}:${port} backlog=4096;
${
    cfg.address6 === undefined
      ? ""
      : `        listen [${cfg.address6}]:${port} backlog=4096;\n`
  }        server_name _;
        root ${p.root};
        index index.html;
        # Who the server believes it talks to: the relay must keep the client's address.
        location = /whoami {
            default_type text/plain;
            return 200 "${cfg.name} $remote_addr:$remote_port\\n";
        }
    }
}
`;
}

/** The index page of a lab web server: one line that names it. */
export function indexPage(name: string, address: string): string {
  return `krelay lab server ${name} at ${address}\n`;
}

/** One request from the access log. */
export interface AccessLogEntry {
  /** The client's address as the server saw it. */
  remoteAddr: string;
  remotePort: number;
  /** The address:port the request arrived on. */
  server: string;
  time: string;
  /** The request line, e.g. "GET / HTTP/1.1". */
  request: string;
  status: number;
  bodyBytes: number;
  requestTimeS: number;
}

const LINE = /^(\S+) (\d+) (\S+) \[([^\]]*)\] "((?:[^"\\]|\\.)*)" (\d{3}) (\d+) ([\d.]+)$/;

/** The entries of an access log written with {@link ACCESS_LOG_FORMAT}. */
export function parseAccessLog(text: string): AccessLogEntry[] {
  const out: AccessLogEntry[] = [];
  for (const line of text.split("\n")) {
    const m = LINE.exec(line.trim());
    if (!m) continue;
    out.push({
      remoteAddr: m[1],
      remotePort: Number(m[2]),
      server: m[3],
      time: m[4],
      request: m[5],
      status: Number(m[6]),
      bodyBytes: Number(m[7]),
      requestTimeS: Number(m[8]),
    });
  }
  return out;
}
