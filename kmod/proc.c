// SPDX-License-Identifier: GPL-2.0
/*
 * proc.c - krelay.ko's configuration: the RCU-published snapshot the hooks read, the text
 * files of /proc/krelay that show and set it, and /sys/module/krelay/parameters/start.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/in.h>
#include <linux/inet.h>
#include <linux/kernel.h>
#include <linux/moduleparam.h>
#include <linux/mutex.h>
#include <linux/nsproxy.h>
#include <linux/proc_fs.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <net/net_namespace.h>
#include <net/route.h>

#include "krelay.h"

/* ---- configuration (RCU) ---- */

#define KRELAY_TEXT_MAX 1024 /* longest /proc text: 128 ports * 6 characters + slack */

struct krelay_cfg __rcu *krelay_cfg;
static DEFINE_MUTEX(krelay_cfg_lock);

/**
 * krelay_ports_has() - whether a port is in a set
 * @p: the set
 * @port: host order
 *
 * Return: true when @port is in @p.
 */
bool krelay_ports_has(const struct krelay_ports *p, u16 port)
{
	u16 i;

	for (i = 0; i < p->n && p->port[i] <= port; i++)
		if (p->port[i] == port)
			return true;
	return false;
}

/**
 * krelay_cfg_init() - publishes the default configuration
 *
 * Return: 0 or -ENOMEM.
 */
int krelay_cfg_init(void)
{
	struct krelay_cfg *cfg = kzalloc(sizeof(*cfg), GFP_KERNEL);

	if (!cfg)
		return -ENOMEM;
	cfg->gport = 16000;
	cfg->real_ip = htonl(0xc0a8000a); /* 192.168.0.10 */
	cfg->relay_ip = 0;
	cfg->first_mark = 0;
	cfg->queue = 0;
	cfg->udp.n = 1;
	cfg->udp.port[0] = 53;
	cfg->tcp.n = 1;
	cfg->tcp.port[0] = 80;
	RCU_INIT_POINTER(krelay_cfg, cfg);
	return 0;
}

/**
 * krelay_cfg_exit() - frees the configuration, once no hook and no /proc writer can use it
 *
 * Also waits for the kfree_rcu() of the snapshots that writes replaced.
 */
void krelay_cfg_exit(void)
{
	synchronize_rcu();
	kfree(rcu_dereference_protected(krelay_cfg, 1));
	RCU_INIT_POINTER(krelay_cfg, NULL);
	rcu_barrier();
}

/* ---- /proc/krelay ---- */

static struct proc_dir_entry *krelay_proc_dir;

static size_t krelay_show_u16(char *buf, size_t size, const void *v)
{
	return scnprintf(buf, size, "%u\n", *(const u16 *)v);
}

static size_t krelay_show_u32(char *buf, size_t size, const void *v)
{
	return scnprintf(buf, size, "%u\n", *(const u32 *)v);
}

static size_t krelay_show_ip(char *buf, size_t size, const void *v)
{
	return scnprintf(buf, size, "%pI4\n", v);
}

static size_t krelay_show_ports(char *buf, size_t size, const void *v)
{
	const struct krelay_ports *p = v;
	size_t len = 0;
	u16 i;

	for (i = 0; i < p->n; i++)
		len += scnprintf(buf + len, size - len, "%s%u", i ? "," : "", p->port[i]);
	len += scnprintf(buf + len, size - len, "\n");
	return len;
}

/* A port: 1-65535. */
static int krelay_parse_port(char *s, void *port)
{
	u16 v;

	if (kstrtou16(s, 10, &v) || v == 0)
		return -EINVAL;
	*(u16 *)port = v;
	return 0;
}

/* A queue number: 0-65535. */
static int krelay_parse_queue(char *s, void *queue)
{
	return kstrtou16(s, 10, queue) ? -EINVAL : 0;
}

/* A dotted quad, nothing around it. */
static int krelay_parse_ip(char *s, void *addr)
{
	const char *end;
	size_t len = strlen(s);

	if (!len || !in4_pton(s, len, addr, -1, &end) || end != s + len)
		return -EINVAL;
	return 0;
}

