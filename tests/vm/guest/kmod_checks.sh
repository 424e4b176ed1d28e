#!/bin/bash
# Guest side of tests/kmod_vm_test.ts: exercises krelay.ko in the VM and prints one line per
# check, "ok NAME" or "not ok NAME: why" (TAP-like), then "checks done". Runs as /xfer/guest.sh
# with /kmod/krelay.ko and /kmod/krelay-nat. Every loop and wait is bounded.
set -u
KO=/kmod/krelay.ko
P=/proc/krelay
START=/sys/module/krelay/parameters/start
FAILS=0
# The simple tools from busybox (static, in the initramfs): the host's, loaded over 9p, take
# tens of milliseconds per run under TCG.
for t in cat grep awk seq sleep wc tail stat dd timeout tr; do
	eval "$t() { /bbin/busybox $t \"\$@\"; }"
done

ok() { echo "ok $1"; }
nok() {
	echo "not ok $1: ${2//$'\n'/ | }"
	FAILS=$((FAILS + 1))
}
# check NAME FUNCTION: ok when FUNCTION succeeds; its output is the reason otherwise.
check() {
	local name=$1 out t0
	shift
	t0=${EPOCHREALTIME/./}
	if out=$("$@" 2>&1); then ok "$name"; else nok "$name" "$out"; fi
	echo "# $name took $(((${EPOCHREALTIME/./} - t0) / 1000)) ms"
}
# die WHY: fails the current check (each check runs in a subshell of its own).
die() {
	echo "$*"
	exit 1
}
expect_eq() { [[ $2 == "$3" ]] || die "$1: got '$2', want '$3'"; }
stat_of() {
	local k v
	while read -r k v; do
		[[ $k == "$1" ]] && echo "$v" && return 0
	done <$P/stats
}
loaded() { grep -q '^krelay ' /proc/modules; }
unload() {
	local i
	loaded || return 0
	for i in $(seq 50); do
		rmmod krelay 2>/dev/null && break
		sleep 0.1
	done
	! loaded || die "rmmod krelay failed"
	[[ ! -e $P ]] || die "$P still exists after rmmod"
}
# Lines of dmesg since the last call that show a problem.
DMESG_SEEN=0
dmesg_new_problems() {
	local all n
	all=$(dmesg)
	n=$(printf '%s\n' "$all" | wc -l)
	printf '%s\n' "$all" | tail -n +$((DMESG_SEEN + 1)) |
		grep -E '\bBUG[: ]|WARNING:|Oops|Call Trace|Kernel panic|general protection|soft lockup|blocked for more than|RIP:|[Tt]aint' |
		grep -vE 'loading out-of-tree module taints kernel|module verification failed: signature and/or required key missing - tainting kernel'
	DMESG_SEEN=$n
	return 0
}
dmesg_clean() {
	local p
	p=$(dmesg_new_problems)
	[[ -z $p ]] || die "$p"
}

# write FILE VALUE: writes VALUE plus a newline in one write(); prints the error text.
write() { { echo "$2" >"$1"; } 2>&1; }
# bad FILE VALUE: the write must fail with EINVAL and leave the file as it was.
bad() {
	local before after out
	before=$(cat "$1")
	if out=$(write "$1" "$2"); then die "$1 accepted '$2'"; fi
	[[ $out == *"Invalid argument"* ]] || die "$1 '$2': $out (want Invalid argument)"
	after=$(cat "$1")
	expect_eq "$1 after '$2'" "$after" "$before"
}
good() {
	local out
	out=$(write "$1" "$2") || die "$1 refused '$2': $out"
	expect_eq "$1 read back" "$(cat "$1")" "$3"
}

# ---- load and /proc ----

t_load() {
	insmod $KO || die "insmod failed"
	loaded || die "not in /proc/modules"
	local f
	for f in gport real_ip relay_ip udp_ports tcp_ports first_mark queue stats; do
		[[ -f $P/$f ]] || die "missing $P/$f"
	done
	for f in relay_ports gports; do
		[[ ! -e $P/$f ]] || die "$P/$f still exists"
	done
	expect_eq start "$(cat $START)" 0
}

