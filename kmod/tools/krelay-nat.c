// SPDX-License-Identifier: GPL-2.0
/*
 * krelay-nat: read and change krelay.ko's NAT table through getsockopt/setsockopt, the
 * reference client of krelay_abi.h. Build: gcc -static -O2 -I.. -o krelay-nat krelay-nat.c
 *
 *   krelay-nat info
 *   krelay-nat list
 *   krelay-nat dump ROOM        one GET_TABLE with room for ROOM entries: "count C total T",
 *                               then the entries
 *   krelay-nat get  tcp|udp CLIENT:PORT RELAY:PORT
 *   krelay-nat getport tcp|udp Y
 *   krelay-nat add  tcp|udp CLIENT:PORT RELAY:PORT SERVER:PORT [y=N] [state=N]
 *                   [bytes_in=N] [bytes_out=N] [packets_in=N] [packets_out=N]
 *   krelay-nat add-range COUNT tcp|udp CLIENT:PORT RELAY:PORT SERVER:PORT [y=N] ...
 *                   COUNT entries in one process, client port (then address) and y counting
 *                   up from the ones given (y stays 0 when not given)
 *   krelay-nat del  tcp|udp CLIENT:PORT RELAY:PORT
 *   krelay-nat delport tcp|udp Y
 *   krelay-nat flush
 *
 * Output, one line per entry:
 *   PROTO CLIENT:PORT RELAY:PORT SERVER:PORT y=Y state=STATE bytes_in=N bytes_out=N
 *   packets_in=N packets_out=N
 * Errors go to stderr as "krelay-nat: CALL: ENAME (message)"; the exit status is 1, or 2 for
 * bad usage.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "krelay_abi.h"

static const char *errno_name(int e)
{
	switch (e) {
	case ENOENT: return "ENOENT";
	case EINVAL: return "EINVAL";
	case EPERM: return "EPERM";
	case ENOSPC: return "ENOSPC";
	case EPROTO: return "EPROTO";
	case ENOPROTOOPT: return "ENOPROTOOPT";
	case EFAULT: return "EFAULT";
	case EEXIST: return "EEXIST";
	case ENOMEM: return "ENOMEM";
	default: return "E?";
	}
}

static int fail(const char *call)
{
	int e = errno;

	fprintf(stderr, "krelay-nat: %s: %s (%s)\n", call, errno_name(e), strerror(e));
	return 1;
}

static int usage(void)
{
	fprintf(stderr,
		"usage: krelay-nat info | list | flush | dump ROOM\n"
		"       krelay-nat get|del tcp|udp CLIENT:PORT RELAY:PORT\n"
		"       krelay-nat getport|delport tcp|udp Y\n"
		"       krelay-nat add tcp|udp CLIENT:PORT RELAY:PORT SERVER:PORT [y=N] [state=N]\n"
		"                  [bytes_in=N] [bytes_out=N] [packets_in=N] [packets_out=N]\n"
		"       krelay-nat add-range COUNT tcp|udp CLIENT:PORT RELAY:PORT SERVER:PORT [...]\n");
	return 2;
}

static const char *state_name(unsigned int s)
{
	static const char *const names[] = { "none", "new", "established", "closing" };

	return s < sizeof(names) / sizeof(names[0]) ? names[s] : "?";
}

static int parse_proto(const char *s, __u8 *proto)
{
	if (!strcmp(s, "tcp"))
		*proto = IPPROTO_TCP;
	else if (!strcmp(s, "udp"))
		*proto = IPPROTO_UDP;
	else
		return -1;
	return 0;
}

static int parse_port(const char *s, __be16 *port)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);

	if (!*s || *end || v > 65535)
		return -1;
	*port = htons((uint16_t)v);
	return 0;
}

/* "A.B.C.D:PORT" */
static int parse_endpoint(const char *s, __be32 *addr, __be16 *port)
{
	char host[32];
	const char *colon = strrchr(s, ':');
	struct in_addr in;

	if (!colon || (size_t)(colon - s) >= sizeof(host))
		return -1;
	memcpy(host, s, colon - s);
	host[colon - s] = '\0';
	if (inet_pton(AF_INET, host, &in) != 1)
		return -1;
	*addr = in.s_addr;
	return parse_port(colon + 1, port);
}

static int parse_u64(const char *s, __u64 *v)
{
	char *end;

	errno = 0;
	*v = strtoull(s, &end, 10);
	return (!*s || *end || errno) ? -1 : 0;
}

