// SPDX-License-Identifier: GPL-2.0
/*
 * krelay.ko - the kernel part of krelay: netfilter hooks that select exactly the packets
 * krelay relays and hand them to its NFQUEUE (with bypass), the seed-style configuration in
 * /proc/krelay and /sys/module/krelay/parameters/start, and a NAT table that krelay pushes
 * entries to and anyone reads through getsockopt (krelay_abi.h).
 *
 * The hooks reproduce src/datapath/iptables_rules.ts:
 *   PRE_ROUTING, raw priority (before conntrack):
 *     U1  udp  daddr == relay_ip && dport in udp_ports
 *     T1  tcp  daddr == relay_ip && dport in tcp_ports
 *     T4  tcp  dport in relay_ports && sport in tcp_ports
 *   POST_ROUTING, mangle priority:
 *     U3  udp  sport in udp_ports
 *     T2  tcp  saddr == relay_ip && sport in {gport} + gports
 *     T3  tcp  sport in relay_ports && dport in tcp_ports
 * and return NF_QUEUE_NR(queue) | NF_VERDICT_FLAG_QUEUE_BYPASS for those, NF_ACCEPT for
 * everything else. Non-first fragments carry no ports and are accepted, as iptables' port
 * matches do not match them.
 *
 * Locking, and why:
 *  - krelay_cfg (everything the hooks read) is an immutable snapshot published with RCU.
 *    Hooks run in softirq or with BH off and must not sleep or spin on writers: they only
 *    rcu_dereference() it. /proc writers build a new copy under krelay_cfg_lock (a mutex:
 *    writers sleep in memory allocation and copy_from_user), rcu_assign_pointer() it and
 *    free the old one with kfree_rcu(). Each write is validated completely before anything
 *    is published, so a bad value changes nothing.
 *  - krelay_start_lock (a mutex) serializes start toggling, the hooked network namespace
 *    (krelay_net), the pernet exit of that namespace, and module exit: nf_register_net_hooks()
 *    and nf_unregister_net_hooks() sleep, and "registered or not" must have one owner.
 *  - krelay_nat_lock (a spinlock, BH-safe) protects the NAT hash tables, their count and
 *    counters. Only process context (sockopt calls, /proc/krelay/stats, unload) takes it
 *    today; the _bh form keeps it usable from a hook should one ever look entries up.
 *    Nothing that sleeps or touches user memory runs under it: entries are allocated before
 *    and copied to user space after.
 *  - Hook counters are per-CPU (this_cpu_inc), summed on read: no lock.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/capability.h>
#include <linux/delay.h>
#include <linux/in.h>
#include <linux/inet.h>
#include <linux/init.h>
#include <linux/ip.h>
#include <linux/jhash.h>
#include <linux/kernel.h>
#include <linux/list.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/mm.h>
#include <linux/mutex.h>
#include <linux/netfilter.h>
#include <linux/netfilter_ipv4.h>
#include <linux/nsproxy.h>
#include <linux/percpu.h>
#include <linux/proc_fs.h>
#include <linux/rcupdate.h>
#include <linux/skbuff.h>
#include <linux/slab.h>
#include <linux/sockptr.h>
#include <linux/spinlock.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <net/ip.h>
#include <net/net_namespace.h>

#include "krelay_abi.h"

/* ---- configuration (RCU) ---- */

#define KRELAY_MAX_PORTS 128 /* per list: configured ports plus those of live flows */
#define KRELAY_TEXT_MAX 1024 /* longest /proc text: 128 ports * 6 characters + slack */

struct krelay_ports {
	u16 n;
	u16 port[KRELAY_MAX_PORTS]; /* host order, sorted, unique */
};

struct krelay_cfg {
	struct rcu_head rcu;
	__be32 relay_ip; /* 0: unset, U1/T1/T2 match nothing */
	__be32 real_ip;  /* read by krelay; the hooks do not use it */
	u16 gport;
	u16 relay_lo, relay_hi;
	u16 queue;
	struct krelay_ports udp, tcp, gports;
};

static struct krelay_cfg __rcu *krelay_cfg;
static DEFINE_MUTEX(krelay_cfg_lock);

static bool krelay_ports_has(const struct krelay_ports *p, u16 port)
{
	u16 i;

	for (i = 0; i < p->n && p->port[i] <= port; i++)
		if (p->port[i] == port)
			return true;
	return false;
}

/* ---- hooks ---- */

struct krelay_stats {
	u64 pre_seen, pre_queued, post_seen, post_queued;
	u64 u1, u3, t1, t2, t3, t4;
};

static struct krelay_stats __percpu *krelay_stats;

static bool krelay_ports_of(const struct sk_buff *skb, const struct iphdr *iph,
			    u16 *sport, u16 *dport)
{
	__be16 buf[2];
	const __be16 *ports;

	if (iph->frag_off & htons(IP_OFFSET))
		return false;
	ports = skb_header_pointer(skb, skb_network_offset(skb) + iph->ihl * 4,
				   sizeof(buf), buf);
	if (!ports)
		return false;
	*sport = ntohs(ports[0]);
	*dport = ntohs(ports[1]);
	return true;
}

