#!/bbin/sh
# /init of the krelay test VM (busybox). The host's /usr arrives read-only over 9p (tag usr),
# with /bin, /sbin, /lib and /lib64 pointing into it (Debian's merged /usr), so every Debian
# binary and library of the host (ip, iptables, dnsmasq, dig, curl, nginx, glibc for Deno,
# modprobe and /lib/modules) works in the guest. The repository arrives read-only at its own
# host path (tag repo), and a writable exchange folder at /xfer (tag xfer) carries the guest
# script in and its output, exit code and dmesg out.
#
# Settings come from the kernel command line as environment variables:
#   KRELAY_VM_REPO     where to mount the repository (its host path)
#   KRELAY_VM_TIMEOUT  seconds the guest script may run
# Serial console markers: KRELAY-VM-BOOTED, KRELAY-VM-EXIT <rc>, KRELAY-VM-FAIL <why>.
export PATH=/kmod:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/bbin
export HOME=/root TERM=dumb DENO_DIR=/tmp/deno-dir DENO_NO_UPDATE_CHECK=1 NO_COLOR=1

bb=/bbin/busybox
$bb mount -t proc proc /proc
$bb mount -t sysfs sysfs /sys
$bb mount -t devtmpfs devtmpfs /dev
$bb mkdir -p /dev/pts /dev/shm
$bb mount -t devpts devpts /dev/pts
for d in /tmp /run /dev/shm; do $bb mount -t tmpfs tmpfs $d; done
$bb mkdir -p /run/netns /var/run
echo "KRELAY-VM-BOOTED"

fail() {
	echo "KRELAY-VM-FAIL $*"
	$bb sync
	$bb reboot -f
}

for m in $($bb cat /kmods/order); do
	$bb insmod /kmods/$m.ko || fail "insmod $m"
done
opts=trans=virtio,version=9p2000.L,msize=262144
$bb mount -t 9p -o $opts,ro,cache=loose usr /usr || fail "mount usr"
$bb mkdir -p /xfer "$KRELAY_VM_REPO"
$bb mount -t 9p -o $opts,ro,cache=loose repo "$KRELAY_VM_REPO" || fail "mount repo"
$bb mount -t 9p -o $opts xfer /xfer || fail "mount xfer"
$bb hostname krelay-vm
$bb ip link set lo up

cd /root
# The script's output goes to /xfer/output (and, live, to the console); its exit code to
# /xfer/rc. Whatever it leaves running is killed afterwards, so nothing holds the VM up.
: >/xfer/output
$bb tail -f /xfer/output >/dev/console 2>/dev/null &
$bb timeout "${KRELAY_VM_TIMEOUT:-60}" /xfer/guest.sh </dev/null >>/xfer/output 2>&1
echo $? >/xfer/rc
$bb sleep 1
$bb kill -9 -1 2>/dev/null
rc=$($bb cat /xfer/rc 2>/dev/null)
$bb dmesg >/xfer/dmesg
$bb sync
$bb umount /xfer
echo "KRELAY-VM-EXIT ${rc:-255}"
$bb reboot -f
