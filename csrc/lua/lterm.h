/* lterm.h: Lua values <-> ETF terms (the DESIGN.md mapping), and the pid, ref,
 * atom and tuple values of the Lua binding. */
#ifndef MB_LTERM_H
#define MB_LTERM_H

#include <lauxlib.h>
#include <lua.h>

#include "moonbeam.h"

/* Metatable names (registry keys, and __name). */
#define MB_LTERM_PID "moonbeam.pid"
#define MB_LTERM_REF "moonbeam.ref"
#define MB_LTERM_ATOM "moonbeam.atom"
#define MB_LTERM_TUPLE "moonbeam.tuple"
#define MB_LTERM_PACKED "moonbeam.packed"

/* Once per VM: creates the metatables for pid, ref, atom and tuple values and
 * remembers the node table (registry). */
void mb_lterm_open(lua_State *L, mb_nodes_t *nodes);
/* The node table given to mb_lterm_open (NULL if none). */
mb_nodes_t *mb_lterm_nodes(lua_State *L);

/* Interned: equal pids push the SAME userdata (weak-valued cache in the
 * registry), so pids work as table keys. */
void mb_lterm_pushpid(lua_State *L, mb_pid_t pid);
/* 0 if not a pid. */
mb_pid_t mb_lterm_topid(lua_State *L, int idx);
/* Raises "bad argument #idx (pid expected, got X)". */
mb_pid_t mb_lterm_checkpid(lua_State *L, int idx);
/* Interned too. */
void mb_lterm_pushref(lua_State *L, mb_ref_t ref);
/* 1 if a ref (stored in *out), else 0. */
int mb_lterm_toref(lua_State *L, int idx, mb_ref_t *out);

/* Encodes the value at idx into e. On failure returns an MB_E* code (also left
 * in e->err) and writes into err a message naming the path from `root`, e.g.
 * "msg.handler: cannot send a function". Nothing is pushed or left on the
 * stack either way. */
int mb_lterm_encode(lua_State *L, int idx, mb_enc_t *e, const char *root, char *err,
                    size_t errlen);
/* Decodes one term from d and pushes it; on error pushes nothing and returns
 * an MB_E* code (MB_ERANGE: integer past int64; MB_EBADTERM: improper list,
 * nil or NaN map key, malformed; MB_EDEPTH). */
int mb_lterm_decode(lua_State *L, mb_dec_t *d);

/* Packed values (gen.pack): an opaque userdata holding blob[0..len), which
 * messages carry with a keyed hash so no other bytes decode as one. */
void mb_lterm_pushpacked(lua_State *L, const uint8_t *blob, size_t len);
/* The blob of the packed value at idx (length in *len), or NULL if not one. */
const uint8_t *mb_lterm_topacked(lua_State *L, int idx, size_t *len);

/* lua_CFunction for mb.atom(s): an atom value (interned). */
int mb_lterm_atom(lua_State *L);
/* lua_CFunction for mb.tuple(...): a table with the tuple metatable, fields
 * 1..n and n. */
int mb_lterm_tuple(lua_State *L);

#endif