/* Set while the hooks are being unregistered: they accept everything (read without a lock). */
static bool krelay_quiesce;

/* How long krelay gets to return the verdicts of packets queued before a stop. */
#define KRELAY_QUIESCE_MS 500

static unsigned int krelay_verdict(const struct krelay_cfg *cfg)
{
	return NF_QUEUE_NR(cfg->queue) | NF_VERDICT_FLAG_QUEUE_BYPASS;
}

static unsigned int krelay_hook_pre(void *priv, struct sk_buff *skb,
				    const struct nf_hook_state *state)
{
	const struct iphdr *iph = ip_hdr(skb);
	const struct krelay_cfg *cfg;
	unsigned int verdict = NF_ACCEPT;
	u16 sport, dport;

	this_cpu_inc(krelay_stats->pre_seen);
	if (READ_ONCE(krelay_quiesce))
		return NF_ACCEPT;
	if (iph->protocol != IPPROTO_UDP && iph->protocol != IPPROTO_TCP)
		return NF_ACCEPT;
	if (!krelay_ports_of(skb, iph, &sport, &dport))
		return NF_ACCEPT;

	rcu_read_lock();
	cfg = rcu_dereference(krelay_cfg);
	if (iph->protocol == IPPROTO_UDP) {
		if (cfg->relay_ip && iph->daddr == cfg->relay_ip &&
		    krelay_ports_has(&cfg->udp, dport)) {
			this_cpu_inc(krelay_stats->u1);
			verdict = krelay_verdict(cfg);
		}
	} else if (cfg->relay_ip && iph->daddr == cfg->relay_ip &&
		   krelay_ports_has(&cfg->tcp, dport)) {
		this_cpu_inc(krelay_stats->t1);
		verdict = krelay_verdict(cfg);
	} else if (dport >= cfg->relay_lo && dport <= cfg->relay_hi &&
		   krelay_ports_has(&cfg->tcp, sport)) {
		this_cpu_inc(krelay_stats->t4);
		verdict = krelay_verdict(cfg);
	}
	rcu_read_unlock();
	if (verdict != NF_ACCEPT)
		this_cpu_inc(krelay_stats->pre_queued);
	return verdict;
}

static unsigned int krelay_hook_post(void *priv, struct sk_buff *skb,
				     const struct nf_hook_state *state)
{
	const struct iphdr *iph = ip_hdr(skb);
	const struct krelay_cfg *cfg;
	unsigned int verdict = NF_ACCEPT;
	u16 sport, dport;

	this_cpu_inc(krelay_stats->post_seen);
	if (READ_ONCE(krelay_quiesce))
		return NF_ACCEPT;
	if (iph->protocol != IPPROTO_UDP && iph->protocol != IPPROTO_TCP)
		return NF_ACCEPT;
	if (!krelay_ports_of(skb, iph, &sport, &dport))
		return NF_ACCEPT;

	rcu_read_lock();
	cfg = rcu_dereference(krelay_cfg);
	if (iph->protocol == IPPROTO_UDP) {
		if (krelay_ports_has(&cfg->udp, sport)) {
			this_cpu_inc(krelay_stats->u3);
			verdict = krelay_verdict(cfg);
		}
	} else if (cfg->relay_ip && iph->saddr == cfg->relay_ip &&
		   (sport == cfg->gport || krelay_ports_has(&cfg->gports, sport))) {
		this_cpu_inc(krelay_stats->t2);
		verdict = krelay_verdict(cfg);
	} else if (sport >= cfg->relay_lo && sport <= cfg->relay_hi &&
		   krelay_ports_has(&cfg->tcp, dport)) {
		this_cpu_inc(krelay_stats->t3);
		verdict = krelay_verdict(cfg);
	}
	rcu_read_unlock();
	if (verdict != NF_ACCEPT)
		this_cpu_inc(krelay_stats->post_queued);
	return verdict;
}

static const struct nf_hook_ops krelay_hook_ops[] = {
	{
		.hook = krelay_hook_pre,
		.pf = NFPROTO_IPV4,
		.hooknum = NF_INET_PRE_ROUTING,
		.priority = NF_IP_PRI_RAW, /* after defrag, before conntrack */
	},
	{
		.hook = krelay_hook_post,
		.pf = NFPROTO_IPV4,
		.hooknum = NF_INET_POST_ROUTING,
		.priority = NF_IP_PRI_MANGLE,
	},
};

/* ---- start: hooks on and off ---- */

static DEFINE_MUTEX(krelay_start_lock);
static bool krelay_ready;	  /* module_init done; start writes act at once */
static bool krelay_going;	  /* module_exit began; start writes fail */
static unsigned int krelay_start_wanted; /* start= given before module_init ran */
static struct net *krelay_net;	  /* where the hooks are registered, NULL when stopped */


