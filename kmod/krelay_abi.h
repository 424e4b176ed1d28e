/* SPDX-License-Identifier: GPL-2.0 */
/*
 * krelay_abi.h - the NAT table interface of krelay.ko, shared by the module, user-space
 * clients (kmod/tools/krelay-nat.c) and krelay itself (src/kmod/abi.ts mirrors it).
 *
 * Reached with getsockopt()/setsockopt() at level SOL_IP (IPPROTO_IP) on any AF_INET socket
 * (for example socket(AF_INET, SOCK_DGRAM, 0)), in any network namespace. The table is one,
 * global to the module.
 *
 *   setsockopt(fd, SOL_IP, KRELAY_SO_SET_ADD,   &entry, sizeof entry)   add or replace
 *   setsockopt(fd, SOL_IP, KRELAY_SO_SET_DEL,   &entry, sizeof entry)   remove (by key)
 *   setsockopt(fd, SOL_IP, KRELAY_SO_SET_FLUSH, &version, sizeof(__u32)) remove all
 *   getsockopt(fd, SOL_IP, KRELAY_SO_GET_INFO,  &info, &len)            counts, limits
 *   getsockopt(fd, SOL_IP, KRELAY_SO_GET_ENTRY, &entry, &len)           one entry by key
 *   getsockopt(fd, SOL_IP, KRELAY_SO_GET_TABLE, buf, &len)              header + entries
 *
 * The set calls, GET_ENTRY and GET_TABLE need CAP_NET_ADMIN in the initial user namespace
 * (EPERM otherwise): entries name clients and servers, and conntrack's table is no more open.
 * GET_INFO (counts and limits) is open to any process. Every struct starts with a __u32 version that must be KRELAY_ABI_VERSION
 * (otherwise EPROTO); lengths shorter than the struct give EINVAL.
 *
 * Byte order: addresses and ports are in network order (as in the packet, __be32/__be16);
 * everything else is in host order. Sizes and offsets are fixed (explicit padding, 8-byte
 * aligned 64-bit fields) so the layout is the same for every x86_64 compiler.
 */
#ifndef KRELAY_ABI_H
#define KRELAY_ABI_H

#include <linux/types.h>

#define KRELAY_ABI_VERSION 1

/*
 * Option numbers. Out of the ranges the kernel already uses at SOL_IP (IP_* options below
 * 100, the iptables/arptables/ebtables ranges 64-135, multicast routing 200-215, IPVS
 * 1152-1165), so nf_register_sockopt() accepts them and ip_getsockopt() hands them on.
 */
#define KRELAY_SO_BASE 0x4b52 /* 19282, "KR" */

#define KRELAY_SO_SET_ADD (KRELAY_SO_BASE + 0)
#define KRELAY_SO_SET_DEL (KRELAY_SO_BASE + 1)
#define KRELAY_SO_SET_FLUSH (KRELAY_SO_BASE + 2)
#define KRELAY_SO_SET_MAX (KRELAY_SO_BASE + 2)

#define KRELAY_SO_GET_INFO (KRELAY_SO_BASE + 0)
#define KRELAY_SO_GET_ENTRY (KRELAY_SO_BASE + 1)
#define KRELAY_SO_GET_TABLE (KRELAY_SO_BASE + 2)
#define KRELAY_SO_GET_MAX (KRELAY_SO_BASE + 2)

/* krelay_nat_entry.state: what krelay says about the flow; the module only stores it. */
enum krelay_nat_state {
	KRELAY_STATE_NONE = 0,
	KRELAY_STATE_NEW = 1,         /* first packet seen (UDP request, TCP SYN) */
	KRELAY_STATE_ESTABLISHED = 2, /* both ways seen (UDP reply, TCP connected) */
	KRELAY_STATE_CLOSING = 3,     /* TCP FIN/RST seen, lingering */
	KRELAY_STATE_MAX = 3,
};

/* krelay_nat_entry.flags */
#define KRELAY_F_BY_RELAY_PORT 0x0001 /* GET_ENTRY/SET_DEL: key is (protocol, relay_port) */
#define KRELAY_F_MASK 0x0001

