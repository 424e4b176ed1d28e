# Raises the open-files limit for krelay (POSIX sh; sourced by ./krelay, and written into
# dist/krelay and the .deb's /usr/bin/krelay by tools/dist.sh). Two sockets per relayed TCP
# connection: take all the descriptors the hard limit allows. As root, raise the hard limit too
# (CAP_SYS_RESOURCE); else take what the hard limit allows, and say so when `run` gets fewer
# than krelay needs (KRELAY_NOFILE, default 1048576). $1 is krelay's command.
krelay_nofile() {
  want="${KRELAY_NOFILE:-1048576}"
  ulimit -n "$want" 2>/dev/null && return 0
  hard=$(ulimit -Hn)
  if [ "$hard" != unlimited ] && [ "$hard" -lt "$want" ]; then
    ulimit -n "$hard" 2>/dev/null || true
  else
    ulimit -n "$want" 2>/dev/null || true
  fi
  if [ "${1:-}" = run ] && [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$want" ]; then
    echo "krelay: open files limited to $(ulimit -n) (hard limit $hard), fewer than the" \
      "$want krelay needs (two per relayed TCP connection): raise the hard limit" \
      "(LimitNOFILE= in systemd, limits.conf, or ulimit -Hn as root)" >&2
  fi
}