/*
 * Registers the hooks in @net, the network namespace of the process that writes 1 (for
 * insmod start=1, insmod's). No reference is held on @net: krelay_net_pre_exit() unregisters
 * the hooks before the namespace goes away. Caller holds krelay_start_lock.
 */
static int krelay_hooks_on(struct net *net)
{
	int err;

	lockdep_assert_held(&krelay_start_lock);
	if (krelay_net)
		return krelay_net == net ? 0 : -EBUSY;
	err = nf_register_net_hooks(net, krelay_hook_ops, ARRAY_SIZE(krelay_hook_ops));
	if (err)
		return err;
	krelay_net = net;
	pr_info("started: hooks registered (netns %u)\n", net->ns.inum);
	return 0;
}

static void krelay_hooks_off(void)
{
	lockdep_assert_held(&krelay_start_lock);
	if (!krelay_net)
		return;
	/*
	 * Stop queueing first, then give krelay time to hand back the verdicts of what is already
	 * queued. A verdict that races with the unregistration finds its packet's hook index past
	 * the shrunk hook list: nf_reinject() then warns and drops the packet. Packets still queued
	 * after the pause are dropped by the unregistration itself, without a warning.
	 */
	WRITE_ONCE(krelay_quiesce, true);
	synchronize_net();
	msleep(KRELAY_QUIESCE_MS);
	nf_unregister_net_hooks(krelay_net, krelay_hook_ops, ARRAY_SIZE(krelay_hook_ops));
	WRITE_ONCE(krelay_quiesce, false);
	pr_info("stopped: hooks unregistered (netns %u)\n", krelay_net->ns.inum);
	krelay_net = NULL;
}

static int krelay_start_set(const char *val, const struct kernel_param *kp)
{
	unsigned int v;
	int err;

	err = kstrtouint(val, 10, &v);
	if (err)
		return err;
	if (v > 1)
		return -EINVAL;
	mutex_lock(&krelay_start_lock);
	if (krelay_going)
		err = -ENODEV;
	else if (!krelay_ready)
		krelay_start_wanted = v; /* insmod start=N: krelay_init() applies it */
	else if (v)
		err = krelay_hooks_on(current->nsproxy->net_ns);
	else
		krelay_hooks_off();
	mutex_unlock(&krelay_start_lock);
	return err;
}

static int krelay_start_get(char *buffer, const struct kernel_param *kp)
{
	unsigned int v;

	mutex_lock(&krelay_start_lock);
	v = krelay_ready ? krelay_net != NULL : krelay_start_wanted;
	mutex_unlock(&krelay_start_lock);
	return sprintf(buffer, "%u\n", v);
}

static const struct kernel_param_ops krelay_start_ops = {
	.set = krelay_start_set,
	.get = krelay_start_get,
};

module_param_cb(start, &krelay_start_ops, &krelay_start_wanted, 0644);
MODULE_PARM_DESC(start, "0: hooks unregistered (default); 1: hooks registered in the writer's netns");

static void __net_exit krelay_net_pre_exit(struct net *net)
{
	mutex_lock(&krelay_start_lock);
	if (krelay_net == net) {
		pr_info("network namespace of the hooks is going away\n");
		krelay_hooks_off();
	}
	mutex_unlock(&krelay_start_lock);
}

static struct pernet_operations krelay_net_ops = {
	.pre_exit = krelay_net_pre_exit,
};

/* ---- NAT table (spinlock) ---- */

static unsigned int max_entries = 65536;
module_param(max_entries, uint, 0444);
MODULE_PARM_DESC(max_entries, "NAT table bound (1-1048576, default 65536)");

#define KRELAY_NAT_MAX_BOUND (1U << 20)
#define KRELAY_NAT_HASH_BITS 12
#define KRELAY_NAT_BUCKETS (1U << KRELAY_NAT_HASH_BITS)

struct krelay_nat {
	struct hlist_node by_key;  /* in krelay_nat_by_key, always */
	struct hlist_node by_port; /* in krelay_nat_by_port when e.relay_port != 0 */
	struct krelay_nat_entry e; /* as given, flags cleared */
};

static DEFINE_SPINLOCK(krelay_nat_lock);
static struct hlist_head *krelay_nat_by_key, *krelay_nat_by_port;
static unsigned int krelay_nat_count;
static u64 krelay_nat_adds, krelay_nat_dels, krelay_nat_full;

static u32 krelay_key_hash(const struct krelay_nat_entry *e)
{
	return jhash_3words((__force u32)e->client_addr,
			    ((__force u32)e->client_port << 16) | (__force u32)e->service_port,
			    (__force u32)e->relay_addr ^ e->protocol, 0) &
	       (KRELAY_NAT_BUCKETS - 1);
}

static u32 krelay_port_hash(u8 protocol, __be16 relay_port)
{
	return jhash_2words(protocol, (__force u32)relay_port, 0) & (KRELAY_NAT_BUCKETS - 1);
}

