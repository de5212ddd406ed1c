/* lsysio.h: the Lua binding of files, subprocesses and mb.blocking (csrc/io).
 *
 * Each request a process makes (a file operation, a blocking job) is answered
 * by one reply message tagged with a fresh ref (mb_send_io_reply), whose term is
 * {Ref, Value...}: the process marks its mailbox, issues the request, and waits
 * for that reply alone (mbl_await), as a gen call does, decoding nothing else.
 * The values become the Lua function's results. */
#ifndef MB_LSYSIO_H
#define MB_LSYSIO_H

#include "lmb.h"

/* Registers the functions of this part into the table at the top (the module
 * table of moonbeam.core; upvalue 1 of each is the VM's box). */
void mbl_open_sysio(lua_State *L);

/* Waits, yielding the process, for the reply tagged ref, whose request was
 * issued after mb_mailbox_mark; returns (to Lua) the reply's values after the
 * ref. Clears L's stack. Must be the C function's tail: return mbl_await(...). */
int mbl_await(lua_State *L, mbl_proc_t *lp, mb_ref_t ref);

/* lblocking.c: stops the runtime, ends brt's blocking pool (waiting for
 * running jobs) and frees it; called before the runtime is freed. */
void mbl_blocking_shutdown(mbl_rt_t *brt);
/* The runtime option blocking_pool in the opts table at idx (mb.run, mb.start):
 * 1..256, or 0 when absent; raises on anything else. */
int mbl_blocking_opt(lua_State *L, int idx);
/* Registers blocking's functions (from mbl_open_sysio). */
void mbl_open_blocking(lua_State *L);
/* lfile.c, lsubprocess.c */
void mbl_open_file(lua_State *L);
void mbl_open_subprocess(lua_State *L);

#endif
