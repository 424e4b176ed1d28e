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

/**
 * krelay_init() - module init: counters and pernet, configuration, NAT table and sockopts,
 * /proc/krelay, then start writes (and insmod start=1) take effect
 *
 * Return: 0 or a negative errno, with everything set up so far taken down again.
 */
static int __init krelay_init(void)
{
	int err;

	err = krelay_hooks_init();
	if (err)
		return err;
	err = krelay_cfg_init();
	if (err)
		goto err_hooks;
	err = krelay_nat_init();
	if (err)
		goto err_cfg;
	err = krelay_proc_init();
	if (err)
		goto err_nat;
	err = krelay_hooks_ready();
	if (err)
		goto err_proc;
	pr_info("loaded (abi %u, max_entries %u)\n", KRELAY_ABI_VERSION, krelay_max_entries);
	return 0;

err_proc:
	krelay_proc_exit();
err_nat:
	krelay_nat_exit();
err_cfg:
	krelay_cfg_exit();
err_hooks:
	krelay_hooks_exit();
	return err;
}

/**
 * krelay_exit() - module exit: krelay_init() undone in reverse, the hooks first
 */
static void __exit krelay_exit(void)
{
	unsigned int freed;

	krelay_hooks_going(); /* waits for hooks in flight (synchronize_net) */
	krelay_proc_exit();   /* waits for /proc readers and writers in flight */
	freed = krelay_nat_exit();
	krelay_cfg_exit();
	krelay_hooks_exit();
	pr_info("unloaded (%u NAT entries freed)\n", freed);
}

module_init(krelay_init);
module_exit(krelay_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("krelay: netfilter hooks, /proc configuration and NAT table for krelay");
MODULE_AUTHOR("krelay");
