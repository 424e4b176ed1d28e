#!/usr/bin/env bash
# deno task bench: krelay's benchmarks.
#  1. The packet path without the kernel (deno bench: parse + NAT + rewrite, checksums, the TCP
#     byte pump, packet scripts), each against a baseline measured in the same run.
#  2. End to end, as root, with the shared harness (../shared/bench): TCP throughput (1 and 8
#     streams), HTTP connections per second, DNS queries per second and UDP packets per second
#     through krelay started with plain flags, beside HAProxy and the C NFQUEUE program (the
#     targets of issue 27), against direct routing in the same run. PEERS=all adds socat, nginx,
#     HAProxy with full transparency, the C splice relay and kernel NAT (the limits of issue 35).
#     RUNS and DUR are passed to the harness; PASSES (3) runs it that many times, alternating the
#     order, and tools/bench_compare.ts combines the passes and prints each target's verdict.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
deno="$here/node_modules/deno/deno"
[ -x "$deno" ] || bash "$here/tools/install-deps.sh"

echo "== packet path (no kernel)"
"$deno" bench --allow-all --no-prompt "$here/src/" "$here/ffi/"

harness="${BENCH_HARNESS:-$here/../shared/bench}"
if [ "$(id -u)" != 0 ]; then
  echo "== end to end: skipped (needs root to build network namespaces)"
  exit 0
fi
if [ ! -x "$harness/peers.sh" ]; then
  echo "== end to end: skipped (no benchmark harness at $harness; set BENCH_HARNESS)"
  exit 0
fi
bash "$harness/install-deps.sh" >/dev/null
out="${BENCH_OUT:-$here/bench-out}"
mkdir -p "$out"
# krelay as a user starts it: plain flags, no tuning (one relay thread per CPU by default).
base="exec $here/krelay run --real-ip \$BENCH_UPSTREAM_IP --relay-ip \$BENCH_LISTEN_IP"
base+=" --tcp-ports 80,5201 --udp-ports 53,5201"
base+=" --control-socket \$BENCH_RUNDIR/krelay.sock"
export KRELAY_CMD="$base"
# HAProxy with the full transparency krelay's targets ask of krelay (the harness's own HAProxy
# connects from the relay's address): what transparency costs a C proxy, for context.
export HAPROXY_TRANSPARENT_CMD="exec $here/tools/haproxy_transparent.sh" HAPROXY_TRANSPARENT_PROTOS=tcp
# The harness measures one relay after another, about a minute each, and this machine drifts
# within minutes (the same pair, once in each order: krelay 0.84x and 1.17x HAProxy's HTTP rate).
# So each pair a target compares runs back to back: krelay between HAProxy (TCP, HTTP) and the C
# NFQUEUE program (DNS, UDP), and with PEERS=all between the C splice relay and kernel NAT. The passes alternate the order (direct always first), so
# neither side of a pair always runs first, and the figures are compared within each pass and
# combined by geometric mean (tools/bench_compare.ts).
relays=(haproxy krelay nfq-c)
[ "${PEERS:-}" = all ] &&
  relays=(socat nginx haproxy-transparent splice-c haproxy krelay nfq-c kernel-nat)
passes=${PASSES:-3}
tsvs=()
for ((i = 1; i <= passes; i++)); do
  order=("${relays[@]}")
  if ((i % 2 == 0)); then
    order=()
    for ((j = ${#relays[@]} - 1; j >= 0; j--)); do order+=("${relays[j]}"); done
  fi
  echo "== end to end, pass $i of $passes (every figure is a ratio to direct routing in the same run)"
  mkdir -p "$out/pass$i"
  BENCH_OUT="$out/pass$i" RESULTS="$out/pass$i/results.md" RUNS="${RUNS:-3}" DUR="${DUR:-3}" \
    bash "$harness/peers.sh" "${order[@]}"
  tsvs+=("$out/pass$i/results.tsv")
done
echo "== end to end, the passes combined"
"$deno" run --allow-read "$here/tools/bench_compare.ts" "${tsvs[@]}" | tee "$out/combined.txt"

echo "== memory per idle relayed TCP connection (target: at most 32 KiB)"
# Two descriptors per connection: as many as the descriptor limit allows, up to 10,000.
limit=$(ulimit -Hn)
n=$(( limit / 2 - 1000 )); [ "$n" -gt 10000 ] && n=10000
"$deno" run -A "$here/tools/bench_memory.ts" "$n"
