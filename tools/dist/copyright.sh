#!/usr/bin/env bash
# Writes the .deb's /usr/share/doc/krelay/copyright (machine-readable format): krelay, its
# kernel module, the Deno runtime, and every npm package bundled into krelay's JavaScript (the
# non-dev packages of package-lock.json, with the license each declares).
set -euo pipefail
here=$1
cat <<'HEAD'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: krelay
Comment: krelay's own license is not stated in its repository yet.

Files: *
Copyright: krelay authors
License: unstated
 The authors of krelay have not stated a license for it yet.

Files: usr/src/krelay-*
Copyright: krelay authors
License: GPL-2.0
 On Debian systems the full text of the GNU General Public License version 2
 is in /usr/share/common-licenses/GPL-2.

Files: usr/lib/krelay/deno
Copyright: 2018-2026 the Deno authors
License: MIT
 Deno, from the npm package "deno"; see https://github.com/denoland/deno.
HEAD
python3 - "$here/package-lock.json" <<'PY'
import json, sys
lock = json.load(open(sys.argv[1]))
bundled = [(path.split("node_modules/")[-1], p.get("version", ""), p.get("license", "unstated"))
           for path, p in sorted(lock["packages"].items()) if path and not p.get("dev")]
licenses = sorted({l for _, _, l in bundled})
print()
print("Files: usr/lib/krelay/app/*.js")
print("Copyright: the authors of the npm packages listed below")
print(f"License: {' and '.join(licenses)}")
print(" krelay's JavaScript bundles these npm packages, each under the license it declares:")
for name, version, license in bundled:
    print(f" {name} {version}: {license}")
PY