static bool krelay_same_key(const struct krelay_nat_entry *a, const struct krelay_nat_entry *b)
{
	return a->protocol == b->protocol && a->client_addr == b->client_addr &&
	       a->client_port == b->client_port && a->relay_addr == b->relay_addr &&
	       a->service_port == b->service_port;
}

/* The entry @req names: by key, or by (protocol, relay_port). Caller holds the lock. */
static struct krelay_nat *krelay_nat_find(const struct krelay_nat_entry *req)
{
	struct krelay_nat *n;

	lockdep_assert_held(&krelay_nat_lock);
	if (req->flags & KRELAY_F_BY_RELAY_PORT) {
		hlist_for_each_entry(n, &krelay_nat_by_port[krelay_port_hash(req->protocol,
									   req->relay_port)],
				     by_port)
			if (n->e.protocol == req->protocol && n->e.relay_port == req->relay_port)
				return n;
		return NULL;
	}
	hlist_for_each_entry(n, &krelay_nat_by_key[krelay_key_hash(req)], by_key)
		if (krelay_same_key(&n->e, req))
			return n;
	return NULL;
}

static void krelay_nat_unlink(struct krelay_nat *n)
{
	lockdep_assert_held(&krelay_nat_lock);
	hlist_del(&n->by_key);
	if (n->e.relay_port)
		hlist_del(&n->by_port);
	krelay_nat_count--;
}

static void krelay_nat_link_port(struct krelay_nat *n)
{
	if (n->e.relay_port)
		hlist_add_head(&n->by_port,
			       &krelay_nat_by_port[krelay_port_hash(n->e.protocol, n->e.relay_port)]);
}

/* Checks an entry from user space; @lookup: a GET_ENTRY/SET_DEL request. */
static int krelay_check_entry(const struct krelay_nat_entry *e, bool lookup)
{
	if (e->version != KRELAY_ABI_VERSION)
		return -EPROTO;
	if (e->protocol != IPPROTO_TCP && e->protocol != IPPROTO_UDP)
		return -EINVAL;
	if (e->flags & ~KRELAY_F_MASK)
		return -EINVAL;
	if (lookup)
		return (e->flags & KRELAY_F_BY_RELAY_PORT) && !e->relay_port ? -EINVAL : 0;
	if (e->flags || e->reserved || e->state > KRELAY_STATE_MAX)
		return -EINVAL;
	return 0;
}

static int krelay_nat_add(sockptr_t arg, unsigned int len)
{
	struct krelay_nat *n, *old;
	int err;

	if (len < sizeof(n->e))
		return -EINVAL;
	n = kmalloc(sizeof(*n), GFP_KERNEL);
	if (!n)
		return -ENOMEM;
	if (copy_from_sockptr(&n->e, arg, sizeof(n->e))) {
		err = -EFAULT;
		goto out_free;
	}
	err = krelay_check_entry(&n->e, false);
	if (err)
		goto out_free;

	spin_lock_bh(&krelay_nat_lock);
	old = krelay_nat_find(&n->e);
	if (old) {
		/* Replace in place: same key, new values. */
		if (old->e.relay_port)
			hlist_del(&old->by_port);
		old->e = n->e;
		krelay_nat_link_port(old);
		krelay_nat_adds++;
		spin_unlock_bh(&krelay_nat_lock);
		err = 0;
		goto out_free;
	}
	if (krelay_nat_count >= max_entries) {
		krelay_nat_full++;
		spin_unlock_bh(&krelay_nat_lock);
		err = -ENOSPC;
		goto out_free;
	}
	hlist_add_head(&n->by_key, &krelay_nat_by_key[krelay_key_hash(&n->e)]);
	krelay_nat_link_port(n);
	krelay_nat_count++;
	krelay_nat_adds++;
	spin_unlock_bh(&krelay_nat_lock);
	return 0;

out_free:
	kfree(n);
	return err;
}

static int krelay_nat_del(sockptr_t arg, unsigned int len)
{
	struct krelay_nat_entry req;
	struct krelay_nat *n;
	int err;

	if (len < sizeof(req))
		return -EINVAL;
	if (copy_from_sockptr(&req, arg, sizeof(req)))
		return -EFAULT;
	err = krelay_check_entry(&req, true);
	if (err)
		return err;
	spin_lock_bh(&krelay_nat_lock);
	n = krelay_nat_find(&req);
	if (n) {
		krelay_nat_unlink(n);
		krelay_nat_dels++;
	}
	spin_unlock_bh(&krelay_nat_lock);
	if (!n)
		return -ENOENT;
	kfree(n);
	return 0;
}

