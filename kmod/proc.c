// SPDX-License-Identifier: GPL-2.0
/*
 * proc.c - krelay.ko's configuration: the RCU-published snapshot the hooks read, the text
 * files of /proc/krelay that show and set it, and /sys/module/krelay/parameters/start.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/inet.h>
#include <linux/kernel.h>
#include <linux/moduleparam.h>
#include <linux/mutex.h>
#include <linux/proc_fs.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>

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

enum krelay_file {
	KRELAY_GPORT,
	KRELAY_REAL_IP,
	KRELAY_RELAY_IP,
	KRELAY_UDP_PORTS,
	KRELAY_TCP_PORTS,
	KRELAY_FIRST_MARK,
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
	[KRELAY_FIRST_MARK] = "first_mark",
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
	case KRELAY_FIRST_MARK:
		len = scnprintf(buf, size, "%u\n", cfg->first_mark);
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

/* A packet mark: decimal ("19283") or hex after 0x ("0x4b53"), 0-0xffffffff. */
static int krelay_parse_mark(const char *s, u32 *mark)
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
	case KRELAY_FIRST_MARK:
		return krelay_parse_mark(s, &cfg->first_mark);
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
	len = krelay_show(krelay_file_id(file), buf, KRELAY_TEXT_MAX);
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

/**
 * krelay_proc_init() - creates /proc/krelay and its files
 *
 * Return: 0 or -ENOMEM; nothing to undo on error.
 */
int krelay_proc_init(void)
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