/*
 * The server krelay relays to: a unicast address that is not this host's, as krelay's own
 * configuration check has it (src/config/real_ip.ts). Loopback (127/8), 0/8 (0.0.0.0 among
 * them), the limited broadcast, multicast (224/4), and an address that is local or a subnet
 * broadcast in the writer's network namespace would turn the relay back on itself or reach
 * no one server. The writer's namespace is where krelay runs and relays (start registers
 * the hooks there too); init_net's addresses say nothing about a relay in a container.
 * inet_addr_type() reads the namespace's tables under RCU: no sleep, no lock of ours.
 */
static int krelay_parse_real_ip(char *s, void *addr)
{
	__be32 a;

	if (krelay_parse_ip(s, &a))
		return -EINVAL;
	/* 0/8 by hand: ipv4_is_zeronet() means 0.0.0.0 alone (0/8 became assignable). */
	if (ipv4_is_loopback(a) || (a & htonl(0xff000000)) == 0 || ipv4_is_lbcast(a) ||
	    ipv4_is_multicast(a))
		return -EINVAL;
	switch (inet_addr_type(current->nsproxy->net_ns, a)) {
	case RTN_LOCAL:
	case RTN_BROADCAST:
		return -EINVAL;
	}
	*(__be32 *)addr = a;
	return 0;
}

/* "53,80, 8080": 0 to KRELAY_MAX_PORTS ports, each 1-65535; kept sorted and unique. */
static int krelay_parse_ports(char *s, void *out)
{
	struct krelay_ports p = { .n = 0 };
	char *tok;
	u16 port, i, j;

	if (!*s) {
		*(struct krelay_ports *)out = p;
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
	*(struct krelay_ports *)out = p;
	return 0;
}

/* A packet mark: decimal ("19283") or hex after 0x ("0x4b53"), 0-0xffffffff. */
static int krelay_parse_mark(char *s, void *mark)
{
	const char *digits = "0123456789";
	unsigned int base = 10;

	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		s += 2;
		digits = "0123456789abcdefABCDEF";
		base = 16;
	}
	/* Digits only: kstrtou32() alone would take "+1" or "0x0x1". */
	if (!*s || strspn(s, digits) != strlen(s) || kstrtou32(s, base, mark))
		return -EINVAL;
	return 0;
}

/**
 * struct krelay_file - one file of /proc/krelay: a field of &struct krelay_cfg as text
 * @name: the file's name
 * @offset: the field's offset in &struct krelay_cfg
 * @show: writes the field's text and a newline into @buf; returns the length
 * @parse: sets the field from the text @s, or returns -EINVAL; NULL: read-only
 */
struct krelay_file {
	const char *name;
	size_t offset;
	size_t (*show)(char *buf, size_t size, const void *field);
	int (*parse)(char *s, void *field);
};

#define KRELAY_FIELD(n, f, sh, pa) \
	{ .name = n, .offset = offsetof(struct krelay_cfg, f), .show = sh, .parse = pa }

/* The configuration's files; "stats" (no field) is last. */
static const struct krelay_file krelay_files[] = {
	KRELAY_FIELD("gport", gport, krelay_show_u16, krelay_parse_port),
	KRELAY_FIELD("real_ip", real_ip, krelay_show_ip, krelay_parse_real_ip),
	KRELAY_FIELD("relay_ip", relay_ip, krelay_show_ip, krelay_parse_ip),
	KRELAY_FIELD("udp_ports", udp, krelay_show_ports, krelay_parse_ports),
	KRELAY_FIELD("tcp_ports", tcp, krelay_show_ports, krelay_parse_ports),
	KRELAY_FIELD("first_mark", first_mark, krelay_show_u32, krelay_parse_mark),
	KRELAY_FIELD("queue", queue, krelay_show_u16, krelay_parse_queue),
	{ .name = "stats" },
};

static size_t krelay_show_stats(char *buf, size_t size)
{
	u64 sum[KRELAY_NR_COUNTERS];
	unsigned int inum = krelay_hooks_netns();
	size_t len;
	int i;

	krelay_counters_sum(sum);
	len = scnprintf(buf, size, "started %u\nnetns %u\n", inum != 0, inum);
	for (i = 0; i < KRELAY_NR_COUNTERS; i++)
		len += scnprintf(buf + len, size - len, "%s %llu\n", krelay_counter_names[i],
				 sum[i]);
	len += scnprintf(buf + len, size - len, "nat_entries %u\nnat_max %u\nnat_buckets %u\n",
			 krelay_nat_entries(), krelay_max_entries, krelay_nat_buckets);
	return len;
}

