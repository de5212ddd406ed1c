/* lcrypto.c: moonbeam.core.crypto: OpenSSL's hashes, HMAC, AEAD and random bytes
 * for session cookies, CSRF tokens and the WebSocket accept key.
 *
 *   random(n)                    n bytes from RAND_bytes
 *   sha1(s) sha256(s)            raw digests
 *   hmac(alg, key, s)            raw HMAC ("sha1", "sha256", "sha512")
 *   pbkdf2(secret, salt, iterations, len)   PBKDF2-HMAC-SHA256
 *   seal(key32, iv12, plain, aad)  -> cipher .. tag16   (AES-256-GCM)
 *   open(key32, iv12, sealed, aad) -> plain, or nil if forged or damaged
 *   equal(a, b)                  constant-time comparison
 *   base64(s, url)  unbase64(s, url)   standard or URL-safe unpadded alphabet */
#include <lauxlib.h>
#include <lua.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <string.h>

#include "lua/lmb.h"

static int l_random(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  luaL_argcheck(L, n >= 0 && n <= 1 << 20, 1, "between 0 and 1 MB");
  luaL_Buffer b;
  unsigned char *p = (unsigned char *)luaL_buffinitsize(L, &b, (size_t)n);
  if (n > 0 && RAND_bytes(p, (int)n) != 1) return luaL_error(L, "RAND_bytes failed");
  luaL_pushresultsize(&b, (size_t)n);
  return 1;
}

static int digest(lua_State *L, const EVP_MD *md) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (EVP_Digest(s, len, out, &n, md, NULL) != 1) return luaL_error(L, "digest failed");
  lua_pushlstring(L, (const char *)out, n);
  return 1;
}

static int l_sha1(lua_State *L) { return digest(L, EVP_sha1()); }
static int l_sha256(lua_State *L) { return digest(L, EVP_sha256()); }

static const EVP_MD *md_of(lua_State *L, int idx) {
  static const char *const names[] = {"sha1", "sha256", "sha512", NULL};
  switch (luaL_checkoption(L, idx, NULL, names)) {
  case 0: return EVP_sha1();
  case 1: return EVP_sha256();
  default: return EVP_sha512();
  }
}

static int l_hmac(lua_State *L) {
  const EVP_MD *md = md_of(L, 1);
  size_t klen, len;
  const char *key = luaL_checklstring(L, 2, &klen);
  const char *s = luaL_checklstring(L, 3, &len);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (!HMAC(md, key, (int)klen, (const unsigned char *)s, len, out, &n))
    return luaL_error(L, "HMAC failed");
  lua_pushlstring(L, (const char *)out, n);
  return 1;
}

static int l_pbkdf2(lua_State *L) {
  size_t slen, saltlen;
  const char *secret = luaL_checklstring(L, 1, &slen);
  const char *salt = luaL_checklstring(L, 2, &saltlen);
  lua_Integer iter = luaL_checkinteger(L, 3);
  lua_Integer n = luaL_checkinteger(L, 4);
  luaL_argcheck(L, iter > 0 && iter <= 10000000, 3, "iterations out of range");
  luaL_argcheck(L, n > 0 && n <= 1024, 4, "length out of range");
  unsigned char out[1024];
  if (PKCS5_PBKDF2_HMAC(secret, (int)slen, (const unsigned char *)salt, (int)saltlen,
                        (int)iter, EVP_sha256(), (int)n, out) != 1)
    return luaL_error(L, "PBKDF2 failed");
  lua_pushlstring(L, (const char *)out, (size_t)n);
  return 1;
}

#define TAG_LEN 16

/* AES-256-GCM in one direction; returns the output length or -1. */
static int gcm(int enc, const unsigned char *key, const unsigned char *iv, const char *in,
               int inlen, const char *aad, int aadlen, unsigned char *out, unsigned char *tag) {
  EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
  if (!c) return -1;
  int ok = 0, n = 0, m = 0;
  if (EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) != 1) goto done;
  if (EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, 12, NULL) != 1) goto done;
  if (EVP_CipherInit_ex(c, NULL, NULL, key, iv, enc) != 1) goto done;
  if (aadlen > 0 && EVP_CipherUpdate(c, NULL, &n, (const unsigned char *)aad, aadlen) != 1)
    goto done;
  if (inlen > 0 && EVP_CipherUpdate(c, out, &n, (const unsigned char *)in, inlen) != 1) goto done;
  if (!enc && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag) != 1) goto done;
  if (EVP_CipherFinal_ex(c, out + n, &m) != 1) goto done;
  if (enc && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_LEN, tag) != 1) goto done;
  ok = 1;
done:
  EVP_CIPHER_CTX_free(c);
  return ok ? n + m : -1;
}