/* Empties the table; returns how many entries it held. */
static unsigned int krelay_nat_flush(void)
{
	struct krelay_nat *n;
	struct hlist_node *tmp;
	unsigned int i, freed = 0;

	spin_lock_bh(&krelay_nat_lock);
	for (i = 0; i < KRELAY_NAT_BUCKETS; i++) {
		hlist_for_each_entry_safe(n, tmp, &krelay_nat_by_key[i], by_key) {
			krelay_nat_unlink(n);
			kfree(n);
			freed++;
		}
	}
	krelay_nat_dels += freed;
	spin_unlock_bh(&krelay_nat_lock);
	return freed;
}

static int krelay_so_set(struct sock *sk, int optval, sockptr_t arg, unsigned int len)
{
	u32 version;

	if (!capable(CAP_NET_ADMIN))
		return -EPERM;
	switch (optval) {
	case KRELAY_SO_SET_ADD:
		return krelay_nat_add(arg, len);
	case KRELAY_SO_SET_DEL:
		return krelay_nat_del(arg, len);
	case KRELAY_SO_SET_FLUSH:
		if (len < sizeof(version))
			return -EINVAL;
		if (copy_from_sockptr(&version, arg, sizeof(version)))
			return -EFAULT;
		if (version != KRELAY_ABI_VERSION)
			return -EPROTO;
		krelay_nat_flush();
		return 0;
	}
	return -ENOPROTOOPT;
}

static int krelay_get_info(void __user *user, int *len)
{
	struct krelay_nat_info info;

	if (*len < (int)sizeof(info))
		return -EINVAL;
	if (copy_from_user(&info.version, user, sizeof(info.version)))
		return -EFAULT;
	if (info.version != KRELAY_ABI_VERSION)
		return -EPROTO;
	memset(&info, 0, sizeof(info));
	info.version = KRELAY_ABI_VERSION;
	info.entry_size = sizeof(struct krelay_nat_entry);
	info.max_entries = max_entries;
	mutex_lock(&krelay_start_lock);
	info.started = krelay_net != NULL;
	mutex_unlock(&krelay_start_lock);
	spin_lock_bh(&krelay_nat_lock);
	info.count = krelay_nat_count;
	info.adds = krelay_nat_adds;
	info.dels = krelay_nat_dels;
	info.full = krelay_nat_full;
	spin_unlock_bh(&krelay_nat_lock);
	if (copy_to_user(user, &info, sizeof(info)))
		return -EFAULT;
	*len = sizeof(info);
	return 0;
}

static int krelay_get_entry(void __user *user, int *len)
{
	struct krelay_nat_entry req;
	struct krelay_nat *n;
	int err;

	if (*len < (int)sizeof(req))
		return -EINVAL;
	if (copy_from_user(&req, user, sizeof(req)))
		return -EFAULT;
	err = krelay_check_entry(&req, true);
	if (err)
		return err;
	spin_lock_bh(&krelay_nat_lock);
	n = krelay_nat_find(&req);
	if (n)
		req = n->e;
	spin_unlock_bh(&krelay_nat_lock);
	if (!n)
		return -ENOENT;
	if (copy_to_user(user, &req, sizeof(req)))
		return -EFAULT;
	*len = sizeof(req);
	return 0;
}

static int krelay_get_table(void __user *user, int *len)
{
	struct krelay_nat_table hdr;
	struct krelay_nat_entry *buf;
	struct krelay_nat *n;
	unsigned int cap, i, count = 0;
	int err = 0;

	if (*len < (int)sizeof(hdr))
		return -EINVAL;
	if (copy_from_user(&hdr, user, sizeof(hdr)))
		return -EFAULT;
	if (hdr.version != KRELAY_ABI_VERSION)
		return -EPROTO;
	cap = min_t(unsigned int, (*len - sizeof(hdr)) / sizeof(*buf), max_entries);
	buf = kvmalloc_array(max_t(unsigned int, cap, 1), sizeof(*buf), GFP_KERNEL);
	if (!buf)
		return -ENOMEM;

	spin_lock_bh(&krelay_nat_lock);
	hdr.total = krelay_nat_count;
	for (i = 0; i < KRELAY_NAT_BUCKETS && count < cap; i++)
		hlist_for_each_entry(n, &krelay_nat_by_key[i], by_key) {
			if (count == cap)
				break;
			buf[count++] = n->e;
		}
	spin_unlock_bh(&krelay_nat_lock);

	hdr.count = count;
	hdr.reserved = 0;
	if (copy_to_user(user, &hdr, sizeof(hdr)) ||
	    copy_to_user((u8 __user *)user + sizeof(hdr), buf, count * sizeof(*buf)))
		err = -EFAULT;
	else
		*len = sizeof(hdr) + count * sizeof(*buf);
	kvfree(buf);
	return err;
}

static int krelay_so_get(struct sock *sk, int optval, void __user *user, int *len)
{
	switch (optval) {
	case KRELAY_SO_GET_INFO:
		return krelay_get_info(user, len);
	case KRELAY_SO_GET_ENTRY:
		return krelay_get_entry(user, len);
	case KRELAY_SO_GET_TABLE:
		return krelay_get_table(user, len);
	}
	return -ENOPROTOOPT;
}

