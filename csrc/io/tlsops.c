/* tlsops.c: where the core finds the TLS functions (tls.h). They live in the
 * moonbeam.tls_core module (the one object linked with OpenSSL), which
 * moonbeam.tls loads and installs on first use; one pointer per OS process,
 * to code that never changes once installed. */
#include <stdatomic.h>
#include "io/tls.h"

static _Atomic(const mb_tls_ops_t *) installed;

void mb_tls_install(const mb_tls_ops_t *ops) { atomic_store_explicit(&installed, ops, memory_order_release); }

const mb_tls_ops_t *mb_tls_ops(void) { return atomic_load_explicit(&installed, memory_order_acquire); }