t_defaults() {
	expect_eq gport "$(cat $P/gport)" 16000
	expect_eq real_ip "$(cat $P/real_ip)" 192.168.0.10
	expect_eq relay_ip "$(cat $P/relay_ip)" 0.0.0.0
	expect_eq udp_ports "$(cat $P/udp_ports)" 53
	expect_eq tcp_ports "$(cat $P/tcp_ports)" 80
	expect_eq first_mark "$(cat $P/first_mark)" 0
	expect_eq queue "$(cat $P/queue)" 0
	expect_eq stats.started "$(stat_of started)" 0
	expect_eq stats.nat_max "$(stat_of nat_max)" 65536
	expect_eq stats.nat_buckets "$(stat_of nat_buckets)" 65536
}

t_proc_write() {
	good $P/gport 16001 16001
	good $P/gport 65535 65535
	good $P/gport 16000 16000
	good $P/real_ip 203.0.113.10 203.0.113.10
	good $P/relay_ip 198.51.100.1 198.51.100.1
	good $P/udp_ports "53, 5353,53" 53,5353
	good $P/tcp_ports "8080,80,443" 80,443,8080
	good $P/tcp_ports "" ""
	good $P/tcp_ports 80 80
	good $P/first_mark 0x4b53 19283
	good $P/first_mark 0X4B53 19283
	good $P/first_mark 19283 19283
	good $P/first_mark 0xffffffff 4294967295
	good $P/first_mark 0 0
	good $P/queue 7 7
	good $P/queue 0 0
	# Without a trailing newline too.
	local out
	out=$({ printf 16002 >$P/gport; } 2>&1) || die "printf 16002: $out"
	expect_eq gport "$(cat $P/gport)" 16002
	good $P/gport 16000 16000
	good $P/real_ip 192.168.0.10 192.168.0.10
}

t_proc_bad() {
	local v many
	for v in 0 65536 -1 abc 16000x "" " " 1.5 0x10 "16000 16001"; do bad $P/gport "$v" || return 1; done
	for v in 1.2.3 1.2.3.256 abc "" 1.2.3.4.5 "1.2.3.4 x" 1.2.3.4/32 ::1; do
		bad $P/real_ip "$v" || return 1
		bad $P/relay_ip "$v" || return 1
	done
	for v in 0 70000 "53,,80" "53," a "53 80" -5; do
		bad $P/udp_ports "$v" || return 1
		bad $P/tcp_ports "$v" || return 1
	done
	many=$(seq -s, 1000 1128) # 129 ports: one too many
	bad $P/tcp_ports "$many" || return 1
	good $P/tcp_ports "$(seq -s, 1000 1127)" "$(seq -s, 1000 1127)" || return 1
	good $P/tcp_ports 80 80 || return 1
	for v in -1 x "" 0x 0x0x5 +5 " +5" 4294967296 0x100000000 "5 6" 1.5 0x4g 5x; do
		bad $P/first_mark "$v" || return 1
	done
	for v in 65536 -1 x ""; do bad $P/queue "$v" || return 1; done
	# Too long for one write, and a write at an offset.
	bad $P/udp_ports "$(seq -s, 1 400)" || return 1
	if out=$(dd if=/dev/zero bs=1 count=1 seek=1 of=$P/gport conv=notrunc 2>&1); then
		die "write at offset 1 accepted"
	fi
	expect_eq gport "$(cat $P/gport)" 16000
	if write $P/stats 1 >/dev/null; then die "stats accepted a write"; fi
}

# real_ip: no address that would turn the relay back on itself or reach no one server, and
# not the host's own, as the writer's network namespace has them.
t_real_ip_refusals() {
	local v out
	for v in 127.0.0.1 127.1.2.3 0.0.0.0 0.1.2.3 255.255.255.255 224.0.0.1 239.255.255.250; do
		bad $P/real_ip "$v" || return 1
	done
	ip netns add kip || die "ip netns add kip"
	ip link add kv2 type veth peer name kv3 netns kip || die "veth"
	ip -n kip addr add 192.0.2.1/24 brd + dev kv3 && ip -n kip link set kv3 up || die "address"
	for v in 192.0.2.1 192.0.2.255; do
		if out=$(ip netns exec kip bash -c "echo $v > $P/real_ip" 2>&1); then
			die "real_ip $v accepted in the namespace that has it"
		fi
		[[ $out == *"Invalid argument"* ]] || die "real_ip $v in kip: $out (want Invalid argument)"
		expect_eq "real_ip after $v in kip" "$(cat $P/real_ip)" 192.168.0.10
	done
	# Another address of that subnet is a server there; 192.0.2.1 is no address of the init
	# namespace: both are accepted.
	out=$(ip netns exec kip bash -c "echo 192.0.2.2 > $P/real_ip" 2>&1) || die "192.0.2.2 in kip: $out"
	expect_eq "real_ip 192.0.2.2 from kip" "$(cat $P/real_ip)" 192.0.2.2
	good $P/real_ip 192.0.2.1 192.0.2.1 || return 1
	good $P/real_ip 192.168.0.10 192.168.0.10 || return 1
	ip netns del kip
	ip link del kv2 2>/dev/null
	return 0
}

