// SPDX-License-Identifier: GPL-2.0
/*
 * nat.c - krelay.ko's NAT table: entries krelay pushes with setsockopt and admins read with
 * getsockopt (krelay_abi.h), two hash tables under one BH-safe spinlock.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/capability.h>
#include <linux/in.h>
#include <linux/kernel.h>
#include <linux/list.h>
#include <linux/log2.h>
#include <linux/mm.h>
#include <linux/moduleparam.h>
#include <linux/netfilter.h>
#include <linux/random.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/siphash.h>
#include <linux/slab.h>
#include <linux/sockptr.h>
#include <linux/spinlock.h>
#include <linux/uaccess.h>

#include "krelay.h"
#include "krelay_abi.h"

unsigned int krelay_max_entries = 65536;
module_param_named(max_entries, krelay_max_entries, uint, 0444);
MODULE_PARM_DESC(max_entries, "NAT table bound (1-1048576, default 65536)");

#define KRELAY_NAT_MAX_BOUND (1U << 20)
#define KRELAY_NAT_MIN_BUCKETS 16U

/**
 * struct krelay_nat - one entry of the table
 * @by_key: in krelay_nat_by_key, always
 * @by_port: in krelay_nat_by_port when e.relay_port != 0
 * @e: as given, flags cleared
 */
struct krelay_nat {
	struct hlist_node by_key;
	struct hlist_node by_port;
	struct krelay_nat_entry e;
};

static DEFINE_SPINLOCK(krelay_nat_lock);
static struct hlist_head *krelay_nat_by_key, *krelay_nat_by_port;
/*
 * Buckets per table: the power of two at or above max_entries, set at load, so that a full
 * table has chains of one entry on average. The hash is keyed with a random siphash key,
 * so that nobody who cannot read the key can pick entries that share a chain.
 */
unsigned int krelay_nat_buckets;
static siphash_key_t krelay_nat_key __read_mostly;
static unsigned int krelay_nat_count;
static u64 krelay_nat_adds, krelay_nat_dels, krelay_nat_full;

static u32 krelay_key_hash(const struct krelay_nat_entry *e)
{
	return siphash_4u32((__force u32)e->client_addr,
			    ((__force u32)e->client_port << 16) | (__force u32)e->service_port,
			    (__force u32)e->relay_addr, e->protocol, &krelay_nat_key) &
	       (krelay_nat_buckets - 1);
}

