import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { indexPage, nginxPaths, parseAccessLog, renderNginxConfig } from "./nginx.ts";

Deno.test("renderNginxConfig() keeps every path in the server's directory", () => {
  const paths = nginxPaths("/tmp/krelay-lab-krl-1/nginx-srv1");
  const text = renderNginxConfig({ paths, address: "203.0.113.10", name: "srv1" });
  const pathLines = text.split("\n").filter((l) =>
    /^\s*(pid|error_log|access_log|root|\w+_temp_path)\s/.test(l)
  );
  assertEquals(pathLines.length, 9);
  for (const line of pathLines) {
    const abs = line.match(/\s(\/[^\s;]*)/g) ?? [];
    assert(abs.length > 0, line);
    for (const p of abs) assert(p.trim().startsWith(paths.dir), `outside: ${line}`);
  }
  assert(text.includes("daemon off;"));
  assert(text.includes("master_process on;"));
  assert(text.includes(`pid ${paths.pid};`));
  assert(text.includes(`access_log ${paths.accessLog} lab;`));
  assert(text.includes("listen 203.0.113.10:80 backlog=4096;"));
  assert(text.includes('return 200 "srv1 $remote_addr:$remote_port\\n";'));
});

Deno.test("renderNginxConfig() has room for 2000 concurrent connections", () => {
  const paths = nginxPaths("/x");
  const text = renderNginxConfig({ paths, address: "203.0.113.10", name: "srv1" });
  const wc = Number(/worker_connections (\d+);/.exec(text)?.[1]);
  const nofile = Number(/worker_rlimit_nofile (\d+);/.exec(text)?.[1]);
  assert(wc >= 2000 + 100, `worker_connections ${wc}`);
  assert(nofile >= wc, `worker_rlimit_nofile ${nofile}`);
  assert(/keepalive_timeout \d+s;/.test(text));
  const custom = renderNginxConfig({
    paths,
    address: "203.0.113.20",
    port: 8080,
    name: "srv2",
    workerConnections: 100,
    keepaliveTimeoutS: 2,
  });
  assert(custom.includes("worker_connections 100;"));
  assert(custom.includes("keepalive_timeout 2s;"));
  assert(custom.includes("listen 203.0.113.20:8080"));
});

Deno.test("parseAccessLog() reads the lab log format", () => {
  const log = [
    '198.51.100.10 43142 203.0.113.10:80 [2026-11-21T02:01:42+00:00] "GET / HTTP/1.1" 200 39 0.000',
    "garbage",
    '198.51.100.11 5 203.0.113.10:80 [t] "GET /a\\"b HTTP/1.0" 404 153 0.012',
    "",
  ].join("\n");
  assertEquals(parseAccessLog(log), [
    {
      remoteAddr: "198.51.100.10",
      remotePort: 43142,
      server: "203.0.113.10:80",
      time: "2026-11-21T02:01:42+00:00",
      request: "GET / HTTP/1.1",
      status: 200,
      bodyBytes: 39,
      requestTimeS: 0,
    },
    {
      remoteAddr: "198.51.100.11",
      remotePort: 5,
      server: "203.0.113.10:80",
      time: "t",
      request: 'GET /a\\"b HTTP/1.0',
      status: 404,
      bodyBytes: 153,
      requestTimeS: 0.012,
    },
  ]);
});

Deno.test("indexPage() names the server", () => {
  assertEquals(indexPage("srv2", "203.0.113.20"), "krelay lab server srv2 at 203.0.113.20\n");
});
