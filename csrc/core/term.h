/* term.h: internals of the ETF codec (tags, byte order), shared by the core's tests. */
#ifndef MB_TERM_H
#define MB_TERM_H

#include "moonbeam.h"

/* ETF tags (erts/doc External Term Format). */
enum {
  MB_ETF_VERSION = 131,
  MB_ETF_NEW_FLOAT = 70, MB_ETF_NEW_PID = 88, MB_ETF_NEWER_REF = 90,
  MB_ETF_SMALL_INT = 97, MB_ETF_INT = 98, MB_ETF_ATOM = 100, MB_ETF_PID = 103,
  MB_ETF_SMALL_TUPLE = 104, MB_ETF_LARGE_TUPLE = 105, MB_ETF_NIL = 106,
  MB_ETF_STRING = 107, MB_ETF_LIST = 108, MB_ETF_BINARY = 109,
  MB_ETF_SMALL_BIG = 110, MB_ETF_LARGE_BIG = 111, MB_ETF_NEW_REF = 114,
  MB_ETF_SMALL_ATOM = 115, MB_ETF_MAP = 116, MB_ETF_ATOM_UTF8 = 118,
  MB_ETF_SMALL_ATOM_UTF8 = 119,
  MB_ETF_PORT = 102, MB_ETF_NEW_PORT = 89, MB_ETF_V4_PORT = 120
};

/* The local node's name when there is no node table. */
#define MB_NONODE "nonode@nohost"

static inline uint16_t mb_be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t mb_be32(const uint8_t *p)
{
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline void mb_put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static inline void mb_put32(uint8_t *p, uint32_t v)
{
  p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

/* Number of code points in s[0..n) if it is valid UTF-8 (no overlongs, surrogates
 * or values past U+10FFFF), else -1. */
long mb_utf8_chars(const uint8_t *s, size_t n);

#endif
