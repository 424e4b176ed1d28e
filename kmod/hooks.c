// SPDX-License-Identifier: GPL-2.0
/*
 * hooks.c - the netfilter hooks of krelay.ko: which packets go to krelay's NFQUEUE, and
 * registering the hooks in one network namespace (start) or none (stop).
 *
 * In krelay's datapath the kernel carries established flows (nftables NAT for UDP, sk_lookup
 * or TPROXY and transparent sockets for TCP). User space sees only each new UDP flow's first
 * packet, which krelay's nftables chain at raw priority marks with first_mark, and every
 * packet of the services that have a packet script (udp_ports, tcp_ports). The hooks select
 * exactly those:
 *   PRE_ROUTING, raw priority + 1 (after nftables' raw chain, so the mark is set; before
 *   conntrack):
 *     first  udp  first_mark != 0 && skb->mark == first_mark
 *     U1     udp  daddr == relay_ip && dport in udp_ports
 *     T1     tcp  daddr == relay_ip && dport in tcp_ports
 *   POST_ROUTING, mangle priority:
 *     U3     udp  sport in udp_ports                      (the server's replies)
 *     T2     tcp  saddr == relay_ip && sport in tcp_ports (the relay's listener answering)
 * and return NF_QUEUE_NR(queue) | NF_VERDICT_FLAG_QUEUE_BYPASS for those, NF_ACCEPT for
 * everything else. Non-first fragments carry no ports and are accepted, as iptables' port
 * matches do not match them.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/delay.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/kernel.h>
#include <linux/mutex.h>
#include <linux/netfilter.h>
#include <linux/netfilter_ipv4.h>
#include <linux/percpu.h>
#include <linux/skbuff.h>
#include <linux/sched.h>
#include <linux/nsproxy.h>
#include <net/ip.h>
#include <net/net_namespace.h>

#include "krelay.h"

/* ---- selection ---- */

const char *const krelay_counter_names[KRELAY_NR_COUNTERS] = {
	[KRELAY_CNT_PRE_SEEN] = "pre_seen",
	[KRELAY_CNT_PRE_QUEUED] = "pre_queued",
	[KRELAY_CNT_POST_SEEN] = "post_seen",
	[KRELAY_CNT_POST_QUEUED] = "post_queued",
	[KRELAY_CNT_FIRST] = "first",
	[KRELAY_CNT_U1] = "u1",
	[KRELAY_CNT_U3] = "u3",
	[KRELAY_CNT_T1] = "t1",
	[KRELAY_CNT_T2] = "t2",
};

struct krelay_counters {
	u64 n[KRELAY_NR_COUNTERS];
};

static struct krelay_counters __percpu *krelay_counters;

/**
 * struct krelay_pkt - what the selection looks at
 * @skb: the packet
 * @iph: its IPv4 header
 * @sport: TCP or UDP source port, host order
 * @dport: destination port, host order
 */
struct krelay_pkt {
	const struct sk_buff *skb;
	const struct iphdr *iph;
	u16 sport, dport;
};

/**
 * struct krelay_hook_kind - one hook: its selection and its counters
 * @select: returns the counter of the match that queues @pkt, or KRELAY_CNT_NONE
 * @seen: counter of the packets through the hook
 * @queued: counter of the packets it queues
 */
struct krelay_hook_kind {
	enum krelay_counter (*select)(const struct krelay_cfg *cfg, const struct krelay_pkt *pkt);
	enum krelay_counter seen, queued;
};

/* Set while the hooks are being unregistered: they accept everything (read without a lock). */
static bool krelay_quiesce;

/* How long krelay gets to return the verdicts of packets queued before a stop. */
#define KRELAY_QUIESCE_MS 500

static enum krelay_counter krelay_select_pre(const struct krelay_cfg *cfg,
					     const struct krelay_pkt *pkt)
{
	const struct iphdr *iph = pkt->iph;
	bool to_relay = cfg->relay_ip && iph->daddr == cfg->relay_ip;

	if (iph->protocol == IPPROTO_UDP) {
		if (cfg->first_mark && pkt->skb->mark == cfg->first_mark)
			return KRELAY_CNT_FIRST;
		if (to_relay && krelay_ports_has(&cfg->udp, pkt->dport))
			return KRELAY_CNT_U1;
		return KRELAY_CNT_NONE;
	}
	if (to_relay && krelay_ports_has(&cfg->tcp, pkt->dport))
		return KRELAY_CNT_T1;
	return KRELAY_CNT_NONE;
}

