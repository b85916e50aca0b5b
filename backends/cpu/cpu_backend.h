/* cpu_backend.h - the built-in CPU backend (internal). */
#ifndef FACEPAY_CPU_BACKEND_H
#define FACEPAY_CPU_BACKEND_H

#include "facepay/backend.h"
#include "fpay_kernels.h"

/* The backend's interface struct (static). */
const fpay_backend_iface *fpay_cpu_backend(void);

/* Runs one node on the reference kernels; also used by the optimizer to fold
 * constants. */
fpay_status fpay_cpu_run_node(const fpay_exec_ctx *ctx, int index, char *err,
                              size_t err_len);

/* Broadcast strides of a op b into out (shapes already checked). */
void fpay_cpu_make_bcast(const fpay_tensor *a, const fpay_tensor *b,
                         const fpay_tensor *out, fpay_bcast *bc);

#endif