t_start_toggle() {
	good $START 1 1 || return 1
	expect_eq stats.started "$(stat_of started)" 1
	good $START 1 1 || return 1 # again: no change, no error
	good $START 0 0 || return 1
	expect_eq stats.started "$(stat_of started)" 0
	good $START 0 0 || return 1
	bad $START 2 || return 1
	bad $START x || return 1
	good $START 1 1 || return 1
	bad $START -1 || return 1
	expect_eq start "$(cat $START)" 1
	good $START 0 0 || return 1
	dmesg | grep -q 'krelay: started: hooks registered' || die "no 'started' in dmesg"
	dmesg | grep -q 'krelay: stopped: hooks unregistered' || die "no 'stopped' in dmesg"
}

# A stop sleeps 500 ms under krelay_start_lock; readers (stats, GET_INFO, which anyone may
# call) do not take it, so they answer at once while a stop is in progress (and still say
# started). Under TCG a slow exec can miss the stop: up to 3 tries.
t_readers_during_stop() {
	local pid t0 dt started out try why=""
	for try in 1 2 3; do
		good $START 1 1 || return 1
		(echo 0 >$START) &
		pid=$!
		sleep 0.1
		t0=${EPOCHREALTIME/./}
		started=$(stat_of started)
		out=$(/kmod/krelay-nat info 2>&1)
		dt=$(((${EPOCHREALTIME/./} - t0) / 1000))
		wait $pid
		expect_eq "start after the stop" "$(cat $START)" 0 || return 1
		if [[ $started == 1 ]] && grep -qx 'started 1' <<<"$out" && ((dt < 300)); then
			echo "# readers answered in $dt ms during a stop (try $try)"
			return 0
		fi
		why+="try $try: stats started=$started, GET_INFO $(grep started <<<"$out"), $dt ms; "
	done
	die "readers did not answer during a stop: $why"
}

# ---- the hooks select exactly krelay's packets ----

counters() {
	local k v
	declare -A c
	while read -r k v; do c[$k]=$v; done <$P/stats
	echo "${c[first]} ${c[u1]} ${c[u3]} ${c[t1]} ${c[t2]}"
}
# probe WANT CMD...: runs CMD and checks the first u1 u3 t1 t2 counters moved by WANT.
probe() {
	local want=$1 a b d="" i
	shift
	read -ra a <<<"$(counters)"
	"$@" >/dev/null 2>&1
	sleep 0.05
	read -ra b <<<"$(counters)"
	for i in 0 1 2 3 4; do d+="$((b[i] - a[i])) "; done
	expect_eq "first u1 u3 t1 t2 after '$*'" "${d% }" "$want"
}
# tcp_probe SPORT ADDR PORT / udp_probe SPORT ADDR PORT [COUNT]: netprobe (static, from the
# test) sends exactly one connection attempt or datagram from a chosen source port.
tcp_probe() { netprobe tcp "$@"; }
udp_probe() { netprobe udp "$@"; }

selection_config() {
	good $P/relay_ip 127.0.0.1 127.0.0.1 &&
		good $P/udp_ports 5353 5353 &&
		good $P/tcp_ports 8080 8080 &&
		good $P/gport 16000 16000 &&
		good $P/first_mark 0x4b53 19283
}

# Marks UDP to port 7777 (and TCP to 7777) with 0x4b53 in a chain at raw priority, as krelay's
# nftables chain marks a new flow's first packet. Made before start=1: of two hooks at the same
# priority the later runs first, so a hook at raw priority itself would miss the mark.
nft_mark() {
	nft -f - <<'NFT'
table ip kmodtest {
	chain raw {
		type filter hook prerouting priority raw;
		udp dport 7777 meta mark set 0x4b53
		tcp dport 7777 meta mark set 0x4b53
	}
}
NFT
}