static struct nf_sockopt_ops krelay_sockopts = {
	.pf = PF_INET,
	.set_optmin = KRELAY_SO_BASE,
	.set_optmax = KRELAY_SO_SET_MAX + 1,
	.set = krelay_so_set,
	.get_optmin = KRELAY_SO_BASE,
	.get_optmax = KRELAY_SO_GET_MAX + 1,
	.get = krelay_so_get,
	.owner = THIS_MODULE,
};

/* ---- /proc/krelay ---- */

enum krelay_file {
	KRELAY_GPORT,
	KRELAY_REAL_IP,
	KRELAY_RELAY_IP,
	KRELAY_UDP_PORTS,
	KRELAY_TCP_PORTS,
	KRELAY_RELAY_PORTS,
	KRELAY_GPORTS,
	KRELAY_QUEUE,
	KRELAY_STATS,
	KRELAY_NR_FILES,
};

static const char *const krelay_file_names[KRELAY_NR_FILES] = {
	[KRELAY_GPORT] = "gport",
	[KRELAY_REAL_IP] = "real_ip",
	[KRELAY_RELAY_IP] = "relay_ip",
	[KRELAY_UDP_PORTS] = "udp_ports",
	[KRELAY_TCP_PORTS] = "tcp_ports",
	[KRELAY_RELAY_PORTS] = "relay_ports",
	[KRELAY_GPORTS] = "gports",
	[KRELAY_QUEUE] = "queue",
	[KRELAY_STATS] = "stats",
};

static struct proc_dir_entry *krelay_proc_dir;

static size_t krelay_show_ports(char *buf, size_t size, const struct krelay_ports *p)
{
	size_t len = 0;
	u16 i;

	for (i = 0; i < p->n; i++)
		len += scnprintf(buf + len, size - len, "%s%u", i ? "," : "", p->port[i]);
	len += scnprintf(buf + len, size - len, "\n");
	return len;
}

static size_t krelay_show_stats(char *buf, size_t size)
{
	struct krelay_stats sum = {};
	unsigned int inum = 0, count;
	int cpu;

	for_each_possible_cpu(cpu) {
		const struct krelay_stats *s = per_cpu_ptr(krelay_stats, cpu);

		sum.pre_seen += s->pre_seen;
		sum.pre_queued += s->pre_queued;
		sum.post_seen += s->post_seen;
		sum.post_queued += s->post_queued;
		sum.u1 += s->u1;
		sum.u3 += s->u3;
		sum.t1 += s->t1;
		sum.t2 += s->t2;
		sum.t3 += s->t3;
		sum.t4 += s->t4;
	}
	mutex_lock(&krelay_start_lock);
	if (krelay_net)
		inum = krelay_net->ns.inum;
	mutex_unlock(&krelay_start_lock);
	spin_lock_bh(&krelay_nat_lock);
	count = krelay_nat_count;
	spin_unlock_bh(&krelay_nat_lock);
	return scnprintf(buf, size,
			 "started %u\nnetns %u\npre_seen %llu\npre_queued %llu\npost_seen %llu\n"
			 "post_queued %llu\nu1 %llu\nu3 %llu\nt1 %llu\nt2 %llu\nt3 %llu\nt4 %llu\n"
			 "nat_entries %u\nnat_max %u\n",
			 inum != 0, inum, sum.pre_seen, sum.pre_queued, sum.post_seen,
			 sum.post_queued, sum.u1, sum.u3, sum.t1, sum.t2, sum.t3, sum.t4, count,
			 max_entries);
}

static size_t krelay_show(enum krelay_file id, char *buf, size_t size)
{
	const struct krelay_cfg *cfg;
	size_t len = 0;

	if (id == KRELAY_STATS)
		return krelay_show_stats(buf, size);
	rcu_read_lock();
	cfg = rcu_dereference(krelay_cfg);
	switch (id) {
	case KRELAY_GPORT:
		len = scnprintf(buf, size, "%u\n", cfg->gport);
		break;
	case KRELAY_REAL_IP:
		len = scnprintf(buf, size, "%pI4\n", &cfg->real_ip);
		break;
	case KRELAY_RELAY_IP:
		len = scnprintf(buf, size, "%pI4\n", &cfg->relay_ip);
		break;
	case KRELAY_UDP_PORTS:
		len = krelay_show_ports(buf, size, &cfg->udp);
		break;
	case KRELAY_TCP_PORTS:
		len = krelay_show_ports(buf, size, &cfg->tcp);
		break;
	case KRELAY_GPORTS:
		len = krelay_show_ports(buf, size, &cfg->gports);
		break;
	case KRELAY_RELAY_PORTS:
		len = scnprintf(buf, size, "%u-%u\n", cfg->relay_lo, cfg->relay_hi);
		break;
	case KRELAY_QUEUE:
		len = scnprintf(buf, size, "%u\n", cfg->queue);
		break;
	default:
		break;
	}
	rcu_read_unlock();
	return len;
}

