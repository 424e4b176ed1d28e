#!/usr/bin/env bash
# Builds dist/krelay, a single executable, with `deno compile`. That needs the `denort` runtime
# of the same Deno version: deno downloads it from Deno's own servers, or takes it from
# DENORT_BIN. Where neither works, this says so plainly and fails.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
deno="$here/node_modules/deno/deno"
[ -x "$deno" ] || bash "$here/tools/install-deps.sh"
version=$("$deno" --version | head -n 1 | awk '{print $2}')

if [ -n "${DENORT_BIN:-}" ] && [ ! -x "$DENORT_BIN" ]; then
  echo "compile: DENORT_BIN=$DENORT_BIN is not an executable file" >&2
  exit 1
fi

mkdir -p "$here/dist"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# The same flags as the ./krelay launcher (tools/run_flags.sh). A worker's module is not found
# by the compiler's analysis: the relay threads' are included by name. (tools/dist.sh builds a
# single file without denort.)
. "$here/tools/run_flags.sh"
if "$deno" compile "${KRELAY_RUN_FLAGS[@]}" \
  --include "$here/krelay" --include "$here/tools/install-deps.sh" \
  --include "$here/src/relay/relay_thread.ts" --include "$here/src/daemon/gate_thread.ts" \
  --output "$here/dist/krelay" "$here/main.ts" >"$log" 2>&1; then
  echo "compile: built dist/krelay (Deno $version)"
  exit 0
fi

echo "compile: deno compile could not build dist/krelay." >&2
if grep -qiE "denort|dns error|download|failed to lookup" "$log"; then
  cat >&2 <<MSG
  It needs the denort runtime for Deno $version and could not download it (no route to Deno's
  download server from this machine; only the npm and Debian registries are reachable here).
  Put the denort binary of Deno $version on this machine and run again with
  DENORT_BIN=/path/to/denort. The full deno binary does not work as DENORT_BIN: the result
  starts a REPL instead of krelay. Meanwhile ./krelay runs krelay without compiling.
MSG
else
  cat "$log" >&2
fi
exit 1
