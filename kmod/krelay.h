/* SPDX-License-Identifier: GPL-2.0 */
/*
 * krelay.h - declarations shared by the files of krelay.ko (not a user ABI: that is
 * krelay_abi.h).
 *
 *   main.c   module init and exit
 *   hooks.c  the netfilter hooks, their selection, start/stop and the hooked namespace
 *   proc.c   /proc/krelay (the configuration the hooks read) and the start parameter
 *   nat.c    the NAT table and its sockopts
 *
 * Locking, and why:
 *  - krelay_cfg (everything the hooks read) is an immutable snapshot published with RCU.
 *    Hooks run in softirq or with BH off and must not sleep or spin on writers: they only
 *    rcu_dereference() it. /proc writers build a new copy under krelay_cfg_lock (a mutex:
 *    writers sleep in memory allocation and copy_from_user), rcu_assign_pointer() it and
 *    free the old one with kfree_rcu(). Each write is validated completely before anything
 *    is published, so a bad value changes nothing.
 *  - krelay_start_lock (a mutex, hooks.c) serializes start toggling, the hooked network
 *    namespace, the pernet exit of that namespace, and module exit: nf_register_net_hooks()
 *    and nf_unregister_net_hooks() sleep, and "registered or not" must have one owner. A stop
 *    sleeps KRELAY_QUIESCE_MS under it, so readers anyone can be (the start parameter,
 *    /proc/krelay/stats, GET_INFO) never take it: they READ_ONCE() a copy of the state.
 *  - krelay_nat_lock (a spinlock, BH-safe, nat.c) protects the NAT hash tables, their count
 *    and counters. Only process context (sockopt calls, /proc/krelay/stats, unload) takes it
 *    today; the _bh form keeps it usable from a hook should one ever look entries up.
 *    Nothing that sleeps or touches user memory runs under it: entries are allocated before
 *    and copied to user space after.
 *  - Hook counters are per-CPU (this_cpu_inc), summed on read: no lock.
 */
#ifndef KRELAY_H
#define KRELAY_H

#include <linux/rcupdate.h>
#include <linux/types.h>

#define KRELAY_MAX_PORTS 128 /* per list: configured ports plus those of live flows */

/**
 * struct krelay_ports - a set of ports, as the hooks match them
 * @n: how many of @port are used
 * @port: host order, sorted, unique
 */
struct krelay_ports {
	u16 n;
	u16 port[KRELAY_MAX_PORTS];
};

/**
 * struct krelay_cfg - what the hooks read: one immutable RCU-published snapshot
 * @rcu: for kfree_rcu() of a replaced snapshot
 * @relay_ip: network order; 0 (unset) makes U1, T1 and T2 match nothing
 * @real_ip: network order; read by krelay, not by the hooks
 * @first_mark: the mark of a new UDP flow's first packet (first); 0: none
 * @gport: krelay's gateway port; read by krelay, not by the hooks
 * @queue: the NFQUEUE number of every verdict
 * @udp: the UDP ports of services with a packet script (U1, U3)
 * @tcp: the TCP ports of services with a packet script (T1, T2)
 */
struct krelay_cfg {
	struct rcu_head rcu;
	__be32 relay_ip;
	__be32 real_ip;
	u32 first_mark;
	u16 gport;
	u16 queue;
	struct krelay_ports udp, tcp;
};

/* proc.c: the configuration, /proc/krelay and the start parameter */
extern struct krelay_cfg __rcu *krelay_cfg;
bool krelay_ports_has(const struct krelay_ports *p, u16 port);
int krelay_cfg_init(void);
void krelay_cfg_exit(void);
int krelay_proc_init(void);
void krelay_proc_exit(void);

/**
 * enum krelay_counter - the per-CPU hook counters, in the order /proc/krelay/stats shows them
 * @KRELAY_CNT_NONE: no match (not a counter)
 * @KRELAY_CNT_PRE_SEEN: packets through the PRE_ROUTING hook
 * @KRELAY_CNT_PRE_QUEUED: of those, queued
 * @KRELAY_CNT_POST_SEEN: packets through the POST_ROUTING hook
 * @KRELAY_CNT_POST_QUEUED: of those, queued
 * @KRELAY_CNT_FIRST: a UDP packet marked first_mark (a new flow's first packet)
 * @KRELAY_CNT_U1: client to relay_ip:udp port
 * @KRELAY_CNT_U3: from a udp port
 * @KRELAY_CNT_T1: client to relay_ip:tcp port
 * @KRELAY_CNT_T2: from relay_ip:tcp port
 * @KRELAY_NR_COUNTERS: how many there are
 */
enum krelay_counter {
	KRELAY_CNT_NONE = -1,
	KRELAY_CNT_PRE_SEEN,
	KRELAY_CNT_PRE_QUEUED,
	KRELAY_CNT_POST_SEEN,
	KRELAY_CNT_POST_QUEUED,
	KRELAY_CNT_FIRST,
	KRELAY_CNT_U1,
	KRELAY_CNT_U3,
	KRELAY_CNT_T1,
	KRELAY_CNT_T2,
	KRELAY_NR_COUNTERS,
};

/* hooks.c: the hooks, start and stop */
extern const char *const krelay_counter_names[KRELAY_NR_COUNTERS];
int krelay_hooks_init(void);
void krelay_hooks_exit(void);
int krelay_hooks_ready(void);
void krelay_hooks_going(void);
int krelay_start_write(unsigned int v);
unsigned int krelay_start_read(void);
unsigned int krelay_hooks_netns(void);
void krelay_counters_sum(u64 sum[KRELAY_NR_COUNTERS]);

/* nat.c: the NAT table and its sockopts */
extern unsigned int krelay_max_entries;
extern unsigned int krelay_nat_buckets;
int krelay_nat_init(void);
unsigned int krelay_nat_exit(void);
unsigned int krelay_nat_entries(void);

#endif /* KRELAY_H */
