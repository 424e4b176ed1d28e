#!/usr/bin/env bash
# Installs what krelay, its lab and its tests need and is missing: Debian packages (as root,
# through apt-get) and the pinned Deno with the npm dependencies (npm install). Idempotent and quiet
# when everything is present.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Debian package -> a file that proves it is installed.
declare -A need=(
  [libnetfilter-queue1]=/usr/lib/x86_64-linux-gnu/libnetfilter_queue.so.1
  [libmnl0]=/usr/lib/x86_64-linux-gnu/libmnl.so.0
  [iptables]=/usr/sbin/iptables
  [iproute2]=/usr/sbin/ip
  [dnsmasq-base]=/usr/sbin/dnsmasq
  [dnsutils]=/usr/bin/dig
  [curl]=/usr/bin/curl
  [nginx-light]=/usr/sbin/nginx
  [procps]=/usr/bin/pgrep
  [iputils-ping]=/usr/bin/ping
  [nftables]=/usr/sbin/nft
  # ab: the short-connection test (tests/tcp_relay_test.ts).
  [apache2-utils]=/usr/bin/ab
  # The fault suite's floods (tests/faults/fixtures/flood.py).
  [python3-minimal]=/usr/bin/python3
)
missing=()
for pkg in "${!need[@]}"; do
  [ -e "${need[$pkg]}" ] || missing+=("$pkg")
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "install-deps: missing Debian packages: ${missing[*]} (install them as root with apt-get)" >&2
  else
    echo "install-deps: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    # Wait for another apt run (e.g. unattended upgrades) instead of failing on its lock.
    apt_opts=(-o DPkg::Lock::Timeout=300 -y -q)
    apt-get "${apt_opts[@]}" update >/dev/null
    # nginx's package would start a system-wide nginx; policy-rc.d keeps services from starting.
    prc=/usr/sbin/policy-rc.d
    made_prc=0
    if [ ! -e "$prc" ]; then printf '#!/bin/sh\nexit 101\n' >"$prc" && chmod +x "$prc" && made_prc=1; fi
    apt-get "${apt_opts[@]}" install --no-install-recommends "${missing[@]}" >/dev/null ||
      { [ $made_prc = 1 ] && rm -f "$prc"; exit 1; }
    [ $made_prc = 1 ] && rm -f "$prc"
  fi
fi

# Deno and the npm dependencies, as locked (tools/npm_deps.sh, shared with the launcher).
bash "$here/tools/npm_deps.sh"
