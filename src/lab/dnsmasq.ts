/**
 * dnsmasq as the lab's DNS server: its command line (no system configuration, static
 * records only, every query logged to a file) and the parsing of that query log.
 *
 * @example
 * ```ts
 * import { dnsmasqArgs } from "./dnsmasq.ts";
 * const argv = dnsmasqArgs({
 *   address: "203.0.113.10",
 *   name: "srv1",
 *   logPath: "/tmp/lab/dns.log",
 *   pidPath: "/tmp/lab/dns.pid",
 * });
 * ```
 * @module
 */

import { LAB_ADDR, LAB_ADDR6, LAB_DOMAIN, WHOAMI_TXT } from "./addresses.ts";

/** What {@link dnsmasqArgs} needs. */
export interface DnsmasqConfig {
  /** The address to listen on (port 53 unless `port` says otherwise). */
  address: string;
  /** Its IPv6 address, listened on too when given. */
  address6?: string;
  port?: number;
  /** The server's name, answered for the TXT name {@link WHOAMI_TXT}. */
  name: string;
  /** Query log (dnsmasq's --log-facility). */
  logPath: string;
  pidPath: string;
  /**
   * A records: domain -> address; a domain also covers every name under it. Default:
   * {@link LAB_DOMAIN} -> {@link LAB_ADDR}.dnsAnswer.
   */
  a?: Record<string, string>;
  /** TXT records: name -> text, added to the whoami one. */
  txt?: Record<string, string>;
  /** More dnsmasq options, appended last. */
  extraArgs?: string[];
}

/** The dnsmasq argv for one lab DNS server. */
export function dnsmasqArgs(cfg: DnsmasqConfig): string[] {
  const a = cfg.a ?? { [LAB_DOMAIN]: LAB_ADDR.dnsAnswer };
  // The default domain answers AAAA queries too.
  const aaaa = cfg.a === undefined ? [`--address=/${LAB_DOMAIN}/${LAB_ADDR6.dnsAnswer}`] : [];
  const txt = { [WHOAMI_TXT]: cfg.name, ...cfg.txt };
  return [
    "dnsmasq",
    "--keep-in-foreground",
    "--conf-file=/dev/null",
    "--no-resolv",
    "--no-hosts",
    "--no-poll",
    "--bind-interfaces",
    `--listen-address=${cfg.address}`,
    ...(cfg.address6 === undefined ? [] : [`--listen-address=${cfg.address6}`]),
    `--port=${cfg.port ?? 53}`,
    // Keep root: the run directory is private to root, and the log file lives there.
    "--user=root",
    "--group=root",
    `--pid-file=${cfg.pidPath}`,
    // "extra" adds the client's port: "<serial> <addr>/<port> query[A] name from addr".
    "--log-queries=extra",
    `--log-facility=${cfg.logPath}`,
    "--cache-size=0",
    ...Object.entries(a).map(([domain, addr]) => `--address=/${domain}/${addr}`),
    ...aaaa,
    ...Object.entries(txt).map(([name, text]) => `--txt-record=${name},${text}`),
    ...(cfg.extraArgs ?? []),
  ];
}

/** One query from dnsmasq's log. */
export interface DnsQuery {
  /** The client's address as the server saw it. */
  client: string;
  /** The client's source port, when logged. */
  port?: number;
  /** Record type asked for, e.g. "A", "TXT". */
  type: string;
  /** The name asked for. */
  name: string;
  /** The log line. */
  line: string;
}

const QUERY =
  /(?:\s(\d+)\s+([0-9a-fA-F.:]+)\/(\d+))?\s+query\[([A-Za-z0-9]+)\]\s+(\S+)\s+from\s+([0-9a-fA-F.:]+)\s*$/;

/** The queries in a dnsmasq log (other lines are skipped). */
export function parseDnsmasqLog(text: string): DnsQuery[] {
  const out: DnsQuery[] = [];
  for (const line of text.split("\n")) {
    const m = QUERY.exec(line);
    if (!m) continue;
    const q: DnsQuery = { client: m[6], type: m[4], name: m[5], line };
    if (m[3] !== undefined) q.port = Number(m[3]);
    out.push(q);
  }
  return out;
}
