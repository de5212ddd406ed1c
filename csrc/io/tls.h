/* tls.h: OpenSSL sessions over memory BIOs, for TCP ports (tls.c). */
#ifndef MB_TLS_H
#define MB_TLS_H

#include <arpa/inet.h>
#include <stdatomic.h>
#include <stddef.h>

typedef struct mb_tls_ctx mb_tls_ctx_t;
typedef struct mb_tls mb_tls_t;

typedef struct mb_tls_opts {
  int verify;               /* verify the peer (default 1 for clients) */
  int verify_peer;          /* server: ask clients for a certificate */
  const char *certfile, *keyfile, *cafile;
  unsigned char alpn[256];  /* protocols, wire format */
  unsigned alpn_len;
} mb_tls_opts_t;

enum { MB_TLS_CLOSED = -1, MB_TLS_ERROR = -2 };

/* A context (one reference); NULL with a message in err. */
mb_tls_ctx_t *mb_tls_ctx_new(int server, const mb_tls_opts_t *o, char *err, size_t cap);
void mb_tls_ctx_ref(mb_tls_ctx_t *c);
void mb_tls_ctx_unref(mb_tls_ctx_t *c);
/* A session; a client's `host` is sent as SNI and checked against the certificate. */
mb_tls_t *mb_tls_new(mb_tls_ctx_t *c, const char *host);
void mb_tls_free(mb_tls_t *t);
/* Ciphertext from the peer. */
int mb_tls_feed(mb_tls_t *t, const void *data, size_t len);
/* 1 done, 0 wants more input, MB_TLS_ERROR (message in err). */
int mb_tls_handshake(mb_tls_t *t, char *err, size_t cap);
/* Plaintext read: n > 0, 0 wants more input, MB_TLS_CLOSED, MB_TLS_ERROR. */
int mb_tls_read(mb_tls_t *t, void *buf, size_t cap, char *err, size_t ecap);
/* Encrypts all of data into the output (0, or -1 with err). */
int mb_tls_write(mb_tls_t *t, const void *data, size_t len, char *err, size_t cap);
/* Ciphertext waiting to go to the peer, and taking it. */
size_t mb_tls_pending(mb_tls_t *t);
size_t mb_tls_take(mb_tls_t *t, void *buf, size_t cap);
void mb_tls_close_notify(mb_tls_t *t);
const char *mb_tls_alpn(mb_tls_t *t, size_t *len);
const char *mb_tls_server_name(mb_tls_t *t);
const char *mb_tls_version(mb_tls_t *t);

/* 1 if s is a literal IPv4 or IPv6 address. */
static inline int inet_pton_any(const char *s, unsigned char *buf16) {
  return inet_pton(AF_INET, s, buf16) == 1 || inet_pton(AF_INET6, s, buf16) == 1;
}

#endif
