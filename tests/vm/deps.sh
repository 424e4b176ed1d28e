#!/usr/bin/env bash
# What the VM tests need on the host, installed with apt-get when missing.
#
#   bash tests/vm/deps.sh                  install the core set, print the 6.1 kernel version
#   bash tests/vm/deps.sh CMD:PKG ...      also make sure each command CMD exists (else PKG)
#
# Sourced, it defines vm_ensure and vm_kver. Exit status 1 with one reason on stderr when
# something cannot be had (not root, no network for apt, ...). Never touches the host kernel.
set -euo pipefail

# command-or-path:package
VM_CORE_DEPS=(
	qemu-system-x86_64:qemu-system-x86
	/bin/busybox:busybox-static
	cpio:cpio
	modprobe:kmod
	gcc:gcc
	make:make
	/usr/include/stdio.h:libc6-dev
	vmlinuz-6.1:linux-image-amd64
	headers-6.1:linux-headers-amd64
)

# The newest 6.1 kernel with both an image in /boot and headers (build dir); empty if none.
vm_kver() {
	local v best=""
	for v in $(ls /lib/modules 2>/dev/null | grep '^6\.1\.' | sort -V); do
		[[ -f /boot/vmlinuz-$v && -d /lib/modules/$v/build && -d /lib/modules/$v/kernel ]] && best=$v
	done
	echo "$best"
}

_vm_have() {
	local what=$1
	case $what in
	vmlinuz-6.1) ls /boot/vmlinuz-6.1.* >/dev/null 2>&1 ;;
	headers-6.1) ls -d /lib/modules/6.1.*/build >/dev/null 2>&1 ;;
	/bin/busybox) [[ -x /bin/busybox ]] && ! ldd /bin/busybox >/dev/null 2>&1 ;;
	/*) [[ -e $what ]] ;;
	*) command -v "$what" >/dev/null 2>&1 || [[ -x /usr/sbin/$what || -x /sbin/$what ]] ;;
	esac
}

# vm_ensure DEP... : installs the packages of the missing DEPs (CMD:PKG).
vm_ensure() {
	local dep pkgs=()
	for dep in "$@"; do
		_vm_have "${dep%%:*}" || pkgs+=("${dep##*:}")
	done
	((${#pkgs[@]} == 0)) && return 0
	if [[ $(id -u) != 0 ]]; then
		echo "needs root to install ${pkgs[*]}" >&2
		return 1
	fi
	if ! command -v apt-get >/dev/null; then
		echo "no apt-get to install ${pkgs[*]}" >&2
		return 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	if ! timeout 900 apt-get install -y -q --no-install-recommends "${pkgs[@]}" >/tmp/vm-deps-apt.$$.log 2>&1; then
		timeout 300 apt-get update -q >>/tmp/vm-deps-apt.$$.log 2>&1 || true
		if ! timeout 900 apt-get install -y -q --no-install-recommends "${pkgs[@]}" >>/tmp/vm-deps-apt.$$.log 2>&1; then
			echo "apt-get install ${pkgs[*]} failed: $(tail -n 1 /tmp/vm-deps-apt.$$.log)" >&2
			rm -f /tmp/vm-deps-apt.$$.log
			return 1
		fi
	fi
	rm -f /tmp/vm-deps-apt.$$.log
	for dep in "$@"; do
		if ! _vm_have "${dep%%:*}"; then
			echo "${dep%%:*} still missing after installing ${dep##*:}" >&2
			return 1
		fi
	done
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
	vm_ensure "${VM_CORE_DEPS[@]}" "$@"
	kver=$(vm_kver)
	if [[ -z $kver ]]; then
		echo "no 6.1 kernel with both image and headers (linux-image-amd64, linux-headers-amd64 at the same ABI)" >&2
		exit 1
	fi
	echo "$kver"
fi
