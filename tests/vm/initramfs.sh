#!/usr/bin/env bash
# Builds the test VM's initramfs (cpio newc, uncompressed).
#
#   bash tests/vm/initramfs.sh OUT.cpio KVER [KMOD_DIR [BIN...]]
#
# Contents: busybox-static in /bbin, /init (tests/vm/guest/init.sh), the virtio and 9p modules
# of KVER in /kmods (in load order), krelay.ko and krelay-nat from KMOD_DIR and any BINs (static test tools) in /kmod, on the
# guest's PATH; a small
# /etc (with the host's /etc/alternatives, ld.so.cache and nginx configuration, so the binaries
# of the host's /usr, mounted over 9p, find what they expect), and the merged-/usr links.
set -euo pipefail
out=$1 kver=$2 kmod=${3:-}
shift $(($# < 3 ? $# : 3))
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mods=/lib/modules/$kver/kernel
[[ -d $mods ]] || { echo "no modules for $kver in $mods" >&2; exit 1; }

root=$(mktemp -d /tmp/krelay-initramfs.XXXXXX)
trap 'rm -rf "$root"' EXIT

mkdir -p "$root"/{bbin,kmods,kmod,etc,usr,proc,sys,dev,tmp,run,root,xfer,var/lib,var/log,var/tmp,var/cache}
ln -s usr/bin "$root/bin"
ln -s usr/sbin "$root/sbin"
ln -s usr/lib "$root/lib"
ln -s usr/lib64 "$root/lib64"

cp /bin/busybox "$root/bbin/busybox"
for applet in $(/bin/busybox --list); do
	[[ $applet == busybox ]] || ln -s busybox "$root/bbin/$applet"
done

# Order from platform-facts (modprobe --show-depends): each after what it needs.
order="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci 9pnet 9pnet_virtio netfs fscache 9p"
for m in $order; do
	f=$(find "$mods" -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" | head -n 1)
	[[ -n $f ]] || { echo "module $m not found under $mods" >&2; exit 1; }
	case $f in
	*.xz) xz -dc "$f" >"$root/kmods/$m.ko" ;;
	*.zst) zstd -qdc "$f" >"$root/kmods/$m.ko" ;;
	*) cp "$f" "$root/kmods/$m.ko" ;;
	esac
done
echo "$order" | tr ' ' '\n' >"$root/kmods/order"

if [[ -n $kmod ]]; then
	cp "$kmod/krelay.ko" "$root/kmod/"
	[[ -f $kmod/krelay-nat ]] && cp "$kmod/krelay-nat" "$root/kmod/"
fi
for bin in "$@"; do
	cp "$bin" "$root/kmod/"
done

cat >"$root/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
dnsmasq:x:100:65534:dnsmasq:/var/lib/misc:/usr/sbin/nologin
P
cat >"$root/etc/group" <<'G'
root:x:0:
daemon:x:1:
www-data:x:33:
nogroup:x:65534:
G
printf '127.0.0.1 localhost krelay-vm\n' >"$root/etc/hosts"
printf 'passwd: files\ngroup: files\nhosts: files\n' >"$root/etc/nsswitch.conf"
: >"$root/etc/resolv.conf"
for f in protocols services ld.so.cache ld.so.conf; do
	[[ -e /etc/$f ]] && cp -L "/etc/$f" "$root/etc/$f"
done
[[ -d /etc/ld.so.conf.d ]] && cp -a /etc/ld.so.conf.d "$root/etc/"
[[ -d /etc/alternatives ]] && cp -a /etc/alternatives "$root/etc/"
[[ -d /etc/nginx ]] && cp -a /etc/nginx "$root/etc/"
[[ -d /etc/iproute2 ]] && cp -a /etc/iproute2 "$root/etc/"

cp "$here/guest/init.sh" "$root/init"
chmod 755 "$root/init"

(cd "$root" && find . -print0 | cpio --null -o -H newc --quiet) >"$out"
