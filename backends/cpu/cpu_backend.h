/* cpu_backend.h - the built-in CPU backend (internal). */
#ifndef FACEPAY_CPU_BACKEND_H
#define FACEPAY_CPU_BACKEND_H

#include "facepay/backend.h"
#include "fpay_cpu.h"
#include "fpay_kernels.h"

/* The backend's interface struct (static). */
const fpay_backend_iface *fpay_cpu_backend(void);

/* Runs one node on the reference kernels; also used by the optimizer to fold
 * constants. */
fpay_status fpay_cpu_run_node(const fpay_exec_ctx *ctx, int index, char *err,
                              size_t err_len);

/* Per-session state of prepare (cpu_fast.c): chosen ISA, packed weights,
 * kernel per node, thread pool. None of it depends on the input shapes: a
 * session prepares it once and keeps it over reshapes. */
typedef struct fpay_cpu_state fpay_cpu_state;
fpay_status fpay_cpu_prepare(const fpay_graph *graph, const bool *mine, int threads,
                             void **state, char *err, size_t err_len);
/* Prepares the nodes of mine (NULL: all) that state has not prepared yet
 * (a new partition may give the CPU nodes it did not run before). */
fpay_status fpay_cpu_prepare_more(void *state, const fpay_graph *graph, const bool *mine,
                                  char *err, size_t err_len);
void fpay_cpu_release(void *state);
/* How many nodes' constant weights state has packed (each once). */
long fpay_cpu_state_packs(const fpay_cpu_state *s);
/* Runs node index on its SIMD kernel; false if it has none (run the
 * reference kernel). */
bool fpay_cpu_fast_run(fpay_cpu_state *s, const fpay_exec_ctx *ctx, int index);
/* The ISA a prepared session uses, and the SIMD kernel of a node (NULL:
 * reference), for reports (facepay cpuinfo, tests). */
fpay_isa fpay_cpu_state_isa(const fpay_cpu_state *s);
const char *fpay_cpu_state_kernel(const fpay_cpu_state *s, int index);

void fpay_cpu_conv_params(const fpay_exec_ctx *ctx, const fpay_node *n,
                          fpay_conv_params *p);
void fpay_cpu_pool_params(const fpay_exec_ctx *ctx, const fpay_node *n,
                          fpay_pool_params *p);
/* The clamp activation of a pool, in place. */
void fpay_cpu_pool_act(const fpay_node *n, size_t count, float *out);

/* Broadcast strides of a op b into out (shapes already checked). */
void fpay_cpu_make_bcast(const fpay_tensor *a, const fpay_tensor *b,
                         const fpay_tensor *out, fpay_bcast *bc);

#endif
