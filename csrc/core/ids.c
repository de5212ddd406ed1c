/* ids.c: pid packing, reference equality and error names.
 * A pid is node:8 | rest:56 (high to low bits); 0 is never valid. The rest of a
 * local pid (node 0) is serial:32 | index:24, so a slot goes through 2^32 pids
 * before one repeats; a remote pid keeps what another node's 32-bit ids need,
 * serial:24 | index:32. */
#include "moonbeam.h"

#define IDX24 0xFFFFFFu

mb_pid_t mb_pid_make(uint32_t node, uint32_t index, uint32_t serial)
{
  if ((node & 0xFFu) == 0) return ((uint64_t)serial << 24) | (index & IDX24);
  return ((uint64_t)(node & 0xFFu) << 56) | ((uint64_t)(serial & IDX24) << 32) | index;
}

uint32_t mb_pid_node(mb_pid_t pid) { return (uint32_t)(pid >> 56); }
uint32_t mb_pid_index(mb_pid_t pid) { return pid >> 56 ? (uint32_t)pid : (uint32_t)pid & IDX24; }
uint32_t mb_pid_serial(mb_pid_t pid)
{
  return pid >> 56 ? (uint32_t)(pid >> 32) & IDX24 : (uint32_t)(pid >> 24);
}

int mb_ref_equal(mb_ref_t a, mb_ref_t b)
{
  return a.node == b.node && a.id[0] == b.id[0] && a.id[1] == b.id[1] && a.id[2] == b.id[2];
}

const char *mb_strerror(int err)
{
  switch (err) {
  case 0: return "success";
  case MB_EINVAL: return "invalid argument";
  case MB_ENOMEM: return "out of memory";
  case MB_ENOPROC: return "no such process";
  case MB_EBADTERM: return "malformed, truncated or unsupported term";
  case MB_EDEPTH: return "term nested too deeply";
  case MB_EEXIST: return "name already registered";
  case MB_ENOENT: return "no such name, timer or monitor";
  case MB_ETIMEDOUT: return "timed out";
  case MB_ESTOPPED: return "runtime stopped";
  case MB_ELIMIT: return "limit reached";
  case MB_ERANGE: return "integer out of 64-bit range";
  default: return "unknown error";
  }
}