static void check_key_iv(lua_State *L, const char **key, const char **iv) {
  size_t klen, ivlen;
  *key = luaL_checklstring(L, 1, &klen);
  *iv = luaL_checklstring(L, 2, &ivlen);
  luaL_argcheck(L, klen == 32, 1, "key must be 32 bytes");
  luaL_argcheck(L, ivlen == 12, 2, "iv must be 12 bytes");
}

static int l_seal(lua_State *L) {
  const char *key, *iv;
  check_key_iv(L, &key, &iv);
  size_t len, aadlen;
  const char *in = luaL_checklstring(L, 3, &len);
  const char *aad = luaL_optlstring(L, 4, "", &aadlen);
  luaL_argcheck(L, len < (1u << 30), 3, "too long");
  luaL_Buffer b;
  unsigned char *out = (unsigned char *)luaL_buffinitsize(L, &b, len + TAG_LEN + 16);
  int n = gcm(1, (const unsigned char *)key, (const unsigned char *)iv, in, (int)len, aad,
              (int)aadlen, out, out + len);
  if (n != (int)len) return luaL_error(L, "AES-GCM failed");
  luaL_pushresultsize(&b, len + TAG_LEN);
  return 1;
}

static int l_open(lua_State *L) {
  const char *key, *iv;
  check_key_iv(L, &key, &iv);
  size_t len, aadlen;
  const char *in = luaL_checklstring(L, 3, &len);
  const char *aad = luaL_optlstring(L, 4, "", &aadlen);
  if (len < TAG_LEN || len >= (1u << 30)) {
    lua_pushnil(L);
    return 1;
  }
  size_t clen = len - TAG_LEN;
  unsigned char tag[TAG_LEN];
  memcpy(tag, in + clen, TAG_LEN);
  luaL_Buffer b;
  unsigned char *out = (unsigned char *)luaL_buffinitsize(L, &b, clen + 16);
  int n = gcm(0, (const unsigned char *)key, (const unsigned char *)iv, in, (int)clen, aad,
              (int)aadlen, out, tag);
  if (n < 0) {
    luaL_pushresultsize(&b, 0);
    lua_pop(L, 1);
    lua_pushnil(L);
    return 1;
  }
  luaL_pushresultsize(&b, (size_t)n);
  return 1;
}

static int l_equal(lua_State *L) {
  size_t a, b;
  const char *x = luaL_checklstring(L, 1, &a);
  const char *y = luaL_checklstring(L, 2, &b);
  lua_pushboolean(L, a == b && CRYPTO_memcmp(x, y, a) == 0);
  return 1;
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int l_base64(lua_State *L) {
  size_t len;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
  int url = lua_toboolean(L, 2);
  const char *abc = url ? B64URL : B64;
  luaL_Buffer b;
  char *o = luaL_buffinitsize(L, &b, (len + 2) / 3 * 4);
  size_t n = 0, i = 0;
  for (; i + 2 < len; i += 3) {
    uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
    o[n++] = abc[v >> 18];
    o[n++] = abc[(v >> 12) & 63];
    o[n++] = abc[(v >> 6) & 63];
    o[n++] = abc[v & 63];
  }
  if (i < len) {
    uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < len ? (uint32_t)s[i + 1] << 8 : 0);
    o[n++] = abc[v >> 18];
    o[n++] = abc[(v >> 12) & 63];
    if (i + 1 < len) o[n++] = abc[(v >> 6) & 63];
    else if (!url) o[n++] = '=';
    if (!url) o[n++] = '=';
  }
  luaL_pushresultsize(&b, n);
  return 1;
}

static int l_unbase64(lua_State *L) {
  size_t len;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
  int url = lua_toboolean(L, 2);
  const char *abc = url ? B64URL : B64;
  signed char rev[256];
  memset(rev, -1, sizeof rev);
  for (int i = 0; i < 64; i++) rev[(unsigned char)abc[i]] = (signed char)i;
  while (len > 0 && s[len - 1] == '=') len--;
  if (len % 4 == 1) goto bad;
  luaL_Buffer b;
  unsigned char *o = (unsigned char *)luaL_buffinitsize(L, &b, len / 4 * 3 + 3);
  size_t n = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < len; i++) {
    int v = rev[s[i]];
    if (v < 0) {
      luaL_pushresultsize(&b, 0);
      lua_pop(L, 1);
      goto bad;
    }
    acc = acc << 6 | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      o[n++] = (unsigned char)(acc >> bits);
    }
  }
  luaL_pushresultsize(&b, n);
  return 1;
bad:
  lua_pushnil(L);
  return 1;
}

void mbl_open_crypto(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"random", l_random}, {"sha1", l_sha1}, {"sha256", l_sha256}, {"hmac", l_hmac},
    {"pbkdf2", l_pbkdf2}, {"seal", l_seal}, {"open", l_open}, {"equal", l_equal},
    {"base64", l_base64}, {"unbase64", l_unbase64}, {NULL, NULL}};
  luaL_newlib(L, funcs);
  lua_setfield(L, -2, "crypto");
}
