#!/usr/bin/env bash
# deno task dist (./krelay deno task dist): builds, offline, from what npm and apt installed:
#   dist/krelay                      one executable file: a shell header and a tar.gz of the
#                                    pinned Deno runtime and krelay's bundle, unpacked once into
#                                    a cache directory named and checked by the archive's SHA-256
#   dist/krelay_<version>_amd64.deb  /usr/bin/krelay, /usr/lib/krelay (runtime and bundle), the
#                                    systemd unit, /etc/krelay/krelay.toml, the man page, a bash
#                                    completion and krelay.ko's sources for DKMS
# `deno compile` would make the first one smaller, but needs the denort runtime, which neither
# reachable registry ships (tools/compile.sh builds it where denort can be had).
# DIST_DEB=0 skips the .deb, DIST_SINGLE=0 the single file.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
deno="$here/node_modules/deno/deno"
[ -x "$deno" ] || bash "$here/tools/install-deps.sh"
out="${DIST_OUT:-$here/dist}"
version=$("$deno" eval --no-config 'console.log(JSON.parse(Deno.readTextFileSync(Deno.args[0])).version)' "$here/package.json" 2>/dev/null ||
  sed -n 's/^  "version": "\(.*\)",$/\1/p' "$here/package.json")
[ -n "$version" ] || { echo "dist: no version in package.json" >&2; exit 1; }
# Reproducible archives: every timestamp is the last commit's (else now).
epoch=$(git -C "$here" log -1 --format=%ct 2>/dev/null || date +%s)
. "$here/tools/run_flags.sh"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"

# The application files, the same for both (tools/dist/bundle.ts).
"$deno" run --no-prompt --allow-all "$here/tools/dist/bundle.ts" "$work/app"

# The launcher with the version, flags and place filled in. Its line count is fixed, so the
# single file's header knows where its archive begins.
launcher() { # home_dir payload_sha256 header_lines
  local flags="" f
  for f in "${KRELAY_RUN_FLAGS[@]}"; do flags+="'${f//\'/\'\\\'\'}' "; done
  sed -e "s|@VERSION@|$version|; s|@HOME_DIR@|$1|; s|@PAYLOAD_SHA256@|$2|" \
    -e "s|@HEADER_LINES@|$3|; s|@RUN_FLAGS@|${flags% }|" "$here/tools/dist/launcher.sh.in"
}

if [ "${DIST_SINGLE:-1}" != 0 ]; then
  stage="$work/single"
  mkdir -p "$stage"
  cp -a "$work/app" "$stage/app"
  cp "$(readlink -f "$deno")" "$stage/deno"
  (cd "$stage" && find . -type f ! -name MANIFEST -printf '%P\n' | LC_ALL=C sort |
    xargs sha256sum >MANIFEST)
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" -C "$stage" -cf - . |
    gzip -n -6 >"$work/payload.tar.gz"
  sha=$(sha256sum "$work/payload.tar.gz" | cut -d' ' -f1)
  lines=$(launcher "" "$sha" 0 | wc -l)
  { launcher "" "$sha" "$lines"; cat "$work/payload.tar.gz"; } >"$out/krelay.tmp"
  chmod 755 "$out/krelay.tmp"
  mv "$out/krelay.tmp" "$out/krelay"
  echo "dist: built dist/krelay ($(du -h "$out/krelay" | cut -f1), krelay $version, Deno $("$deno" --version | head -n1 | cut -d' ' -f2))"
fi

if [ "${DIST_DEB:-1}" != 0 ]; then
  command -v dpkg-deb >/dev/null || { echo "dist: dpkg-deb is missing (apt-get install dpkg-dev)" >&2; exit 1; }
  root="$work/deb"
  date_r=$(date -u -R -d "@$epoch")
  fill() { sed -e "s|@VERSION@|$version|g; s|@DATE@|$date_r|g" "$@"; }
  install -d "$root/DEBIAN" "$root/usr/bin" "$root/usr/lib/krelay" "$root/etc/krelay" \
    "$root/lib/systemd/system" "$root/usr/share/man/man8" "$root/usr/share/doc/krelay" \
    "$root/usr/share/bash-completion/completions" "$root/usr/src/krelay-$version" \
    "$root/usr/share/lintian/overrides"
  install -m 644 "$here/packaging/lintian-overrides" "$root/usr/share/lintian/overrides/krelay"
  cp -a "$work/app" "$root/usr/lib/krelay/app"
  # The module's sources live in /usr/src for DKMS; `krelay kmod build` finds them there too.
  rm -rf "$root/usr/lib/krelay/app/kmod"
  ln -s "../../../src/krelay-$version" "$root/usr/lib/krelay/app/kmod"
  install -m 755 "$(readlink -f "$deno")" "$root/usr/lib/krelay/deno"
  launcher /usr/lib/krelay "" 0 >"$root/usr/bin/krelay"
  chmod 755 "$root/usr/bin/krelay"
  install -m 644 "$here/systemd/krelay.service" "$root/lib/systemd/system/krelay.service"
  install -m 644 "$here/systemd/krelay.toml.example" "$root/etc/krelay/krelay.toml"
  echo /etc/krelay/krelay.toml >"$root/DEBIAN/conffiles"
  fill "$here/packaging/krelay.8" | gzip -n -9 >"$root/usr/share/man/man8/krelay.8.gz"
  fill "$here/packaging/changelog.in" | gzip -n -9 >"$root/usr/share/doc/krelay/changelog.gz"
  bash "$here/tools/dist/copyright.sh" "$here" >"$root/usr/share/doc/krelay/copyright"
  "$deno" run --no-prompt --allow-all "$here/main.ts" completion bash \
    >"$root/usr/share/bash-completion/completions/krelay"
  # kmod/ by globs, so that a split into more files keeps working.
  (cd "$work/app/kmod" && find . -type f -printf '%P\n') | while read -r f; do
    install -D -m 644 "$work/app/kmod/$f" "$root/usr/src/krelay-$version/$f"
  done
  fill "$here/packaging/dkms.conf.in" >"$root/usr/src/krelay-$version/dkms.conf"
  for s in postinst prerm postrm; do
    fill "$here/packaging/$s" >"$root/DEBIAN/$s"
    chmod 755 "$root/DEBIAN/$s"
  done
  size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
  fill "$here/packaging/control.in" | sed "s|@INSTALLED_SIZE@|$size|" >"$root/DEBIAN/control"
  (cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\n' | LC_ALL=C sort |
    xargs md5sum >DEBIAN/md5sums)
  find "$root" -exec touch -h -d "@$epoch" {} +
  deb="$out/krelay_${version}_amd64.deb"
  # xz for the release; DIST_DEB_COMPRESSION=gzip builds in a few seconds (the tests).
  SOURCE_DATE_EPOCH=$epoch dpkg-deb --root-owner-group "-Z${DIST_DEB_COMPRESSION:-xz}" -z6 \
    --build "$root" "$deb" >/dev/null
  echo "dist: built ${deb#"$here/"} ($(du -h "$deb" | cut -f1))"
fi