static enum krelay_counter krelay_select_post(const struct krelay_cfg *cfg,
					      const struct krelay_pkt *pkt)
{
	const struct iphdr *iph = pkt->iph;

	if (iph->protocol == IPPROTO_UDP) {
		if (krelay_ports_has(&cfg->udp, pkt->sport))
			return KRELAY_CNT_U3;
		return KRELAY_CNT_NONE;
	}
	if (cfg->relay_ip && iph->saddr == cfg->relay_ip && krelay_ports_has(&cfg->tcp, pkt->sport))
		return KRELAY_CNT_T2;
	return KRELAY_CNT_NONE;
}

/* TCP or UDP, and not a non-first fragment (which carries no ports). */
static bool krelay_pkt_parse(const struct sk_buff *skb, struct krelay_pkt *pkt)
{
	const struct iphdr *iph = ip_hdr(skb);
	__be16 buf[2];
	const __be16 *ports;

	if (iph->protocol != IPPROTO_UDP && iph->protocol != IPPROTO_TCP)
		return false;
	if (iph->frag_off & htons(IP_OFFSET))
		return false;
	ports = skb_header_pointer(skb, skb_network_offset(skb) + iph->ihl * 4, sizeof(buf), buf);
	if (!ports)
		return false;
	pkt->skb = skb;
	pkt->iph = iph;
	pkt->sport = ntohs(ports[0]);
	pkt->dport = ntohs(ports[1]);
	return true;
}

/**
 * krelay_hook() - the netfilter hook function of both hooks
 * @priv: the &struct krelay_hook_kind of the hook
 * @skb: the packet
 * @state: where it is (unused: the kind says it)
 *
 * Context: softirq or BH disabled; takes no lock, never sleeps.
 * Return: NF_QUEUE_NR(queue) | NF_VERDICT_FLAG_QUEUE_BYPASS for a selected packet, else
 * NF_ACCEPT.
 */
static unsigned int krelay_hook(void *priv, struct sk_buff *skb,
				const struct nf_hook_state *state)
{
	const struct krelay_hook_kind *kind = priv;
	const struct krelay_cfg *cfg;
	enum krelay_counter match;
	struct krelay_pkt pkt;
	unsigned int verdict;

	this_cpu_inc(krelay_counters->n[kind->seen]);
	if (READ_ONCE(krelay_quiesce) || !krelay_pkt_parse(skb, &pkt))
		return NF_ACCEPT;

	rcu_read_lock();
	cfg = rcu_dereference(krelay_cfg);
	match = kind->select(cfg, &pkt);
	verdict = NF_QUEUE_NR(cfg->queue) | NF_VERDICT_FLAG_QUEUE_BYPASS;
	rcu_read_unlock();
	if (match == KRELAY_CNT_NONE)
		return NF_ACCEPT;
	this_cpu_inc(krelay_counters->n[match]);
	this_cpu_inc(krelay_counters->n[kind->queued]);
	return verdict;
}

static struct krelay_hook_kind krelay_pre = {
	.select = krelay_select_pre,
	.seen = KRELAY_CNT_PRE_SEEN,
	.queued = KRELAY_CNT_PRE_QUEUED,
};

static struct krelay_hook_kind krelay_post = {
	.select = krelay_select_post,
	.seen = KRELAY_CNT_POST_SEEN,
	.queued = KRELAY_CNT_POST_QUEUED,
};

static const struct nf_hook_ops krelay_hook_ops[] = {
	{
		.hook = krelay_hook,
		.priv = &krelay_pre,
		.pf = NFPROTO_IPV4,
		.hooknum = NF_INET_PRE_ROUTING,
		/*
		 * One step after nftables' chains at raw priority (krelay's marks the first packet
		 * of a new UDP flow): at the same priority, a hook registered later runs first, so
		 * a chain made before start would run after the hook. Before conntrack.
		 */
		.priority = NF_IP_PRI_RAW + 1,
	},
	{
		.hook = krelay_hook,
		.priv = &krelay_post,
		.pf = NFPROTO_IPV4,
		.hooknum = NF_INET_POST_ROUTING,
		.priority = NF_IP_PRI_MANGLE,
	},
};

/**
 * krelay_counters_sum() - the hook counters summed over the CPUs
 * @sum: filled, indexed by &enum krelay_counter
 */
void krelay_counters_sum(u64 sum[KRELAY_NR_COUNTERS])
{
	int cpu, i;

	memset(sum, 0, KRELAY_NR_COUNTERS * sizeof(*sum));
	for_each_possible_cpu(cpu) {
		const struct krelay_counters *c = per_cpu_ptr(krelay_counters, cpu);

		for (i = 0; i < KRELAY_NR_COUNTERS; i++)
			sum[i] += c->n[i];
	}
}

/* ---- start: hooks on and off ---- */