static size_t krelay_show(const struct krelay_file *f, char *buf, size_t size)
{
	const struct krelay_cfg *cfg;
	size_t len;

	if (!f->show)
		return krelay_show_stats(buf, size);
	rcu_read_lock();
	cfg = rcu_dereference(krelay_cfg);
	len = f->show(buf, size, (const u8 *)cfg + f->offset);
	rcu_read_unlock();
	return len;
}

static const struct krelay_file *krelay_file_of(const struct file *file)
{
	return pde_data(file_inode(file));
}

/**
 * krelay_proc_read() - read() of a /proc/krelay file: its value and a newline
 * @file: the file
 * @ubuf: the reader's buffer
 * @count: its size
 * @ppos: the offset
 *
 * Return: bytes read or a negative errno.
 */
static ssize_t krelay_proc_read(struct file *file, char __user *ubuf, size_t count,
				loff_t *ppos)
{
	char *buf;
	size_t len;
	ssize_t ret;

	buf = kmalloc(KRELAY_TEXT_MAX, GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	len = krelay_show(krelay_file_of(file), buf, KRELAY_TEXT_MAX);
	ret = simple_read_from_buffer(ubuf, count, ppos, buf, len);
	kfree(buf);
	return ret;
}

/**
 * krelay_proc_write() - write() of a /proc/krelay file: sets the whole value
 * @file: the file
 * @ubuf: the text
 * @count: its length, less than KRELAY_TEXT_MAX
 * @ppos: the offset, which must be 0
 *
 * A bad value changes nothing.
 *
 * Return: @count, or -EINVAL for a bad value, length or offset, or another negative errno.
 */
static ssize_t krelay_proc_write(struct file *file, const char __user *ubuf, size_t count,
				 loff_t *ppos)
{
	const struct krelay_file *f = krelay_file_of(file);
	struct krelay_cfg *new, *old;
	char *text;
	int err;

	if (!f->parse || *ppos != 0 || count >= KRELAY_TEXT_MAX)
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
	/* On error @new may be half-changed: it is discarded. */
	err = f->parse(strim(text), (u8 *)new + f->offset);
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

/**
 * krelay_proc_init() - creates /proc/krelay and its files
 *
 * Return: 0 or -ENOMEM; nothing to undo on error.
 */
int krelay_proc_init(void)
{
	const struct krelay_file *f;

	krelay_proc_dir = proc_mkdir("krelay", NULL);
	if (!krelay_proc_dir)
		return -ENOMEM;
	for (f = krelay_files; f < krelay_files + ARRAY_SIZE(krelay_files); f++) {
		if (!proc_create_data(f->name, f->parse ? 0644 : 0444, krelay_proc_dir,
				      &krelay_proc_ops, (void *)f)) {
			proc_remove(krelay_proc_dir);
			krelay_proc_dir = NULL;
			return -ENOMEM;
		}
	}
	return 0;
}

/**
 * krelay_proc_exit() - removes /proc/krelay, waiting for readers and writers in flight
 */
void krelay_proc_exit(void)
{
	proc_remove(krelay_proc_dir);
	krelay_proc_dir = NULL;
}

/* ---- /sys/module/krelay/parameters/start ---- */

static unsigned int krelay_start_param; /* unused: the value lives in hooks.c */

/**
 * krelay_start_set() - a write to /sys/module/krelay/parameters/start (or insmod start=)
 * @val: "0" or "1"
 * @kp: the parameter
 *
 * Return: 0 or a negative errno (krelay_start_write()).
 */
static int krelay_start_set(const char *val, const struct kernel_param *kp)
{
	unsigned int v;
	int err;

	err = kstrtouint(val, 10, &v);
	if (err)
		return err;
	return krelay_start_write(v);
}

/**
 * krelay_start_get() - a read of /sys/module/krelay/parameters/start
 * @buffer: where the text goes
 * @kp: the parameter
 *
 * Return: the length of the text, "0\n" or "1\n".
 */
static int krelay_start_get(char *buffer, const struct kernel_param *kp)
{
	return sprintf(buffer, "%u\n", krelay_start_read());
}

static const struct kernel_param_ops krelay_start_ops = {
	.set = krelay_start_set,
	.get = krelay_start_get,
};

module_param_cb(start, &krelay_start_ops, &krelay_start_param, 0644);
MODULE_PARM_DESC(start, "0: hooks unregistered (default); 1: hooks registered in the writer's netns");