t_hooks_select() {
	local out
	selection_config || return 1
	out=$(nft_mark 2>&1) || die "nft: $out"
	good $START 1 1 || return 1
	# first: a marked UDP packet to a port no list has is queued; an unmarked one is not.
	probe "1 0 0 0 0" udp_probe 0 127.0.0.1 7777 || return 1
	probe "0 0 0 0 0" udp_probe 0 127.0.0.1 7778 || return 1
	probe "3 0 0 0 0" udp_probe 0 127.0.0.2 7777 3 || return 1
	# The mark of TCP is not looked at.
	probe "0 0 0 0 0" tcp_probe 0 127.0.0.1 7777 || return 1
	# Another mark, or first_mark 0 (none): not queued.
	good $P/first_mark 0x4b54 19284 || return 1
	probe "0 0 0 0 0" udp_probe 0 127.0.0.1 7777 || return 1
	good $P/first_mark 0 0 || return 1
	probe "0 0 0 0 0" udp_probe 0 127.0.0.1 7777 || return 1
	good $P/first_mark 0x4b53 19283 || return 1
	# U1: to relay_ip:udp port; U3: from a udp port (replies); both when both.
	probe "0 1 0 0 0" udp_probe 0 127.0.0.1 5353 || return 1
	probe "0 0 1 0 0" udp_probe 5353 127.0.0.2 9 || return 1
	probe "0 0 3 0 0" udp_probe 5353 127.0.0.2 9 3 || return 1
	probe "0 1 1 0 0" udp_probe 5353 127.0.0.1 5353 || return 1
	# T1: SYN to relay_ip:tcp port; T2: the RST that relay_ip answers from that port.
	probe "0 0 0 1 1" tcp_probe 0 127.0.0.1 8080 || return 1
	probe "0 0 0 2 2" tcp_probe 0 127.0.0.1 8080 2 || return 1
	# Nothing else: the tcp port on another address, other ports, the old relay and gateway
	# ports (T3, T4 and the gateway's T2 are gone), ICMP.
	probe "0 0 0 0 0" tcp_probe 0 127.0.0.2 8080 || return 1
	probe "0 0 0 0 0" tcp_probe 30000 127.0.0.1 9 || return 1
	probe "0 0 0 0 0" tcp_probe 20005 127.0.0.2 9 || return 1
	probe "0 0 0 0 0" tcp_probe 16000 127.0.0.1 9 || return 1
	probe "0 0 0 0 0" udp_probe 0 127.0.0.1 9 || return 1
	probe "0 0 0 0 0" udp_probe 5354 127.0.0.2 5353 || return 1
	probe "0 0 0 0 0" tcp_probe 5353 127.0.0.1 9 || return 1
	probe "0 0 0 0 0" ping -c 1 -W 1 127.0.0.1 || return 1
	# Stopped: the same packets are not selected.
	good $START 0 0 || return 1
	probe "0 0 0 0 0" udp_probe 0 127.0.0.1 7777 || return 1
	probe "0 0 0 0 0" tcp_probe 0 127.0.0.1 8080 || return 1
	probe "0 0 0 0 0" udp_probe 0 127.0.0.1 5353 || return 1
	nft delete table ip kmodtest
}

# With start=1 and nobody on the queue, bypass lets the selected traffic through.
t_hooks_bypass() {
	local got pid q1
	selection_config || return 1
	good $START 1 1 || return 1
	q1=$(stat_of pre_queued)
	for attempt in 1 2; do
		rm -f /tmp/recv
		timeout 10 nc -l -p 8080 >/tmp/recv &
		pid=$!
		sleep 0.3
		echo "hello $attempt" >/dev/tcp/127.0.0.1/8080
		wait $pid
		got=$(cat /tmp/recv)
		expect_eq "received through queue bypass (attempt $attempt)" "$got" "hello $attempt" || return 1
		# The second time with nfnetlink_queue loaded (no listener on the queue).
		modprobe nfnetlink_queue || die "modprobe nfnetlink_queue failed"
	done
	(($(stat_of pre_queued) > q1)) || die "nothing was queued"
	good $START 0 0
}

