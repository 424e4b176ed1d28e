#!/usr/bin/env bash
# A peer for the shared harness (its <NAME>_CMD contract: run inside the relay's namespace, with
# BENCH_LISTEN_IP, BENCH_UPSTREAM_IP, BENCH_TCP_PORTS and BENCH_RUNDIR set): HAProxy in mode tcp
# with the full transparency krelay's targets ask of krelay (`source 0.0.0.0 usesrc clientip`, so
# the server sees the client's address), and the kernel setup HAProxy's documentation asks for,
# narrowed as krelay's own is: the servers' answers to a transparent socket are marked by a socket
# match and routed to the local stack. The harness's own HAProxy connects from the relay's
# address, so its namespace needs none of this; comparing both says what transparency costs.
# The namespace (and with it the rule, the route and the table) is deleted after the run.
set -euo pipefail
# It changes the rules and routes of the namespace it runs in: only ever the harness's relay
# namespace (PREFIX-rly, PREFIX kb or kb-*), as named by `ip netns identify`, which names none in
# the machine's own namespace.
case "$(ip netns identify 2>/dev/null || true)" in
  kb-rly | kb-*-rly) ;;
  *)
    echo "haproxy_transparent.sh: runs only inside the harness's relay namespace (kb-rly)" >&2
    exit 1
    ;;
esac
cfg=$BENCH_RUNDIR/haproxy-transparent.cfg
{
  printf 'global\n    maxconn 8000\n    nbthread %s\n' "$(nproc)"
  printf 'defaults\n    mode tcp\n    timeout connect 3s\n    timeout client 30s\n    timeout server 30s\n'
  for p in $BENCH_TCP_PORTS; do
    printf 'listen p%s\n    bind %s:%s\n    source 0.0.0.0 usesrc clientip\n    server s1 %s:%s\n' \
      "$p" "$BENCH_LISTEN_IP" "$p" "$BENCH_UPSTREAM_IP" "$p"
  done
} >"$cfg"
ports=$(echo "$BENCH_TCP_PORTS" | tr ' ' ',')
nft -f - <<NFT
table ip haproxy_transparent {
  chain divert {
    type filter hook prerouting priority raw; policy accept;
    tcp sport { $ports } socket transparent 1 meta mark set 0x1 accept
  }
}
NFT
ip rule add fwmark 0x1 lookup 100
ip route add local 0.0.0.0/0 dev lo table 100
exec haproxy -db -f "$cfg"
