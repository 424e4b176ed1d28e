// SPDX-License-Identifier: GPL-2.0
/*
 * krelay.ko - the kernel part of krelay: netfilter hooks that select exactly the packets
 * krelay must see and hand them to its NFQUEUE (with bypass) (hooks.c), the seed-style
 * configuration in /proc/krelay and /sys/module/krelay/parameters/start (proc.c), and a NAT
 * table that krelay pushes entries to and privileged readers read through getsockopt (nat.c,
 * krelay_abi.h). krelay.h describes the locking.
 *
 * This file sets the parts up in order and takes them down in the reverse order.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/init.h>
#include <linux/module.h>

#include "krelay.h"
#include "krelay_abi.h"

static unsigned int krelay_freed; /* NAT entries freed at exit, for the last message */

static void krelay_nat_down(void)
{
	krelay_freed = krelay_nat_exit();
}

/**
 * struct krelay_part - one part of the module: set up in order, taken down in reverse
 * @up: sets it up; 0 or a negative errno, with nothing to undo on error
 * @down: takes it down again
 */
struct krelay_part {
	int (*up)(void);
	void (*down)(void);
};

static const struct krelay_part krelay_parts[] = {
	{ krelay_hooks_init, krelay_hooks_exit },  /* counters and pernet */
	{ krelay_cfg_init, krelay_cfg_exit },	   /* configuration */
	{ krelay_nat_init, krelay_nat_down },	   /* NAT table and sockopts */
	{ krelay_proc_init, krelay_proc_exit },	   /* /proc/krelay, waiting for its users */
	{ krelay_hooks_ready, krelay_hooks_going }, /* start writes act; hooks unregistered */
};

/**
 * krelay_init() - module init: counters and pernet, configuration, NAT table and sockopts,
 * /proc/krelay, then start writes (and insmod start=1) take effect
 *
 * Return: 0 or a negative errno, with everything set up so far taken down again.
 */
static int __init krelay_init(void)
{
	unsigned int i;
	int err;

	for (i = 0; i < ARRAY_SIZE(krelay_parts); i++) {
		err = krelay_parts[i].up();
		if (err) {
			while (i--)
				krelay_parts[i].down();
			return err;
		}
	}
	pr_info("loaded (abi %u, max_entries %u)\n", KRELAY_ABI_VERSION, krelay_max_entries);
	return 0;
}

/**
 * krelay_exit() - module exit: krelay_init() undone in reverse, the hooks first (waiting for
 * hooks in flight), then /proc (waiting for its readers and writers in flight)
 */
static void __exit krelay_exit(void)
{
	unsigned int i = ARRAY_SIZE(krelay_parts);

	while (i--)
		krelay_parts[i].down();
	pr_info("unloaded (%u NAT entries freed)\n", krelay_freed);
}

module_init(krelay_init);
module_exit(krelay_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("krelay: netfilter hooks, /proc configuration and NAT table for krelay");
MODULE_AUTHOR("krelay");