# Hooks in the network namespace of the writer of start; a veth between two namespaces.
t_hooks_netns() {
	local inum t1 out pid got
	ip netns add kc || die "ip netns add"
	ip link add kv0 type veth peer name kv1 netns kc || die "veth"
	ip addr add 198.51.100.1/24 dev kv0 && ip link set kv0 up
	ip -n kc addr add 198.51.100.10/24 dev kv1 && ip -n kc link set kv1 up && ip -n kc link set lo up
	ping -c 1 -W 2 198.51.100.10 >/dev/null || die "no ping over the veth"
	good $P/relay_ip 198.51.100.1 198.51.100.1 || return 1
	good $P/tcp_ports 80 80 || return 1
	good $START 1 1 || return 1
	expect_eq netns "$(stat_of netns)" "$(stat -L -c %i /proc/self/ns/net)" || return 1
	t1=$(stat_of t1)
	rm -f /tmp/recv
	timeout 10 nc -l -p 80 >/tmp/recv &
	pid=$!
	sleep 0.3
	ip netns exec kc bash -c 'echo "over veth" >/dev/tcp/198.51.100.1/80'
	wait $pid
	expect_eq "received over veth" "$(cat /tmp/recv)" "over veth" || return 1
	(($(stat_of t1) > t1)) || die "T1 not counted for the veth client"
	good $START 0 0 || return 1

	# Started from inside the namespace: the hooks go there; the init namespace cannot
	# start them elsewhere meanwhile (EBUSY).
	ip netns add kr || die "ip netns add kr"
	out=$(ip netns exec kr sh -c "echo 1 > $START" 2>&1) || die "start from netns: $out"
	expect_eq netns "$(stat_of netns)" "$(ip netns exec kr stat -L -c %i /proc/self/ns/net)" || return 1
	if out=$(write $START 1); then die "a second namespace could start the hooks"; fi
	[[ $out == *"busy"* ]] || die "want EBUSY, got: $out"
	# The namespace goes away: its hooks are unregistered, start reads 0.
	ip netns del kr
	for _ in $(seq 100); do
		[[ $(cat $START) == 0 ]] && break
		sleep 0.1
	done
	expect_eq "start after the namespace went away" "$(cat $START)" 0 || return 1
	dmesg | grep -q 'network namespace of the hooks is going away' || die "no dmesg line"
	ip netns del kc
	ip link del kv0 2>/dev/null
	return 0
}

# ---- NAT table over sockopt ----

