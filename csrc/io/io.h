/* io.h: the port types of csrc/io (tcp.c, udp.c, dns.c) as their Lua
 * bindings see them. Every function here runs on the calling process's own
 * scheduler thread; results come back as a tuple in the command's res (see
 * port.h), directly or as a reply. */
#ifndef MB_IO_H
#define MB_IO_H

#include "io/port.h"

/* Socket options (gen_tcp's / gen_udp's names); `set` says which were given. */
enum {
  MB_SO_ACTIVE = 1 << 0, MB_SO_PACKET = 1 << 1, MB_SO_NODELAY = 1 << 2,
  MB_SO_KEEPALIVE = 1 << 3, MB_SO_BUFFER = 1 << 4, MB_SO_BACKLOG = 1 << 5,
  MB_SO_REUSEADDR = 1 << 6, MB_SO_REUSEPORT = 1 << 7, MB_SO_IPV6ONLY = 1 << 8,
  MB_SO_HIGH_WATERMARK = 1 << 9, MB_SO_LOW_WATERMARK = 1 << 10, MB_SO_PACKET_SIZE = 1 << 11,
  MB_SO_BROADCAST = 1 << 12, MB_SO_MULTICAST_TTL = 1 << 13, MB_SO_MULTICAST_LOOP = 1 << 14
};
#define MB_ACTIVE_TRUE (-1)
#define MB_PACKET_LINE (-1)

typedef struct mb_sockopts {
  unsigned set;
  int active;          /* MB_ACTIVE_TRUE, 0 (false), n > 0 */
  int once;            /* active came from "once" */
  int packet;          /* 0 raw, 1, 2, 4, MB_PACKET_LINE */
  int nodelay, keepalive, reuseaddr, reuseport, ipv6only, broadcast;
  int backlog;
  int multicast_ttl, multicast_loop;
  size_t buffer;       /* read size, and the longest line */
  size_t high_watermark, low_watermark;
  size_t packet_size;  /* longest packet accepted (0: no limit) */
  int family;          /* 0 any / by address, 4, 6 */
  char address[64];    /* "" : any */
} mb_sockopts_t;

/* Command ops on tcp sockets and listeners. */
enum {
  MB_TCP_SEND = 1, MB_TCP_RECV, MB_TCP_SETOPTS, MB_TCP_GETOPTS, MB_TCP_SHUTDOWN,
  MB_TCP_PEERNAME, MB_TCP_SOCKNAME, MB_TCP_ACCEPT, MB_TCP_STATS, MB_TCP_TLSINFO,
  MB_TCP_SENDFILE /* data = head bytes .. path, arg: offset, length, head length */
};
typedef struct mb_tls_ctx mb_tls_ctx_t;

extern const mb_port_type_t mb_tcp_type, mb_tcp_listen_type;

/* Default options of a new socket. */
void mb_sockopts_default(mb_sockopts_t *o);
/* With tls (tls.h; NULL: plain TCP) accepted sockets speak TLS: their messages
 * are tagged "ssl", "ssl_closed"..., and accept answers after the handshake.
 * A listener on port (0: any) owned by owner: *out (a reference for the
 * caller) or a negative libuv error. */
int mb_tcp_listen(mb_runtime_t *rt, mb_pid_t owner, int port, const mb_sockopts_t *o,
                  mb_tls_ctx_t *tls, mb_port_t **out);
/* Connects to host:port (a name is resolved on the loop) within timeout_ms
 * (< 0: none); c (op unused) is answered with {Port} or {nil, reason}.
 * Returns MB_PORT_DONE (c->res holds an error) or MB_PORT_PENDING. */
int mb_tcp_connect(mb_port_cmd_t *c, const char *host, int port, const mb_sockopts_t *o,
                   int64_t timeout_ms, mb_tls_ctx_t *tls, const char *server_name);

/* UDP. */
enum { MB_UDP_SEND = 1, MB_UDP_RECV, MB_UDP_SETOPTS, MB_UDP_GETOPTS, MB_UDP_SOCKNAME, MB_UDP_MEMBERSHIP };
extern const mb_port_type_t mb_udp_type;
/* A socket bound to port (0: any) owned by owner; *out holds a reference. */
int mb_udp_open(mb_runtime_t *rt, mb_pid_t owner, int port, const mb_sockopts_t *o, mb_port_t **out);

/* DNS: resolves host on the loop; c gets {{addr, ...}} or {nil, reason}. */
enum { MB_DNS_ANY = 0, MB_DNS_INET = 4, MB_DNS_INET6 = 6 };
int mb_dns_resolve(mb_port_cmd_t *c, const char *host, int family);

/* Framing of received bytes (tcp.c): the next packet in b[0..len) for
 * `packet` mode: 1 with *skip header bytes then *n payload bytes, 0 if it is
 * not complete yet, UV_E2BIG past packet_size. `want`: raw mode's length (0:
 * all); at_end: no more input will come. Pure: the fuzz target drives it. */
int mb_packet_next(int packet, size_t buffer, size_t packet_size, int at_end, const uint8_t *b,
                   size_t len, size_t want, size_t *skip, size_t *n);

/* The text form of an address and its port. */
int mb_sockaddr_text(const struct sockaddr *sa, char *ip, size_t cap, int *port);
/* Parses ip (literal, "localhost", "any"/"" per family) and port. */
int mb_sockaddr_parse(const char *ip, int port, int family, struct sockaddr_storage *out);

#endif
