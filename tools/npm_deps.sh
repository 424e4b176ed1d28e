#!/usr/bin/env bash
# Installs the Deno pinned in package.json and the npm dependencies, as locked, when they are
# missing or older than the lock file; does nothing otherwise. The one install step of the
# ./krelay launcher and of tools/install-deps.sh.
#
# `npm install`, not `npm ci`: the registry reachable here serves only the linux-x64 build of
# Deno's per-platform packages, and `npm ci` refuses a lock file without the others. With the
# exact versions in package.json and the lock file, `npm install` installs the same tree.
# Cached packages are taken without asking the registry (in a namespace with no network, 4 s),
# and an unreachable registry fails after about a minute (63 s with an empty cache; without
# these flags npm was still waiting at 120 s).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
stamp="$here/node_modules/.package-lock.json"
if [ -x "$here/node_modules/.bin/deno" ] && [ -f "$stamp" ] && [ ! "$here/package-lock.json" -nt "$stamp" ]; then
  exit 0
fi
command -v npm >/dev/null || { echo "krelay: npm is needed to install Deno (apt-get install npm)" >&2; exit 1; }
echo "krelay: installing Deno and npm dependencies (npm install, as locked)" >&2
cd "$here"
exec npm install --no-audit --no-fund --loglevel=error --prefer-offline \
  --fetch-timeout=20000 --fetch-retries=1 >&2
