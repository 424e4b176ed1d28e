# The `deno run` flags of the krelay daemon and CLI, sourced by the ./krelay launcher and by
# tools/dist.sh, which writes the same flags into dist/krelay and the .deb's /usr/bin/krelay.
#
# krelay needs FFI (netfilter queue), iptables/ip and the lab's servers, the control socket,
# config files, and krelay.ko's /proc/krelay and /sys/module/krelay files. Deno grants those
# last ones only with --allow-all; and --allow-ffi already lets a program leave Deno's sandbox,
# so --allow-all gives krelay itself nothing it could not reach. Packet scripts still run in
# workers given no permission at all (--unstable-worker-options).
# The relay's JavaScript reaches optimised code sooner (see tools/v8_flags.sh).
. "$(dirname "${BASH_SOURCE[0]}")/v8_flags.sh"
KRELAY_RUN_FLAGS=(--no-prompt --quiet --unstable-worker-options --allow-all
  "--v8-flags=$KRELAY_V8_FLAGS")