static int krelay_parse_port(const char *s, u16 *port)
{
	u16 v;

	if (kstrtou16(s, 10, &v) || v == 0)
		return -EINVAL;
	*port = v;
	return 0;
}

static int krelay_parse_ip(const char *s, __be32 *addr)
{
	const char *end;
	size_t len = strlen(s);

	if (!len || !in4_pton(s, len, (u8 *)addr, -1, &end) || end != s + len)
		return -EINVAL;
	return 0;
}

/* "53,80, 8080": 0 to KRELAY_MAX_PORTS ports, each 1-65535; kept sorted and unique. */
static int krelay_parse_ports(char *s, struct krelay_ports *out)
{
	struct krelay_ports p = { .n = 0 };
	char *tok;
	u16 port, i, j;

	if (!*s) {
		*out = p;
		return 0;
	}
	while ((tok = strsep(&s, ",")) != NULL) {
		if (krelay_parse_port(strim(tok), &port))
			return -EINVAL;
		for (i = 0; i < p.n && p.port[i] < port; i++)
			;
		if (i < p.n && p.port[i] == port)
			continue;
		if (p.n == KRELAY_MAX_PORTS)
			return -EINVAL;
		for (j = p.n; j > i; j--)
			p.port[j] = p.port[j - 1];
		p.port[i] = port;
		p.n++;
	}
	*out = p;
	return 0;
}

/* "20000-29999": low-high, 1 <= low <= high <= 65535. */
static int krelay_parse_range(char *s, u16 *lo, u16 *hi)
{
	char *dash = strchr(s, '-');
	u16 a, b;

	if (!dash)
		return -EINVAL;
	*dash = '\0';
	if (krelay_parse_port(s, &a) || krelay_parse_port(dash + 1, &b) || a > b)
		return -EINVAL;
	*lo = a;
	*hi = b;
	return 0;
}

/* Applies text @s to the copy @cfg; on error @cfg may be half-changed and is discarded. */
static int krelay_parse(enum krelay_file id, char *s, struct krelay_cfg *cfg)
{
	u16 v;

	switch (id) {
	case KRELAY_GPORT:
		return krelay_parse_port(s, &cfg->gport);
	case KRELAY_REAL_IP:
		return krelay_parse_ip(s, &cfg->real_ip);
	case KRELAY_RELAY_IP:
		return krelay_parse_ip(s, &cfg->relay_ip);
	case KRELAY_UDP_PORTS:
		return krelay_parse_ports(s, &cfg->udp);
	case KRELAY_TCP_PORTS:
		return krelay_parse_ports(s, &cfg->tcp);
	case KRELAY_GPORTS:
		return krelay_parse_ports(s, &cfg->gports);
	case KRELAY_RELAY_PORTS:
		return krelay_parse_range(s, &cfg->relay_lo, &cfg->relay_hi);
	case KRELAY_QUEUE:
		if (kstrtou16(s, 10, &v))
			return -EINVAL;
		cfg->queue = v;
		return 0;
	default:
		return -EINVAL;
	}
}

static enum krelay_file krelay_file_id(const struct file *file)
{
	return (enum krelay_file)(uintptr_t)pde_data(file_inode(file));
}

