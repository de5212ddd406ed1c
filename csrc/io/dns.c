/* dns.c: name lookups on the loop (uv_getaddrinfo runs getaddrinfo in libuv's
 * thread pool), so no scheduler ever blocks on a resolver. The answer is the
 * list of distinct addresses as text, in the resolver's order. */
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include "io/io.h"

typedef struct lookup {
  uv_getaddrinfo_t req;
  mb_port_cmd_t *c;
} lookup_t;

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  lookup_t *k = req->data;
  mb_port_cmd_t *c = k->c;
  char name[32];
  if (status < 0) {
    /* UV_EAI_NONAME and friends: "enotfound" as inet:gethostbyname says nxdomain */
    if (status == UV_EAI_NONAME || status == UV_EAI_NODATA) mb_port_res_error(c, "nxdomain");
    else mb_port_res_error(c, mb_port_errname(status, name, sizeof name));
  } else {
    char ips[64][64];
    uint32_t n = 0;
    for (struct addrinfo *a = res; a && n < 64; a = a->ai_next) {
      int port;
      if (a->ai_family != AF_INET && a->ai_family != AF_INET6) continue;
      if (mb_sockaddr_text(a->ai_addr, ips[n], sizeof ips[n], &port)) continue;
      int dup = 0;
      for (uint32_t i = 0; i < n && !dup; i++) dup = !strcmp(ips[i], ips[n]);
      if (!dup) n++;
    }
    mb_enc_tuple(&c->res, 1);
    if (n) {
      mb_enc_list(&c->res, n);
      for (uint32_t i = 0; i < n; i++) mb_enc_binary(&c->res, ips[i], strlen(ips[i]));
    }
    mb_enc_nil(&c->res);
  }
  if (res) uv_freeaddrinfo(res);
  free(k);
  mb_port_reply(c);
}

int mb_dns_resolve(mb_port_cmd_t *c, const char *host, int family) {
  uv_loop_t *loop = mb_port_loop(c->rt);
  lookup_t *k = loop ? calloc(1, sizeof *k) : NULL;
  if (!k) {
    mb_port_res_error(c, "enomem");
    return MB_PORT_DONE;
  }
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = family == MB_DNS_INET ? AF_INET : family == MB_DNS_INET6 ? AF_INET6 : AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  k->c = c;
  k->req.data = k;
  int r = uv_getaddrinfo(loop, &k->req, on_resolved, host, NULL, &hints);
  if (r) {
    char name[32];
    free(k);
    mb_port_res_error(c, mb_port_errname(r, name, sizeof name));
    return MB_PORT_DONE;
  }
  return MB_PORT_PENDING;
}