/*
 * One NAT entry, 64 bytes. Names follow the flows of the design (C client, R relay, S real
 * server): the client C talks to R:service_port; UDP is rewritten to S:server_port (relay_port
 * is 0); TCP goes through the gateway port and leaves R toward S from R's own port relay_port
 * (y).
 *
 * Key: (protocol, client_addr, client_port, relay_addr, service_port). SET_ADD replaces an
 * entry with the same key (how krelay updates state and counters). With KRELAY_F_BY_RELAY_PORT
 * in flags, GET_ENTRY and SET_DEL find the entry by (protocol, relay_port) instead, the lookup
 * a server-side packet (S:server_port -> C:y) needs; relay_port must then be non-zero. A
 * non-zero relay_port is unique per protocol: SET_ADD fails with EEXIST when another entry
 * (another key) has it, and changes nothing.
 */
struct krelay_nat_entry {
	__u32 version;       /*  0 host: KRELAY_ABI_VERSION */
	__u8 protocol;       /*  4 IPPROTO_TCP (6) or IPPROTO_UDP (17) */
	__u8 state;          /*  5 enum krelay_nat_state */
	__u16 flags;         /*  6 host: KRELAY_F_* (request only; stored as 0) */
	__be32 client_addr;  /*  8 network: C */
	__be16 client_port;  /* 12 network: x */
	__be16 service_port; /* 14 network: the relayed port on R (80, 53, ...) */
	__be32 relay_addr;   /* 16 network: R, the address C talks to */
	__be32 server_addr;  /* 20 network: S, the real server */
	__be16 server_port;  /* 24 network */
	__be16 relay_port;   /* 26 network: y, R's port toward S (TCP), 0 for UDP */
	__u32 reserved;      /* 28 must be 0 */
	__u64 bytes_in;      /* 32 host: bytes C -> S */
	__u64 bytes_out;     /* 40 host: bytes S -> C */
	__u64 packets_in;    /* 48 host */
	__u64 packets_out;   /* 56 host */
};

/* GET_INFO answer, 48 bytes. The caller sets version; len must be at least 48. */
struct krelay_nat_info {
	__u32 version;     /*  0 host: KRELAY_ABI_VERSION */
	__u32 entry_size;  /*  4 host: sizeof(struct krelay_nat_entry) */
	__u32 count;       /*  8 host: entries in the table */
	__u32 max_entries; /* 12 host: the bound (module parameter max_entries) */
	__u32 started;     /* 16 host: 1 when the hooks are registered */
	__u32 reserved;    /* 20 */
	__u64 adds;        /* 24 host: successful SET_ADD calls (new or replaced) */
	__u64 dels;        /* 32 host: entries removed by SET_DEL and SET_FLUSH */
	__u64 full;        /* 40 host: SET_ADD calls refused with ENOSPC */
};

/*
 * GET_TABLE: the buffer is this 16-byte header followed by room for entries. The caller sets
 * version; the module fills as many entries as fit in len (in no particular order), sets
 * count (entries written) and total (entries in the table), and sets len to 16 + count * 64.
 * A buffer with room for none (len 16) gives count 0 and the total. count < total means the
 * buffer was too small: retry with a larger one (GET_INFO's count, plus some slack).
 *
 * The module copies the entries in chunks of 64, dropping its lock in between, so the answer
 * is not one snapshot: an entry added or removed during the call may or may not be in it,
 * and total is the count at the last chunk. An entry that is in the table during the whole
 * call is in the answer once (if it fits). Needs CAP_NET_ADMIN.
 */
struct krelay_nat_table {
	__u32 version;  /*  0 host: KRELAY_ABI_VERSION */
	__u32 count;    /*  4 host, out: entries that follow */
	__u32 total;    /*  8 host, out: entries in the table */
	__u32 reserved; /* 12 */
	/* struct krelay_nat_entry entries[count]; */
};

#endif /* KRELAY_ABI_H */
