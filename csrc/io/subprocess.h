/* subprocess.h: subprocesses as ports (Erlang's spawn_executable ports).
 *
 * A subprocess port runs a program with pipes for stdin, stdout and stderr on
 * the creating scheduler's loop. Its owner gets {"stdout", Port, Data} and
 * {"stderr", Port, Data} (chunks as they come, or one message per line without
 * its "\n" in line mode; a last line without "\n" comes at the end), then
 * {"exit_status", Port, Code} once the program has exited and both pipes have
 * ended (Code 128 + N for a program killed by signal N), after which the port
 * closes. Closing the port (or its owner's exit) kills a program still running
 * (SIGKILL) and reaps it. Commands: write to stdin (answered once written),
 * close stdin, send a signal, the OS pid. With stderr into stdout, stderr's
 * data comes as "stdout" messages (its order against stdout's is not kept:
 * they are two pipes). */
#ifndef MB_IO_SUBPROCESS_H
#define MB_IO_SUBPROCESS_H

#include "io/port.h"

enum { MB_SUBPROC_STDERR_MESSAGE = 0, MB_SUBPROC_STDERR_STDOUT, MB_SUBPROC_STDERR_IGNORE,
       MB_SUBPROC_STDERR_INHERIT };

typedef struct mb_subproc_opts {
  const char *file;          /* program: a path, or a name looked up in PATH */
  char **args;               /* argv, NULL-terminated, args[0] = file */
  char **env;                /* NULL: inherit this process's environment */
  const char *cwd;           /* NULL: inherit */
  int lines;                 /* 1: one message per line */
  int stderr_mode;           /* MB_SUBPROC_STDERR_* */
} mb_subproc_opts_t;

/* Command ops (mb_port_cmd_t.op). */
enum { MB_SUBPROC_WRITE = 1,   /* data: bytes for stdin -> {true} once written */
       MB_SUBPROC_CLOSE_STDIN, /* -> {true}: the program reads end of file */
       MB_SUBPROC_KILL,        /* arg[0]: signal number -> {true} */
       MB_SUBPROC_OS_PID };    /* -> {pid} */

extern const mb_port_type_t mb_subproc_type;

/* Starts the program on the calling scheduler's loop, owned by owner. Returns 0
 * with *out (its open reference is the port's own: take one to keep it), or a
 * libuv error: UV_ENOENT (no such program), UV_EACCES, UV_EMFILE, UV_ENOMEM,
 * UV_EINVAL (not on a scheduler thread), UV_ESRCH (the owner is dead). */
int mb_subproc_spawn(mb_runtime_t *rt, mb_pid_t owner, const mb_subproc_opts_t *o, mb_port_t **out);

#endif
