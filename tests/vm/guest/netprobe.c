// SPDX-License-Identifier: GPL-2.0
/*
 * netprobe: sends TCP connection attempts or UDP datagrams from a chosen source port, fast
 * (static, no shared libraries to load over 9p in the VM). Used by the VM tests to send
 * exactly the packets a netfilter selection should or should not see.
 *
 *   netprobe tcp SPORT ADDR PORT [COUNT]   connect (1 s timeout), close; COUNT times
 *   netprobe udp SPORT ADDR PORT [COUNT]   one datagram "probe"; COUNT times
 *
 * SPORT 0 lets the kernel choose. Prints one word per attempt for tcp (connected, refused,
 * timeout, error); exit status 0 unless the arguments or a socket call are wrong.
 * Build: gcc -static -O2 -o netprobe netprobe.c
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int open_bound(int type, unsigned int sport)
{
	struct sockaddr_in src = { .sin_family = AF_INET, .sin_port = htons(sport) };
	int one = 1;
	int fd = socket(AF_INET, type, 0);

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (sport && bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static const char *tcp_once(unsigned int sport, const struct sockaddr_in *dst)
{
	struct pollfd p;
	int fd = open_bound(SOCK_STREAM, sport), err = 0;
	socklen_t len = sizeof(err);
	const char *what;

	if (fd < 0)
		return "error";
	fcntl(fd, F_SETFL, O_NONBLOCK);
	if (connect(fd, (const struct sockaddr *)dst, sizeof(*dst)) == 0) {
		close(fd);
		return "connected";
	}
	if (errno != EINPROGRESS) {
		what = errno == ECONNREFUSED ? "refused" : "error";
		close(fd);
		return what;
	}
	p.fd = fd;
	p.events = POLLOUT;
	if (poll(&p, 1, 1000) != 1) {
		close(fd);
		return "timeout";
	}
	getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
	what = err == 0 ? "connected" : err == ECONNREFUSED ? "refused" : "error";
	close(fd);
	return what;
}

int main(int argc, char **argv)
{
	struct sockaddr_in dst = { .sin_family = AF_INET };
	unsigned int sport, dport;
	long count = 1, i;

	if (argc < 5 || argc > 6) {
		fprintf(stderr, "usage: netprobe tcp|udp SPORT ADDR PORT [COUNT]\n");
		return 2;
	}
	sport = (unsigned int)strtoul(argv[2], NULL, 10);
	dport = (unsigned int)strtoul(argv[4], NULL, 10);
	if (argc == 6)
		count = strtol(argv[5], NULL, 10);
	if (sport > 65535 || dport == 0 || dport > 65535 || count < 1 || count > 100000 ||
	    inet_pton(AF_INET, argv[3], &dst.sin_addr) != 1) {
		fprintf(stderr, "netprobe: bad arguments\n");
		return 2;
	}
	dst.sin_port = htons(dport);
	for (i = 0; i < count; i++) {
		if (!strcmp(argv[1], "tcp")) {
			puts(tcp_once(sport, &dst));
		} else if (!strcmp(argv[1], "udp")) {
			int fd = open_bound(SOCK_DGRAM, sport);

			if (fd < 0 || sendto(fd, "probe", 5, 0, (struct sockaddr *)&dst, sizeof(dst)) < 0) {
				perror("netprobe: udp");
				if (fd >= 0)
					close(fd);
				return 1;
			}
			close(fd);
		} else {
			fprintf(stderr, "netprobe: tcp or udp\n");
			return 2;
		}
	}
	return 0;
}