t_nat() {
	local out
	out=$(krelay-nat info) || die "info: $out"
	grep -qx 'version 1' <<<"$out" || die "info: $out"
	grep -qx 'entry_size 64' <<<"$out" || die "info: $out"
	grep -qx 'count 0' <<<"$out" || die "info: $out"
	krelay-nat add udp 198.51.100.10:40000 198.51.100.1:53 203.0.113.10:53 state=1 || die "add udp"
	krelay-nat add tcp 198.51.100.10:40001 198.51.100.1:80 203.0.113.10:80 y=20001 state=2 \
		bytes_in=100 bytes_out=2000 packets_in=3 packets_out=4 || die "add tcp"
	krelay-nat add tcp 198.51.100.11:40001 198.51.100.1:80 203.0.113.10:80 y=20002 || die "add tcp 2"
	out=$(krelay-nat get tcp 198.51.100.10:40001 198.51.100.1:80) || die "get: $out"
	expect_eq get "$out" "tcp 198.51.100.10:40001 198.51.100.1:80 203.0.113.10:80 y=20001 state=established bytes_in=100 bytes_out=2000 packets_in=3 packets_out=4" || return 1
	out=$(krelay-nat getport tcp 20002) || die "getport: $out"
	[[ $out == "tcp 198.51.100.11:40001 "* ]] || die "getport: $out"
	out=$(krelay-nat get udp 198.51.100.10:40000 198.51.100.1:53) || die "get udp: $out"
	[[ $out == *" 203.0.113.10:53 y=0 state=new "* ]] || die "get udp: $out"
	expect_eq "list count" "$(krelay-nat list | wc -l)" 3 || return 1
	krelay-nat list | grep -q '^udp 198.51.100.10:40000 198.51.100.1:53 203.0.113.10:53 ' || die "list: no udp entry"
	# Replace by key: new values, same count.
	krelay-nat add tcp 198.51.100.10:40001 198.51.100.1:80 203.0.113.10:80 y=20003 state=3 bytes_in=5 || die "replace"
	out=$(krelay-nat get tcp 198.51.100.10:40001 198.51.100.1:80)
	[[ $out == *" y=20003 state=closing bytes_in=5 "* ]] || die "replaced: $out"
	if out=$(krelay-nat getport tcp 20001 2>&1); then die "old relay port still found: $out"; fi
	krelay-nat getport tcp 20003 >/dev/null || die "new relay port not found"
	expect_eq "count after replace" "$(krelay-nat list | wc -l)" 3 || return 1
	# A relay port names one flow: another key with the same relay port is refused (EEXIST),
	# the table unchanged; the same port for the other protocol, or a free one, is fine.
	out=$(krelay-nat add tcp 198.51.100.12:40001 198.51.100.1:80 203.0.113.10:80 y=20003 2>&1) &&
		die "duplicate relay port accepted"
	[[ $out == *EEXIST* ]] || die "duplicate relay port: $out"
	out=$(krelay-nat add tcp 198.51.100.11:40001 198.51.100.1:80 203.0.113.10:80 y=20003 2>&1) &&
		die "relay port of another entry taken by a replacement"
	[[ $out == *EEXIST* ]] || die "replacement onto a taken relay port: $out"
	out=$(krelay-nat getport tcp 20002) || die "getport after EEXIST: $out"
	[[ $out == "tcp 198.51.100.11:40001 "* ]] || die "entry changed by a refused add: $out"
	if krelay-nat get tcp 198.51.100.12:40001 198.51.100.1:80 >/dev/null 2>&1; then
		die "refused entry was added"
	fi
	krelay-nat add udp 198.51.100.12:40001 198.51.100.1:53 203.0.113.10:53 y=20003 ||
		die "same relay port for udp refused"
	krelay-nat del udp 198.51.100.12:40001 198.51.100.1:53 || die "del udp y=20003"
	krelay-nat add tcp 198.51.100.10:40001 198.51.100.1:80 203.0.113.10:80 y=20003 state=3 bytes_in=5 ||
		die "replace with its own relay port"
	# Missing entries.
	out=$(krelay-nat get tcp 198.51.100.99:1 198.51.100.1:80 2>&1) && die "get missing: $out"
	[[ $out == *ENOENT* ]] || die "get missing: $out"
	out=$(krelay-nat del udp 198.51.100.99:1 198.51.100.1:53 2>&1) && die "del missing: $out"
	[[ $out == *ENOENT* ]] || die "del missing: $out"
	# Remove by key and by relay port.
	krelay-nat del udp 198.51.100.10:40000 198.51.100.1:53 || die "del"
	krelay-nat delport tcp 20002 || die "delport"
	expect_eq "list after del" "$(krelay-nat list | wc -l)" 1 || return 1
	out=$(krelay-nat info)
	grep -qx 'count 1' <<<"$out" || die "info: $out"
	krelay-nat flush || die "flush"
	expect_eq "list after flush" "$(krelay-nat list | wc -l)" 0 || return 1
	expect_eq "stats nat_entries" "$(stat_of nat_entries)" 0 || return 1
	# Entries are read and written only with CAP_NET_ADMIN; the counts are open to anyone.
	krelay-nat add udp 198.51.100.10:40000 198.51.100.1:53 203.0.113.10:53 || die "re-add"
	local nobody=(setpriv --reuid 65534 --regid 65534 --clear-groups --inh-caps=-all)
	out=$("${nobody[@]}" krelay-nat list 2>&1) && die "list as nobody worked: $out"
	[[ $out == *"GET_TABLE: EPERM"* ]] || die "list as nobody: $out"
	out=$("${nobody[@]}" krelay-nat get udp 198.51.100.10:40000 198.51.100.1:53 2>&1) &&
		die "get as nobody worked: $out"
	[[ $out == *"GET_ENTRY: EPERM"* ]] || die "get as nobody: $out"
	out=$("${nobody[@]}" krelay-nat info 2>&1) || die "info as nobody: $out"
	grep -qx 'count 1' <<<"$out" || die "info as nobody: $out"
	# Without CAP_NET_ADMIN even as root (the bounding set dropped): refused too.
	out=$(setpriv --bounding-set=-net_admin --inh-caps=-net_admin krelay-nat list 2>&1) &&
		die "list without CAP_NET_ADMIN worked: $out"
	[[ $out == *EPERM* ]] || die "list without CAP_NET_ADMIN: $out"
	out=$(krelay-nat list) || die "list as root: $out"
	[[ $out == udp* ]] || die "list as root: $out"
	out=$("${nobody[@]}" krelay-nat add udp 198.51.100.12:1 198.51.100.1:53 203.0.113.10:53 2>&1) &&
		die "add as nobody worked"
	[[ $out == *EPERM* ]] || die "add as nobody: $out"
	# Reachable from another network namespace too.
	ip netns add kn && out=$(ip netns exec kn krelay-nat list) && ip netns del kn
	[[ $out == udp* ]] || die "list from a namespace: $out"
	krelay-nat flush
}

