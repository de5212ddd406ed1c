/* tls.c: TLS over TCP ports with OpenSSL's memory BIOs. The TCP port moves
 * ciphertext between its socket and the BIOs (tcp.c); this file owns the
 * OpenSSL objects: contexts (verification on by default: the peer's chain
 * against the system's or the given CAs, and the host name; SNI; ALPN) and
 * one SSL per connection. No call here blocks or touches a socket. */
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include "io/tls.h"

struct mb_tls_ctx {
  SSL_CTX *ctx;
  atomic_uint refs;
  int server, verify;
  unsigned char alpn[256]; /* wire format: length-prefixed names */
  unsigned alpn_len;
};

struct mb_tls {
  SSL *ssl;
  BIO *in, *out;           /* in: ciphertext from the peer; out: to the peer */
  mb_tls_ctx_t *ctx;
};

static void err_text(char *err, size_t cap, const char *what) {
  unsigned long e = ERR_get_error();
  char buf[160] = "";
  if (e) ERR_error_string_n(e, buf, sizeof buf);
  snprintf(err, cap, "%s%s%s", what, *buf ? ": " : "", buf);
  ERR_clear_error();
}

/* Server side: the first of our protocols the client offers. */
static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned inlen, void *arg) {
  (void)ssl;
  mb_tls_ctx_t *c = arg;
  unsigned char *sel = NULL;
  if (SSL_select_next_proto(&sel, outlen, c->alpn, c->alpn_len, in, inlen) != OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK;
  *out = sel;
  return SSL_TLSEXT_ERR_OK;
}

mb_tls_ctx_t *mb_tls_ctx_new(int server, const mb_tls_opts_t *o, char *err, size_t cap) {
  mb_tls_ctx_t *c = calloc(1, sizeof *c);
  if (!c) {
    snprintf(err, cap, "out of memory");
    return NULL;
  }
  c->server = server;
  c->verify = o->verify;
  atomic_init(&c->refs, 1);
  c->ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (!c->ctx) goto fail_ssl;
  SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
  SSL_CTX_set_mode(c->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (o->certfile && SSL_CTX_use_certificate_chain_file(c->ctx, o->certfile) != 1) {
    err_text(err, cap, "tls: cannot load certfile");
    goto fail;
  }
  if (o->keyfile && SSL_CTX_use_PrivateKey_file(c->ctx, o->keyfile, SSL_FILETYPE_PEM) != 1) {
    err_text(err, cap, "tls: cannot load keyfile");
    goto fail;
  }
  if (o->certfile && o->keyfile && SSL_CTX_check_private_key(c->ctx) != 1) {
    err_text(err, cap, "tls: the key does not match the certificate");
    goto fail;
  }
  if (server && !o->certfile) {
    snprintf(err, cap, "tls: a server needs certfile and keyfile");
    goto fail;
  }
  if (o->verify) {
    int ok = o->cafile ? SSL_CTX_load_verify_locations(c->ctx, o->cafile, NULL)
                       : SSL_CTX_set_default_verify_paths(c->ctx);
    if (ok != 1) {
      err_text(err, cap, "tls: cannot load cafile");
      goto fail;
    }
    /* a server verifies clients only when asked (client certificates) */
    if (!server || o->verify_peer)
      SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER | (server ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0), NULL);
  }
  if (o->alpn_len) {
    if (o->alpn_len > sizeof c->alpn) {
      snprintf(err, cap, "tls: alpn list too long");
      goto fail;
    }
    memcpy(c->alpn, o->alpn, o->alpn_len);
    c->alpn_len = o->alpn_len;
    if (server) SSL_CTX_set_alpn_select_cb(c->ctx, select_alpn, c);
    else SSL_CTX_set_alpn_protos(c->ctx, c->alpn, c->alpn_len);
  }
  return c;
fail_ssl:
  err_text(err, cap, "tls: cannot make a context");
fail:
  if (c->ctx) SSL_CTX_free(c->ctx);
  free(c);
  return NULL;
}

void mb_tls_ctx_ref(mb_tls_ctx_t *c) { atomic_fetch_add(&c->refs, 1); }

void mb_tls_ctx_unref(mb_tls_ctx_t *c) {
  if (c && atomic_fetch_sub(&c->refs, 1) == 1) {
    SSL_CTX_free(c->ctx);
    free(c);
  }
}

mb_tls_t *mb_tls_new(mb_tls_ctx_t *c, const char *host) {
  mb_tls_t *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  t->ssl = SSL_new(c->ctx);
  t->in = BIO_new(BIO_s_mem());
  t->out = BIO_new(BIO_s_mem());
  if (!t->ssl || !t->in || !t->out) {
    if (t->ssl) SSL_free(t->ssl);
    if (t->in) BIO_free(t->in);
    if (t->out) BIO_free(t->out);
    free(t);
    return NULL;
  }
  BIO_set_mem_eof_return(t->in, -1);
  SSL_set_bio(t->ssl, t->in, t->out); /* the SSL owns the BIOs now */
  t->ctx = c;
  mb_tls_ctx_ref(c);
  if (c->server) {
    SSL_set_accept_state(t->ssl);
  } else {
    SSL_set_connect_state(t->ssl);
    if (host && *host) {
      /* SNI only for names, not literal addresses; the check covers both */
      unsigned char tmp[16];
      int literal = inet_pton_any(host, tmp);
      if (!literal) SSL_set_tlsext_host_name(t->ssl, host);
      if (c->verify) {
        X509_VERIFY_PARAM *vp = SSL_get0_param(t->ssl);
        if (literal) X509_VERIFY_PARAM_set1_ip_asc(vp, host);
        else SSL_set1_host(t->ssl, host);
      }
    }
  }
  return t;
}

void mb_tls_free(mb_tls_t *t) {
  if (!t) return;
  SSL_free(t->ssl);
  mb_tls_ctx_unref(t->ctx);
  free(t);
}

int mb_tls_feed(mb_tls_t *t, const void *data, size_t len) {
  return BIO_write(t->in, data, (int)len) == (int)len ? 0 : -1;
}

static int why(mb_tls_t *t, int r, char *err, size_t cap) {
  int e = SSL_get_error(t->ssl, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
  if (e == SSL_ERROR_ZERO_RETURN) return MB_TLS_CLOSED;
  long v = SSL_get_verify_result(t->ssl);
  if (v != X509_V_OK) {
    snprintf(err, cap, "tls: certificate verify failed (%s)", X509_verify_cert_error_string(v));
    ERR_clear_error();
  } else {
    err_text(err, cap, "tls");
  }
  return MB_TLS_ERROR;
}

int mb_tls_handshake(mb_tls_t *t, char *err, size_t cap) {
  int r = SSL_do_handshake(t->ssl);
  if (r == 1) return 1;
  return why(t, r, err, cap);
}

int mb_tls_read(mb_tls_t *t, void *buf, size_t cap, char *err, size_t ecap) {
  size_t n = 0;
  int r = SSL_read_ex(t->ssl, buf, cap, &n);
  if (r == 1) return (int)n;
  return why(t, 0, err, ecap);
}

int mb_tls_write(mb_tls_t *t, const void *data, size_t len, char *err, size_t cap) {
  size_t done = 0;
  while (done < len) { /* memory BIOs take everything: this never waits */
    size_t n = 0;
    if (SSL_write_ex(t->ssl, (const char *)data + done, len - done, &n) != 1) return why(t, 0, err, cap) ? -1 : -1;
    done += n;
  }
  return 0;
}

size_t mb_tls_pending(mb_tls_t *t) { return BIO_ctrl_pending(t->out); }

size_t mb_tls_take(mb_tls_t *t, void *buf, size_t cap) {
  int n = BIO_read(t->out, buf, (int)cap);
  return n > 0 ? (size_t)n : 0;
}

void mb_tls_close_notify(mb_tls_t *t) {
  if (SSL_is_init_finished(t->ssl)) SSL_shutdown(t->ssl);
  ERR_clear_error();
}

const char *mb_tls_alpn(mb_tls_t *t, size_t *len) {
  const unsigned char *p = NULL;
  unsigned n = 0;
  SSL_get0_alpn_selected(t->ssl, &p, &n);
  *len = n;
  return (const char *)p;
}

const char *mb_tls_server_name(mb_tls_t *t) { return SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name); }

const char *mb_tls_version(mb_tls_t *t) { return SSL_get_version(t->ssl); }