static void print_entry(const struct krelay_nat_entry *e)
{
	char c[INET_ADDRSTRLEN], r[INET_ADDRSTRLEN], s[INET_ADDRSTRLEN];

	inet_ntop(AF_INET, &e->client_addr, c, sizeof(c));
	inet_ntop(AF_INET, &e->relay_addr, r, sizeof(r));
	inet_ntop(AF_INET, &e->server_addr, s, sizeof(s));
	printf("%s %s:%u %s:%u %s:%u y=%u state=%s bytes_in=%" PRIu64 " bytes_out=%" PRIu64
	       " packets_in=%" PRIu64 " packets_out=%" PRIu64 "\n",
	       e->protocol == IPPROTO_TCP ? "tcp" : e->protocol == IPPROTO_UDP ? "udp" : "?",
	       c, ntohs(e->client_port), r, ntohs(e->service_port), s, ntohs(e->server_port),
	       ntohs(e->relay_port), state_name(e->state), (uint64_t)e->bytes_in,
	       (uint64_t)e->bytes_out, (uint64_t)e->packets_in, (uint64_t)e->packets_out);
}

static int get_info(int fd, struct krelay_nat_info *info)
{
	socklen_t len = sizeof(*info);

	memset(info, 0, sizeof(*info));
	info->version = KRELAY_ABI_VERSION;
	if (getsockopt(fd, SOL_IP, KRELAY_SO_GET_INFO, info, &len) < 0)
		return fail("getsockopt KRELAY_SO_GET_INFO");
	return 0;
}

/* One GET_TABLE with room for @room entries: the table (to free()) and its @len, or NULL. */
static struct krelay_nat_table *get_table(int fd, size_t room, socklen_t *len)
{
	size_t size = sizeof(struct krelay_nat_table) + room * sizeof(struct krelay_nat_entry);
	struct krelay_nat_table *t = calloc(1, size);

	if (!t) {
		fail("calloc");
		return NULL;
	}
	t->version = KRELAY_ABI_VERSION;
	*len = (socklen_t)size;
	if (getsockopt(fd, SOL_IP, KRELAY_SO_GET_TABLE, t, len) < 0) {
		fail("getsockopt KRELAY_SO_GET_TABLE");
		free(t);
		return NULL;
	}
	return t;
}

static void print_table(const struct krelay_nat_table *t)
{
	const struct krelay_nat_entry *e = (const struct krelay_nat_entry *)(t + 1);
	__u32 i;

	for (i = 0; i < t->count; i++)
		print_entry(&e[i]);
}

static int cmd_info(int fd)
{
	struct krelay_nat_info info;

	if (get_info(fd, &info))
		return 1;
	printf("version %u\nentry_size %u\ncount %u\nmax_entries %u\nstarted %u\n"
	       "adds %" PRIu64 "\ndels %" PRIu64 "\nfull %" PRIu64 "\n",
	       info.version, info.entry_size, info.count, info.max_entries, info.started,
	       (uint64_t)info.adds, (uint64_t)info.dels, (uint64_t)info.full);
	return 0;
}

static int cmd_list(int fd)
{
	struct krelay_nat_info info;
	struct krelay_nat_table *t;
	socklen_t len;
	size_t room;
	int tries;

	if (get_info(fd, &info))
		return 1;
	room = info.count + 16;
	/* The table may grow between the calls: retry a few times with more room. */
	for (tries = 0; tries < 4; tries++, room *= 2) {
		t = get_table(fd, room, &len);
		if (!t)
			return 1;
		if (t->count < t->total) {
			free(t);
			continue;
		}
		print_table(t);
		free(t);
		return 0;
	}
	fprintf(stderr, "krelay-nat: list: the table keeps growing\n");
	return 1;
}

/* One GET_TABLE with room for @arg entries, as a reader with a small buffer makes it. */
static int cmd_dump(int fd, int argc, char **argv)
{
	struct krelay_nat_table *t;
	socklen_t len;
	__u64 room;

	if (argc < 1 || parse_u64(argv[0], &room) || room > 1U << 20)
		return usage();
	t = get_table(fd, room, &len);
	if (!t)
		return 1;
	printf("count %u total %u len %u\n", t->count, t->total, (unsigned int)len);
	print_table(t);
	free(t);
	return 0;
}

/* Fills the key of @e from argv: PROTO CLIENT:PORT RELAY:PORT, or PROTO Y with by_port. */
static int parse_key(int argc, char **argv, struct krelay_nat_entry *e, int by_port)
{
	memset(e, 0, sizeof(*e));
	e->version = KRELAY_ABI_VERSION;
	if (argc < (by_port ? 2 : 3) || parse_proto(argv[0], &e->protocol))
		return -1;
	if (by_port) {
		e->flags = KRELAY_F_BY_RELAY_PORT;
		return parse_port(argv[1], &e->relay_port);
	}
	if (parse_endpoint(argv[1], &e->client_addr, &e->client_port) ||
	    parse_endpoint(argv[2], &e->relay_addr, &e->service_port))
		return -1;
	return 0;
}

static int cmd_get(int fd, int argc, char **argv, int by_port)
{
	struct krelay_nat_entry e;
	socklen_t len = sizeof(e);

	if (parse_key(argc, argv, &e, by_port))
		return usage();
	if (getsockopt(fd, SOL_IP, KRELAY_SO_GET_ENTRY, &e, &len) < 0)
		return fail("getsockopt KRELAY_SO_GET_ENTRY");
	print_entry(&e);
	return 0;
}