# A table of 4 entries: the fifth add is refused with ENOSPC; replacing still works.
t_nat_bound() {
	local i out
	unload || return 1
	if insmod $KO max_entries=0 2>/dev/null; then die "max_entries=0 accepted"; fi
	if insmod $KO max_entries=2000000 2>/dev/null; then die "max_entries=2000000 accepted"; fi
	insmod $KO max_entries=4 || die "insmod max_entries=4"
	for i in 1 2 3 4; do
		krelay-nat add udp 198.51.100.$i:1000 198.51.100.1:53 203.0.113.10:53 || die "add $i"
	done
	out=$(krelay-nat add udp 198.51.100.5:1000 198.51.100.1:53 203.0.113.10:53 2>&1) && die "fifth add worked"
	[[ $out == *ENOSPC* ]] || die "fifth add: $out"
	krelay-nat add udp 198.51.100.4:1000 198.51.100.1:53 203.0.113.10:54 || die "replace when full"
	out=$(krelay-nat info)
	grep -qx 'count 4' <<<"$out" && grep -qx 'max_entries 4' <<<"$out" && grep -qx 'full 1' <<<"$out" ||
		die "info: $out"
	krelay-nat del udp 198.51.100.1:1000 198.51.100.1:53 || die "del"
	krelay-nat add udp 198.51.100.5:1000 198.51.100.1:53 203.0.113.10:53 || die "add after del"
	expect_eq "stats nat_max" "$(stat_of nat_max)" 4 || return 1
	expect_eq "stats nat_buckets" "$(stat_of nat_buckets)" 16 || return 1
	unload || return 1
	dmesg | tail -n 5 | grep -q 'unloaded (4 NAT entries freed)' || die "no 'unloaded (4 NAT entries freed)'"
}

# The buckets grow with max_entries (the power of two at or above it), and the hash key is
# random: the same 24 entries come out of the dump (bucket order) in another order after a
# reload, which a fixed seed would never do.
t_nat_hash() {
	local order1 order2 i
	unload || return 1
	insmod $KO max_entries=1000 || die "insmod max_entries=1000"
	expect_eq "nat_buckets for 1000" "$(stat_of nat_buckets)" 1024 || return 1
	for i in $(seq 24); do
		krelay-nat add udp 198.51.100.$i:1000 198.51.100.1:53 203.0.113.10:53 || die "add $i"
	done
	order1=$(krelay-nat list | awk '{print $2}' | tr '\n' ' ')
	unload || return 1
	insmod $KO max_entries=1000 || die "insmod again"
	for i in $(seq 24); do
		krelay-nat add udp 198.51.100.$i:1000 198.51.100.1:53 203.0.113.10:53 || die "add $i again"
	done
	order2=$(krelay-nat list | awk '{print $2}' | tr '\n' ' ')
	expect_eq "entries listed" "$(wc -w <<<"$order2")" 24 || return 1
	[[ $order1 != "$order2" ]] || die "same dump order after a reload: $order1"
	unload
}

# A large table through small buffers: what fits plus the count, and all of it (each entry
# once) through a buffer with room for all; the kernel copies it in chunks of 64.
t_nat_dump() {
	local out n=5000
	insmod $KO || die insmod
	krelay-nat add-range $n udp 198.51.100.10:1000 198.51.100.1:53 203.0.113.10:53 || die "add-range"
	krelay-nat add-range 100 tcp 198.51.100.20:2000 198.51.100.1:80 203.0.113.10:80 y=20000 ||
		die "add-range tcp"
	n=$((n + 100))
	out=$(krelay-nat dump 0) || die "dump 0: $out"
	expect_eq "dump 0" "$out" "count 0 total $n len 16" || return 1
	out=$(krelay-nat dump 10) || die "dump 10: $out"
	expect_eq "dump 10 header" "$(head -n 1 <<<"$out")" "count 10 total $n len 656" || return 1
	expect_eq "dump 10 entries" "$(tail -n +2 <<<"$out" | sort -u | wc -l)" 10 || return 1
	out=$(krelay-nat dump 100) || die "dump 100: $out"
	expect_eq "dump 100 entries" "$(tail -n +2 <<<"$out" | sort -u | wc -l)" 100 || return 1
	out=$(krelay-nat dump $((n + 5))) || die "dump all: $out"
	expect_eq "dump all header" "$(head -n 1 <<<"$out")" "count $n total $n len $((16 + 64 * n))" || return 1
	expect_eq "dump all, each once" "$(tail -n +2 <<<"$out" | awk '{print $1, $2}' | sort -u | wc -l)" $n || return 1
	grep -q '^udp 198.51.100.10:5999 ' <<<"$out" || die "last udp entry missing"
	grep -q '^tcp 198.51.100.20:2099 198.51.100.1:80 203.0.113.10:80 y=20099 ' <<<"$out" ||
		die "last tcp entry missing"
	expect_eq "list" "$(krelay-nat list | wc -l)" $n || return 1
	unload
}

