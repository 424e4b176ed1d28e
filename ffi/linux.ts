/**
 * Linux's numbers for the calls krelay makes through FFI (x86_64, as in the kernel's and glibc's
 * headers), in one place: address families and socket types, socket options, flags of open,
 * epoll, eventfd, pipes, splice, send and recv, and netlink. No logic.
 *
 * @module
 */

// --- open(2) and friends: flags shared by sockets, pipes, epoll and eventfd ---
/** Non-blocking descriptor (O_NONBLOCK; SOCK_NONBLOCK, EFD_NONBLOCK are the same bit). */
export const O_NONBLOCK = 0o4000;
/** Closed on exec (O_CLOEXEC; SOCK_CLOEXEC, EPOLL_CLOEXEC, EFD_CLOEXEC are the same bit). */
export const O_CLOEXEC = 0o2000000;
export const SOCK_NONBLOCK = O_NONBLOCK;
export const SOCK_CLOEXEC = O_CLOEXEC;
export const EPOLL_CLOEXEC = O_CLOEXEC;
export const EFD_NONBLOCK = O_NONBLOCK;
export const EFD_CLOEXEC = O_CLOEXEC;

// --- sockets ---
export const AF_UNSPEC = 0;
export const AF_INET = 2;
export const AF_INET6 = 10;
export const SOCK_STREAM = 1;
export const SOCK_DGRAM = 2;
export const SOL_SOCKET = 1;
export const SO_REUSEADDR = 2;
export const SO_ERROR = 4;
/** Send buffer size, capped by net.core.wmem_max. */
export const SO_SNDBUF = 7;
/** Receive buffer size, capped by net.core.rmem_max. */
export const SO_RCVBUF = 8;
export const SO_LINGER = 13;
export const SO_REUSEPORT = 15;
/** Like SO_SNDBUF but beyond net.core.wmem_max; needs CAP_NET_ADMIN. */
export const SO_SNDBUFFORCE = 32;
/** Like SO_RCVBUF but beyond net.core.rmem_max; needs CAP_NET_ADMIN. */
export const SO_RCVBUFFORCE = 33;
export const SO_INCOMING_CPU = 49;
export const SOL_IP = 0;
export const IP_TRANSPARENT = 19;
export const IP_BIND_ADDRESS_NO_PORT = 24;
export const SOL_IPV6 = 41;
/** An AF_INET6 socket takes IPv6 only (no IPv4-mapped peers). */
export const IPV6_V6ONLY = 26;
export const IPV6_TRANSPARENT = 75;
export const IPPROTO_TCP = 6;
export const TCP_NODELAY = 1;
export const TCP_INFO = 11;
export const TCP_QUICKACK = 12;
/** tcpi_state values, the first byte of struct tcp_info. */
export const TCP_ESTABLISHED = 1;
export const TCP_SYN_SENT = 2;
export const SHUT_WR = 1;

// --- send(2) and recv(2) flags ---
/** recv flag: return the real length of a datagram longer than the buffer. */
export const MSG_TRUNC = 0x20;
/** Do not block. */
export const MSG_DONTWAIT = 0x40;
/** No SIGPIPE on a closed peer. */
export const MSG_NOSIGNAL = 0x4000;
/** More follows: let the kernel coalesce. */
export const MSG_MORE = 0x8000;

// --- poll(2), epoll(7) ---
/** poll event: data to read. */
export const POLLIN = 0x1;
export const EPOLL_CTL_ADD = 1;
export const EPOLL_CTL_DEL = 2;

// --- pipes and splice(2) ---
export const F_SETPIPE_SZ = 1031;
/** fcntl: a pipe's capacity in bytes. */
export const F_GETPIPE_SZ = 1032;
export const SPLICE_F_MOVE = 1;
export const SPLICE_F_NONBLOCK = 2;

// --- netlink ---
/** The netlink family of nfnetlink. */
export const NETLINK_NETFILTER = 12;
/** setsockopt level of netlink options. */
export const SOL_NETLINK = 270;
/** Error acks carry only the header of the failed request, not its whole payload. */
export const NETLINK_CAP_ACK = 10;