static int cmd_del(int fd, int argc, char **argv, int by_port)
{
	struct krelay_nat_entry e;

	if (parse_key(argc, argv, &e, by_port))
		return usage();
	if (setsockopt(fd, SOL_IP, KRELAY_SO_SET_DEL, &e, sizeof(e)) < 0)
		return fail("setsockopt KRELAY_SO_SET_DEL");
	return 0;
}

/* Fills @e from argv: PROTO CLIENT:PORT RELAY:PORT SERVER:PORT [KEY=N]... */
static int parse_add(int argc, char **argv, struct krelay_nat_entry *e)
{
	int i;

	if (argc < 4 || parse_key(argc, argv, e, 0) ||
	    parse_endpoint(argv[3], &e->server_addr, &e->server_port))
		return -1;
	for (i = 4; i < argc; i++) {
		char *eq = strchr(argv[i], '=');
		__u64 v;

		if (!eq || parse_u64(eq + 1, &v))
			return -1;
		*eq = '\0';
		if (!strcmp(argv[i], "y") && v <= 65535)
			e->relay_port = htons((uint16_t)v);
		else if (!strcmp(argv[i], "state") && v <= 255)
			e->state = (__u8)v;
		else if (!strcmp(argv[i], "bytes_in"))
			e->bytes_in = v;
		else if (!strcmp(argv[i], "bytes_out"))
			e->bytes_out = v;
		else if (!strcmp(argv[i], "packets_in"))
			e->packets_in = v;
		else if (!strcmp(argv[i], "packets_out"))
			e->packets_out = v;
		else
			return -1;
	}
	return 0;
}

static int cmd_add(int fd, int argc, char **argv)
{
	struct krelay_nat_entry e;

	if (parse_add(argc, argv, &e))
		return usage();
	if (setsockopt(fd, SOL_IP, KRELAY_SO_SET_ADD, &e, sizeof(e)) < 0)
		return fail("setsockopt KRELAY_SO_SET_ADD");
	return 0;
}

/* COUNT entries: client port + i (carried into the address), y + i when y is given. */
static int cmd_add_range(int fd, int argc, char **argv)
{
	struct krelay_nat_entry e, one;
	__u64 count, i;
	uint32_t addr;
	uint16_t y;

	if (argc < 1 || parse_u64(argv[0], &count) || count > 1U << 20 ||
	    parse_add(argc - 1, argv + 1, &e))
		return usage();
	addr = ntohl(e.client_addr);
	y = ntohs(e.relay_port);
	if (y && y + count - 1 > 65535)
		return usage();
	for (i = 0; i < count; i++) {
		uint32_t port = ntohs(e.client_port) + (uint32_t)i;

		one = e;
		one.client_addr = htonl(addr + port / 65536);
		one.client_port = htons((uint16_t)(port % 65536));
		if (y)
			one.relay_port = htons((uint16_t)(y + i));
		if (setsockopt(fd, SOL_IP, KRELAY_SO_SET_ADD, &one, sizeof(one)) < 0)
			return fail("setsockopt KRELAY_SO_SET_ADD");
	}
	return 0;
}

static int cmd_flush(int fd)
{
	__u32 version = KRELAY_ABI_VERSION;

	if (setsockopt(fd, SOL_IP, KRELAY_SO_SET_FLUSH, &version, sizeof(version)) < 0)
		return fail("setsockopt KRELAY_SO_SET_FLUSH");
	return 0;
}

int main(int argc, char **argv)
{
	const char *cmd;
	int fd, ret;

	if (argc < 2)
		return usage();
	cmd = argv[1];
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0)
		return fail("socket");
	if (!strcmp(cmd, "info"))
		ret = cmd_info(fd);
	else if (!strcmp(cmd, "list"))
		ret = cmd_list(fd);
	else if (!strcmp(cmd, "get"))
		ret = cmd_get(fd, argc - 2, argv + 2, 0);
	else if (!strcmp(cmd, "getport"))
		ret = cmd_get(fd, argc - 2, argv + 2, 1);
	else if (!strcmp(cmd, "dump"))
		ret = cmd_dump(fd, argc - 2, argv + 2);
	else if (!strcmp(cmd, "add"))
		ret = cmd_add(fd, argc - 2, argv + 2);
	else if (!strcmp(cmd, "add-range"))
		ret = cmd_add_range(fd, argc - 2, argv + 2);
	else if (!strcmp(cmd, "del"))
		ret = cmd_del(fd, argc - 2, argv + 2, 0);
	else if (!strcmp(cmd, "delport"))
		ret = cmd_del(fd, argc - 2, argv + 2, 1);
	else if (!strcmp(cmd, "flush"))
		ret = cmd_flush(fd);
	else
		ret = usage();
	close(fd);
	return ret;
}