# ---- unload in each state ----

t_unload_stopped() {
	insmod $KO || die insmod
	unload
}
t_unload_started() {
	insmod $KO || die insmod
	good $START 1 1 && unload
}
t_unload_start_param() {
	insmod $KO start=1 || die "insmod start=1"
	expect_eq start "$(cat $START)" 1 || return 1
	expect_eq stats.started "$(stat_of started)" 1 || return 1
	unload
}
t_unload_toggled() {
	insmod $KO || die insmod
	good $START 1 1 && good $START 0 0 && good $START 1 1 && good $START 0 0 && unload
}
t_unload_netns() {
	insmod $KO || die insmod
	ip netns add ku || die "netns"
	ip netns exec ku sh -c "echo 1 > $START" || die "start in netns"
	unload || return 1
	ip netns del ku
}
t_unload_open_file() {
	local out
	insmod $KO || die insmod
	krelay-nat add tcp 198.51.100.10:1 198.51.100.1:80 203.0.113.10:80 y=20000 || die add
	exec 7<$P/gport
	unload || return 1
	if out=$(cat <&7 2>&1); then die "read after unload worked: $out"; fi
	exec 7<&-
	return 0
}

# ---- everything at once: start toggles, /proc writes, sockopt calls and traffic ----

t_stress() {
	local pids=() i
	insmod $KO max_entries=64 || die insmod
	selection_config || return 1
	# Each stop pauses KRELAY_QUIESCE_MS (500 ms) for queued verdicts: 20 toggles, not 100.
	(for i in $(seq 20); do
		echo 1 >$START
		echo 0 >$START
	done 2>/dev/null) &
	pids+=($!)
	(for i in $(seq 100); do
		echo $((16000 + i % 50)) >$P/gport
		echo "5353,$((100 + i % 50))" >$P/udp_ports
		echo "8080,$((200 + i % 50))" >$P/tcp_ports
		echo "$((19283 + i % 2))" >$P/first_mark
		cat $P/stats $P/udp_ports >/dev/null
	done 2>/dev/null) &
	pids+=($!)
	(for i in $(seq 100); do
		krelay-nat add udp 198.51.100.$((i % 100 + 1)):$((1000 + i)) 127.0.0.1:53 203.0.113.10:53
		krelay-nat list >/dev/null
		((i % 40 == 0)) && krelay-nat flush
	done >/dev/null 2>&1) &
	pids+=($!)
	(for i in $(seq 10); do
		tcp_probe $((20000 + i)) 127.0.0.1 8080 20
		udp_probe 0 127.0.0.1 5353 50
		udp_probe 5353 127.0.0.1 9 50
	done >/dev/null 2>&1) &
	pids+=($!)
	ping -f -c 2000 -w 30 127.0.0.1 >/dev/null 2>&1 &
	pids+=($!)
	for i in "${pids[@]}"; do wait "$i"; done
	echo 1 >$START
	unload
}

t_deno() {
	local out
	out=$(timeout 60 "$KRELAY_VM_REPO/node_modules/deno/deno" --version) || die "deno --version: $out"
	[[ $out == deno\ 2.* ]] || die "deno --version: $out"
}

check deno-version t_deno
check load t_load
check proc-defaults t_defaults
check proc-write t_proc_write
check proc-bad-values t_proc_bad
check proc-real-ip-refusals t_real_ip_refusals
check start-toggle t_start_toggle
check readers-during-stop t_readers_during_stop
check hooks-select t_hooks_select
check hooks-bypass t_hooks_bypass
check hooks-netns t_hooks_netns
check nat-sockopt t_nat
check dmesg-after-checks dmesg_clean
check nat-bound t_nat_bound
check nat-hash t_nat_hash
check nat-dump-chunks t_nat_dump
check unload-stopped t_unload_stopped
check unload-started t_unload_started
check unload-start-param t_unload_start_param
check unload-after-toggles t_unload_toggled
check unload-started-in-netns t_unload_netns
check unload-open-file-and-entries t_unload_open_file
check dmesg-after-unloads dmesg_clean
check stress t_stress
check dmesg-after-stress dmesg_clean
loaded && rmmod krelay
echo "checks done ($FAILS failed)"
exit $((FAILS > 0))