static ssize_t krelay_proc_read(struct file *file, char __user *ubuf, size_t count,
				loff_t *ppos)
{
	char *buf;
	size_t len;
	ssize_t ret;

	buf = kmalloc(KRELAY_TEXT_MAX, GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	len = krelay_show(krelay_file_id(file), buf, KRELAY_TEXT_MAX);
	ret = simple_read_from_buffer(ubuf, count, ppos, buf, len);
	kfree(buf);
	return ret;
}

/* One write sets the whole value; a bad value returns -EINVAL and changes nothing. */
static ssize_t krelay_proc_write(struct file *file, const char __user *ubuf, size_t count,
				 loff_t *ppos)
{
	struct krelay_cfg *new, *old;
	char *text;
	int err;

	if (*ppos != 0 || count >= KRELAY_TEXT_MAX)
		return -EINVAL;
	text = memdup_user_nul(ubuf, count);
	if (IS_ERR(text))
		return PTR_ERR(text);
	new = kmalloc(sizeof(*new), GFP_KERNEL);
	if (!new) {
		kfree(text);
		return -ENOMEM;
	}

	mutex_lock(&krelay_cfg_lock);
	old = rcu_dereference_protected(krelay_cfg, lockdep_is_held(&krelay_cfg_lock));
	*new = *old;
	err = krelay_parse(krelay_file_id(file), strim(text), new);
	if (!err) {
		rcu_assign_pointer(krelay_cfg, new);
		new = old; /* freed below, after readers are done with it */
	}
	mutex_unlock(&krelay_cfg_lock);

	if (err)
		kfree(new);
	else
		kfree_rcu(new, rcu);
	kfree(text);
	return err ? err : (ssize_t)count;
}

static const struct proc_ops krelay_proc_ops = {
	.proc_read = krelay_proc_read,
	.proc_write = krelay_proc_write,
	.proc_lseek = default_llseek,
};

static int krelay_proc_init(void)
{
	int i;

	krelay_proc_dir = proc_mkdir("krelay", NULL);
	if (!krelay_proc_dir)
		return -ENOMEM;
	for (i = 0; i < KRELAY_NR_FILES; i++) {
		umode_t mode = i == KRELAY_STATS ? 0444 : 0644;

		if (!proc_create_data(krelay_file_names[i], mode, krelay_proc_dir,
				      &krelay_proc_ops, (void *)(uintptr_t)i)) {
			proc_remove(krelay_proc_dir);
			krelay_proc_dir = NULL;
			return -ENOMEM;
		}
	}
	return 0;
}

/* ---- module ---- */

static struct krelay_cfg *krelay_default_cfg(void)
{
	struct krelay_cfg *cfg = kzalloc(sizeof(*cfg), GFP_KERNEL);

	if (!cfg)
		return NULL;
	cfg->gport = 16000;
	cfg->real_ip = htonl(0xc0a8000a); /* 192.168.0.10 */
	cfg->relay_ip = 0;
	cfg->relay_lo = 20000;
	cfg->relay_hi = 29999;
	cfg->queue = 0;
	cfg->udp.n = 1;
	cfg->udp.port[0] = 53;
	cfg->tcp.n = 1;
	cfg->tcp.port[0] = 80;
	return cfg;
}

static int __init krelay_init(void)
{
	struct krelay_cfg *cfg;
	int err;

	if (max_entries < 1 || max_entries > KRELAY_NAT_MAX_BOUND) {
		pr_err("max_entries must be 1-%u\n", KRELAY_NAT_MAX_BOUND);
		return -EINVAL;
	}
	krelay_stats = alloc_percpu(struct krelay_stats);
	if (!krelay_stats)
		return -ENOMEM;
	err = -ENOMEM;
	cfg = krelay_default_cfg();
	if (!cfg)
		goto err_stats;
	RCU_INIT_POINTER(krelay_cfg, cfg);
	krelay_nat_by_key = kvcalloc(KRELAY_NAT_BUCKETS, sizeof(struct hlist_head), GFP_KERNEL);
	krelay_nat_by_port = kvcalloc(KRELAY_NAT_BUCKETS, sizeof(struct hlist_head), GFP_KERNEL);
	if (!krelay_nat_by_key || !krelay_nat_by_port)
		goto err_nat;

	err = krelay_proc_init();
	if (err)
		goto err_nat;
	err = register_pernet_subsys(&krelay_net_ops);
	if (err)
		goto err_proc;
	err = nf_register_sockopt(&krelay_sockopts);
	if (err)
		goto err_pernet;

	mutex_lock(&krelay_start_lock);
	krelay_ready = true;
	if (krelay_start_wanted)
		err = krelay_hooks_on(current->nsproxy->net_ns);
	if (err)
		krelay_ready = false;
	mutex_unlock(&krelay_start_lock);
	if (err)
		goto err_sockopt;
	pr_info("loaded (abi %u, max_entries %u)\n", KRELAY_ABI_VERSION, max_entries);
	return 0;

err_sockopt:
	nf_unregister_sockopt(&krelay_sockopts);
err_pernet:
	unregister_pernet_subsys(&krelay_net_ops);
err_proc:
	proc_remove(krelay_proc_dir);
err_nat:
	kvfree(krelay_nat_by_port);
	kvfree(krelay_nat_by_key);
	kfree(rcu_dereference_protected(krelay_cfg, 1));
	RCU_INIT_POINTER(krelay_cfg, NULL);
err_stats:
	free_percpu(krelay_stats);
	return err;
}

static void __exit krelay_exit(void)
{
	unsigned int freed;

	mutex_lock(&krelay_start_lock);
	krelay_going = true;
	krelay_hooks_off(); /* waits for hooks in flight (synchronize_net) */
	mutex_unlock(&krelay_start_lock);
	unregister_pernet_subsys(&krelay_net_ops);
	nf_unregister_sockopt(&krelay_sockopts);
	proc_remove(krelay_proc_dir); /* waits for /proc readers and writers in flight */

	freed = krelay_nat_flush();
	kvfree(krelay_nat_by_port);
	kvfree(krelay_nat_by_key);
	synchronize_rcu();
	kfree(rcu_dereference_protected(krelay_cfg, 1));
	rcu_barrier(); /* kfree_rcu() of older configurations */
	free_percpu(krelay_stats);
	pr_info("unloaded (%u NAT entries freed)\n", freed);
}

module_init(krelay_init);
module_exit(krelay_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("krelay: netfilter hooks, /proc configuration and NAT table for krelay");
MODULE_AUTHOR("krelay");