static u32 krelay_port_hash(u8 protocol, __be16 relay_port)
{
	return siphash_2u32(protocol, (__force u32)relay_port, &krelay_nat_key) &
	       (krelay_nat_buckets - 1);
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

/* Reads and checks a GET_ENTRY or SET_DEL request of @len bytes into @req. */
static int krelay_read_request(sockptr_t arg, unsigned int len, struct krelay_nat_entry *req)
{
	if (len < sizeof(*req))
		return -EINVAL;
	if (copy_from_sockptr(req, arg, sizeof(*req)))
		return -EFAULT;
	return krelay_check_entry(req, true);
}

/* SET_ADD: adds the entry, or replaces the one with the same key; relay ports are unique. */
static int krelay_nat_add(sockptr_t arg, unsigned int len)
{
	struct krelay_nat *n, *old;
	int err;

	if (len < sizeof(n->e))
		return -EINVAL;
	/* Charged to the caller's memory cgroup, as the table is its doing. */
	n = kmalloc(sizeof(*n), GFP_KERNEL_ACCOUNT);
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
	if (n->e.relay_port) {
		/* A relay port names one flow: the server-side lookup must find one entry. */
		struct krelay_nat_entry by_port = { .protocol = n->e.protocol,
						    .flags = KRELAY_F_BY_RELAY_PORT,
						    .relay_port = n->e.relay_port };
		struct krelay_nat *other = krelay_nat_find(&by_port);

		if (other && other != old) {
			spin_unlock_bh(&krelay_nat_lock);
			err = -EEXIST;
			goto out_free;
		}
	}
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
	if (krelay_nat_count >= krelay_max_entries) {
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

/* SET_DEL: removes the entry named by key or relay port. */
static int krelay_nat_del(sockptr_t arg, unsigned int len)
{
	struct krelay_nat_entry req;
	struct krelay_nat *n;
	int err;

	err = krelay_read_request(arg, len, &req);
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
	for (i = 0; i < krelay_nat_buckets; i++) {
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

/**
 * krelay_so_set() - setsockopt(SOL_IP, KRELAY_SO_SET_*): add, remove, flush
 * @sk: the caller's socket (any AF_INET socket)
 * @optval: the option number
 * @arg: the caller's buffer
 * @len: its length
 *
 * Context: process context; needs CAP_NET_ADMIN in the initial user namespace.
 * Return: 0 or a negative errno (krelay_abi.h).
 */
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
	info.max_entries = krelay_max_entries;
	info.started = krelay_hooks_netns() != 0;
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

	if (*len < 0)
		return -EINVAL;
	err = krelay_read_request(USER_SOCKPTR(user), *len, &req);
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

/*
 * GET_TABLE holds the lock for at most this many entries (4 KiB) or buckets at a time: never
 * for the whole table, and the kernel buffer of a dump is one small allocation whatever the
 * size of the table or of the caller's buffer.
 */
#define KRELAY_DUMP_CHUNK 64
#define KRELAY_DUMP_BUCKETS 1024

/**
 * struct krelay_dump - where a GET_TABLE dump is between two holds of the lock
 * @bucket: the next bucket of krelay_nat_by_key to copy
 * @skip: entries of that bucket already copied (when a bucket was split, see below)
 */
struct krelay_dump {
	unsigned int bucket, skip;
};

/*
 * Copies up to @room entries (room <= KRELAY_DUMP_CHUNK) into @buf from where @d is. Whole
 * buckets only, so that an entry in the table during the whole dump is copied exactly once,
 * except that a bucket is split when it does not fit in an empty @buf: a bucket longer than
 * a chunk (which the random hash key makes practically impossible), or the last entries that
 * fit the caller's buffer. Returns how many were copied; @total gets the table's count.
 */
static unsigned int krelay_dump_chunk(struct krelay_dump *d, struct krelay_nat_entry *buf,
				      unsigned int room, u32 *total)
{
	unsigned int got = 0, scanned = 0, len, left, take, i;
	struct krelay_nat *n;

	spin_lock_bh(&krelay_nat_lock);
	*total = krelay_nat_count;
	while (d->bucket < krelay_nat_buckets && got < room && scanned++ < KRELAY_DUMP_BUCKETS) {
		struct hlist_head *head = &krelay_nat_by_key[d->bucket];

		len = 0;
		hlist_for_each_entry(n, head, by_key)
			len++;
		left = len - min(len, d->skip);
		if (left > room - got && got)
			break; /* the next chunk starts with this bucket */
		take = min(left, room - got);
		i = 0;
		hlist_for_each_entry(n, head, by_key) {
			if (i >= d->skip + take)
				break;
			if (i >= d->skip)
				buf[got++] = n->e;
			i++;
		}
		if (take == left) {
			d->bucket++;
			d->skip = 0;
		} else {
			d->skip += take;
		}
	}
	spin_unlock_bh(&krelay_nat_lock);
	return got;
}

/*
 * GET_TABLE: as many entries as fit in the caller's buffer, copied in chunks of
 * KRELAY_DUMP_CHUNK with the lock dropped in between (not one snapshot: an entry added or
 * removed during the call may or may not be in it), then the header with count and total.
 */
static int krelay_get_table(void __user *user, int *len)
{
	struct krelay_nat_table hdr;
	struct krelay_nat_entry *buf;
	struct krelay_dump d = {};
	unsigned int room, got, count = 0;
	u32 total = 0;
	int err = 0;

	if (*len < (int)sizeof(hdr))
		return -EINVAL;
	if (copy_from_user(&hdr, user, sizeof(hdr)))
		return -EFAULT;
	if (hdr.version != KRELAY_ABI_VERSION)
		return -EPROTO;
	room = (*len - sizeof(hdr)) / sizeof(*buf);
	buf = kmalloc_array(KRELAY_DUMP_CHUNK, sizeof(*buf), GFP_KERNEL_ACCOUNT);
	if (!buf)
		return -ENOMEM;

	do {
		got = krelay_dump_chunk(&d, buf, min_t(unsigned int, room - count,
						       KRELAY_DUMP_CHUNK), &total);
		if (copy_to_user((u8 __user *)user + sizeof(hdr) + count * sizeof(*buf), buf,
				 got * sizeof(*buf))) {
			err = -EFAULT;
			goto out;
		}
		count += got;
		if (fatal_signal_pending(current)) {
			err = -EINTR;
			goto out;
		}
		cond_resched();
	} while (count < room && d.bucket < krelay_nat_buckets);

	hdr.count = count;
	hdr.total = total;
	hdr.reserved = 0;
	if (copy_to_user(user, &hdr, sizeof(hdr)))
		err = -EFAULT;
	else
		*len = sizeof(hdr) + count * sizeof(*buf);
out:
	kfree(buf);
	return err;
}

/**
 * krelay_so_get() - getsockopt(SOL_IP, KRELAY_SO_GET_*): info, one entry, the table
 * @sk: the caller's socket (any AF_INET socket)
 * @optval: the option number
 * @user: the caller's buffer
 * @len: its length in; the length written out
 *
 * Context: process context; GET_ENTRY and GET_TABLE need CAP_NET_ADMIN in the initial user
 * namespace (the table is global to the module), GET_INFO (counts only) is open to anyone.
 * Return: 0 or a negative errno (krelay_abi.h).
 */
static int krelay_so_get(struct sock *sk, int optval, void __user *user, int *len)
{
	switch (optval) {
	case KRELAY_SO_GET_INFO:
		return krelay_get_info(user, len);
	case KRELAY_SO_GET_ENTRY:
		/* Entries name clients and servers: for admins only, as conntrack's. */
		if (!capable(CAP_NET_ADMIN))
			return -EPERM;
		return krelay_get_entry(user, len);
	case KRELAY_SO_GET_TABLE:
		if (!capable(CAP_NET_ADMIN))
			return -EPERM;
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

/**
 * krelay_nat_entries() - how many entries the table holds now
 *
 * Return: the count.
 */
unsigned int krelay_nat_entries(void)
{
	unsigned int count;

	spin_lock_bh(&krelay_nat_lock);
	count = krelay_nat_count;
	spin_unlock_bh(&krelay_nat_lock);
	return count;
}

/**
 * krelay_nat_init() - checks max_entries, allocates the table, registers the sockopts
 *
 * Return: 0 or a negative errno; nothing to undo on error.
 */
int krelay_nat_init(void)
{
	int err = -ENOMEM;

	if (krelay_max_entries < 1 || krelay_max_entries > KRELAY_NAT_MAX_BOUND) {
		pr_err("max_entries must be 1-%u\n", KRELAY_NAT_MAX_BOUND);
		return -EINVAL;
	}
	get_random_bytes(&krelay_nat_key, sizeof(krelay_nat_key));
	krelay_nat_buckets = roundup_pow_of_two(max(krelay_max_entries, KRELAY_NAT_MIN_BUCKETS));
	krelay_nat_by_key = kvcalloc(krelay_nat_buckets, sizeof(struct hlist_head), GFP_KERNEL);
	krelay_nat_by_port = kvcalloc(krelay_nat_buckets, sizeof(struct hlist_head), GFP_KERNEL);
	if (!krelay_nat_by_key || !krelay_nat_by_port)
		goto err_free;
	err = nf_register_sockopt(&krelay_sockopts);
	if (err)
		goto err_free;
	pr_debug("NAT table: %u buckets\n", krelay_nat_buckets);
	return 0;

err_free:
	kvfree(krelay_nat_by_port);
	kvfree(krelay_nat_by_key);
	krelay_nat_by_port = NULL;
	krelay_nat_by_key = NULL;
	return err;
}

/**
 * krelay_nat_exit() - unregisters the sockopts and frees the table
 *
 * A sockopt call holds a module reference while it runs, so none is in flight at exit.
 *
 * Return: how many entries were freed.
 */
unsigned int krelay_nat_exit(void)
{
	unsigned int freed;

	nf_unregister_sockopt(&krelay_sockopts);
	freed = krelay_nat_flush();
	kvfree(krelay_nat_by_port);
	kvfree(krelay_nat_by_key);
	krelay_nat_by_port = NULL;
	krelay_nat_by_key = NULL;
	return freed;
}
