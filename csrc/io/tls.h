/* tls.h: OpenSSL sessions over memory BIOs, for TCP ports (tls.c). */
#ifndef MB_TLS_H
#define MB_TLS_H

#include <arpa/inet.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>

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

/* The TLS functions, from the moonbeam.tls_core module (tls.c, OpenSSL). */
typedef struct mb_tls_ops {
  mb_tls_ctx_t *(*ctx_new)(int server, const mb_tls_opts_t *o, char *err, size_t cap);
  void (*ctx_ref)(mb_tls_ctx_t *c);
  void (*ctx_unref)(mb_tls_ctx_t *c);
  mb_tls_t *(*session)(mb_tls_ctx_t *c, const char *host);
  void (*free)(mb_tls_t *t);
  int (*feed)(mb_tls_t *t, const void *data, size_t len);
  int (*handshake)(mb_tls_t *t, char *err, size_t cap);
  int (*read)(mb_tls_t *t, void *buf, size_t cap, char *err, size_t ecap);
  int (*write)(mb_tls_t *t, const void *data, size_t len, char *err, size_t cap);
  size_t (*pending)(mb_tls_t *t);
  size_t (*take)(mb_tls_t *t, void *buf, size_t cap);
  void (*close_notify)(mb_tls_t *t);
  const char *(*alpn)(mb_tls_t *t, size_t *len);
  const char *(*server_name)(mb_tls_t *t);
  const char *(*version)(mb_tls_t *t);
} mb_tls_ops_t;

/* Installs the functions (once per OS process; csrc/io/tlsops.c) and gets
 * them (NULL until installed). */
void mb_tls_install(const mb_tls_ops_t *ops);
const mb_tls_ops_t *mb_tls_ops(void);

/* The calls the core makes. A context or session exists only once the
 * functions are installed, so those taking one need no check. */
/* A context (one reference); NULL with a message in err. */
static inline mb_tls_ctx_t *mb_tls_ctx_new(int server, const mb_tls_opts_t *o, char *err, size_t cap) {
  const mb_tls_ops_t *t = mb_tls_ops();
  if (!t) {
    snprintf(err, cap, "tls: moonbeam.tls_core is not loaded");
    return NULL;
  }
  return t->ctx_new(server, o, err, cap);
}
static inline void mb_tls_ctx_ref(mb_tls_ctx_t *c) { mb_tls_ops()->ctx_ref(c); }
static inline void mb_tls_ctx_unref(mb_tls_ctx_t *c) { if (c) mb_tls_ops()->ctx_unref(c); }
/* A session; a client's `host` is sent as SNI and checked against the certificate. */
static inline mb_tls_t *mb_tls_new(mb_tls_ctx_t *c, const char *host) { return mb_tls_ops()->session(c, host); }
static inline void mb_tls_free(mb_tls_t *t) { if (t) mb_tls_ops()->free(t); }
/* Ciphertext from the peer. */
static inline int mb_tls_feed(mb_tls_t *t, const void *d, size_t n) { return mb_tls_ops()->feed(t, d, n); }
/* 1 done, 0 wants more input, MB_TLS_ERROR (message in err). */
static inline int mb_tls_handshake(mb_tls_t *t, char *err, size_t cap) { return mb_tls_ops()->handshake(t, err, cap); }
/* Plaintext read: n > 0, 0 wants more input, MB_TLS_CLOSED, MB_TLS_ERROR. */
static inline int mb_tls_read(mb_tls_t *t, void *buf, size_t cap, char *err, size_t ecap) {
  return mb_tls_ops()->read(t, buf, cap, err, ecap);
}
/* Encrypts all of data into the output (0, or -1 with err). */
static inline int mb_tls_write(mb_tls_t *t, const void *d, size_t n, char *err, size_t cap) {
  return mb_tls_ops()->write(t, d, n, err, cap);
}
/* Ciphertext waiting to go to the peer, and taking it. */
static inline size_t mb_tls_pending(mb_tls_t *t) { return mb_tls_ops()->pending(t); }
static inline size_t mb_tls_take(mb_tls_t *t, void *buf, size_t cap) { return mb_tls_ops()->take(t, buf, cap); }
static inline void mb_tls_close_notify(mb_tls_t *t) { mb_tls_ops()->close_notify(t); }
static inline const char *mb_tls_alpn(mb_tls_t *t, size_t *len) { return mb_tls_ops()->alpn(t, len); }
static inline const char *mb_tls_server_name(mb_tls_t *t) { return mb_tls_ops()->server_name(t); }
static inline const char *mb_tls_version(mb_tls_t *t) { return mb_tls_ops()->version(t); }

/* 1 if s is a literal IPv4 or IPv6 address. */
static inline int inet_pton_any(const char *s, unsigned char *buf16) {
  return inet_pton(AF_INET, s, buf16) == 1 || inet_pton(AF_INET6, s, buf16) == 1;
}

#endif
