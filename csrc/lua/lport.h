/* lport.h: ports in the Lua binding (lport.c) and the port types' bindings
 * (ltcp.c, ...). How a binding runs a command:
 *
 *   mb_port_t *p = mbl_port_check(L, 1, my_types);   NULL: closed or remote
 *   mb_port_cmd_t *c = mbl_port_cmd(L, OP_X);          caller = self, fresh ref
 *   c->arg[0] = ...; c->data = ...; c->len = ...;      borrowed from L's stack
 *   return mbl_port_run(L, p, c);                      results, maybe after waiting
 *
 * The results are the elements of the tuple the port put in c->res. */
#ifndef MB_LPORT_H
#define MB_LPORT_H

#include <lauxlib.h>
#include <lua.h>
#include "io/port.h"

#define MBL_PORT_MT "moonbeam.port"

/* Pushes the (interned) value of an open port / of a port id from a term. */
void mbl_port_push(lua_State *L, mb_port_t *p);
void mbl_port_push_id(lua_State *L, uint64_t id);
/* 1 if the value at idx is a port (its id in *id if not NULL). */
int mbl_port_is(lua_State *L, int idx, uint64_t *id);
/* The port at idx (raises if not a port, or not one of the NULL-ended types
 * when types is not NULL); NULL when it is closed for good or remote. */
mb_port_t *mbl_port_check(lua_State *L, int idx, const mb_port_type_t *const *types);
/* A command from the running process (raises outside one). */
mb_port_cmd_t *mbl_port_cmd(lua_State *L, int op);
/* Submits c to p and returns its results (waiting for the reply if needed). */
int mbl_port_run(lua_State *L, mb_port_t *p, mb_port_cmd_t *c);
/* For commands that create a port (connect): set up the wait for ref before
 * starting, then mbl_port_finish(L, c, r) with what the start returned. */
void mbl_port_prepare_wait(lua_State *L, mb_ref_t ref);
int mbl_port_finish(lua_State *L, mb_port_cmd_t *c, int r);
/* Encodes the port at idx (lterm.c); MB_EINVAL if it is not a port. */
int mbl_port_encode(lua_State *L, int idx, mb_enc_t *e);

/* Registers the io functions into the module table at -1 (lapi.c). */
void mbl_open_io(lua_State *L);
void mbl_open_tcp(lua_State *L);
void mbl_open_udp(lua_State *L);
void mbl_open_tls(lua_State *L);
/* ltls.c: the TLS context at idx (nil: NULL). */
struct mb_tls_ctx;
struct mb_tls_ctx *mbl_tls_optctx(lua_State *L, int idx);

/* ltcp.c: reads the socket option table at idx into o (raises on a bad one). */
struct mb_sockopts;
void mbl_sockopts(lua_State *L, int idx, struct mb_sockopts *o);

#endif
