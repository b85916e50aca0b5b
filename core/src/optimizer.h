/* optimizer.h - graph rewriting passes (internal).
 *
 * Every pass needs shapes (run fpay_graph_infer_shapes first), keeps the
 * graph valid and returns how many rewrites it made, or -1 on out of memory.
 * Each rewrite computes the same numbers as the nodes it replaces, bit for
 * bit, on the reference kernels (see the comment on each pass). */
#ifndef FACEPAY_OPTIMIZER_H
#define FACEPAY_OPTIMIZER_H

#include "graph.h"

typedef struct fpay_opt_report {
    int prelu_fused;
    int softmax_fused;
    int constants_folded;
    int bias_fused;
    int activations_fused;
    int identities_removed;
    int dead_removed;
    int residuals_fused;
} fpay_opt_report;

int fpay_pass_fuse_prelu(fpay_graph *g);
int fpay_pass_fuse_softmax(fpay_graph *g);
int fpay_pass_fold_constants(fpay_graph *g, char *err, size_t err_len);
int fpay_pass_fuse_bias(fpay_graph *g);
int fpay_pass_fuse_activation(fpay_graph *g);
int fpay_pass_remove_identity(fpay_graph *g);
int fpay_pass_remove_dead(fpay_graph *g);
/* conv (no activation) -> ADD of a same-shaped tensor: a residual input. */
int fpay_pass_fuse_residual(fpay_graph *g);

/* All passes in order: fold constants, fuse PReLU, fuse softmax, remove
 * identities, fuse bias, fuse residuals, fuse activations, remove dead
 * nodes. */
fpay_status fpay_optimize(fpay_graph *g, fpay_opt_report *report, char *err,
                          size_t err_len);

#endif