/*
 * Writers (start writes, the pernet exit, module init and exit) hold krelay_start_lock, and
 * a stop sleeps KRELAY_QUIESCE_MS under it. Readers that anyone may be (the start parameter,
 * /proc/krelay/stats, GET_INFO) never take it: they read krelay_ready, krelay_start_wanted
 * and krelay_net_inum with READ_ONCE(), which writers set with WRITE_ONCE() under the lock.
 */
static DEFINE_MUTEX(krelay_start_lock);
static bool krelay_ready;	  /* module_init done; start writes act at once */
static bool krelay_going;	  /* module_exit began; start writes fail */
static unsigned int krelay_start_wanted; /* start= given before module_init ran */
static struct net *krelay_net;	  /* where the hooks are registered, NULL when stopped */
static unsigned int krelay_net_inum; /* its inode number, 0 when stopped */

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
	WRITE_ONCE(krelay_net_inum, net->ns.inum);
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
	WRITE_ONCE(krelay_net_inum, 0);
}

/**
 * krelay_start_write() - a write to the start parameter
 * @v: 1 registers the hooks in the writer's network namespace, 0 unregisters them
 *
 * Before module init has finished (insmod start=1) the value is kept for
 * krelay_hooks_ready().
 *
 * Context: process context; sleeps (about KRELAY_QUIESCE_MS when stopping).
 * Return: 0, -EINVAL for a value other than 0 or 1, -EBUSY when started in another
 * namespace, -ENODEV during module exit, or the error of nf_register_net_hooks().
 */
int krelay_start_write(unsigned int v)
{
	int err = 0;

	if (v > 1)
		return -EINVAL;
	mutex_lock(&krelay_start_lock);
	if (krelay_going)
		err = -ENODEV;
	else if (!krelay_ready)
		WRITE_ONCE(krelay_start_wanted, v); /* insmod start=N: krelay_hooks_ready() applies it */
	else if (v)
		err = krelay_hooks_on(current->nsproxy->net_ns);
	else
		krelay_hooks_off();
	mutex_unlock(&krelay_start_lock);
	return err;
}

/**
 * krelay_start_read() - the value of the start parameter
 *
 * Context: any; takes no lock (a stop in progress still reads 1).
 * Return: 1 when the hooks are registered (before module init has finished: the value
 * given to insmod), else 0.
 */
unsigned int krelay_start_read(void)
{
	if (!READ_ONCE(krelay_ready))
		return READ_ONCE(krelay_start_wanted);
	return READ_ONCE(krelay_net_inum) != 0;
}

/**
 * krelay_hooks_netns() - where the hooks are
 *
 * Context: any; takes no lock (a stop in progress still reads the namespace).
 * Return: the inode number of the network namespace of the hooks, 0 when stopped.
 */
unsigned int krelay_hooks_netns(void)
{
	return READ_ONCE(krelay_net_inum);
}

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

/**
 * krelay_hooks_init() - allocates the counters and follows network namespaces
 *
 * The hooks stay unregistered until krelay_hooks_ready().
 *
 * Return: 0 or a negative errno; nothing to undo on error.
 */
int krelay_hooks_init(void)
{
	int err;

	krelay_counters = alloc_percpu(struct krelay_counters);
	if (!krelay_counters)
		return -ENOMEM;
	err = register_pernet_subsys(&krelay_net_ops);
	if (err) {
		free_percpu(krelay_counters);
		krelay_counters = NULL;
	}
	return err;
}

/**
 * krelay_hooks_ready() - the module is set up: start writes act from now on
 *
 * Registers the hooks in the caller's (insmod's) namespace if start=1 was given.
 *
 * Return: 0, or the error of that registration (the module then fails to load).
 */
int krelay_hooks_ready(void)
{
	int err = 0;

	mutex_lock(&krelay_start_lock);
	if (krelay_start_wanted)
		err = krelay_hooks_on(current->nsproxy->net_ns);
	if (!err)
		WRITE_ONCE(krelay_ready, true);
	mutex_unlock(&krelay_start_lock);
	return err;
}

/**
 * krelay_hooks_going() - module exit: unregisters the hooks and refuses start writes
 *
 * Waits for hooks in flight (synchronize_net() in the unregistration).
 */
void krelay_hooks_going(void)
{
	mutex_lock(&krelay_start_lock);
	krelay_going = true;
	krelay_hooks_off();
	mutex_unlock(&krelay_start_lock);
}

/**
 * krelay_hooks_exit() - undoes krelay_hooks_init(), after krelay_hooks_going()
 */
void krelay_hooks_exit(void)
{
	unregister_pernet_subsys(&krelay_net_ops);
	free_percpu(krelay_counters);
	krelay_counters = NULL;
}
