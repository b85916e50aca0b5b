/*
 * graph.h - building and editing the IR (internal to libfacepay).
 *
 * The importer builds a graph with these helpers; the optimizer edits it;
 * sessions clone it and run shape inference on the clone.
 */
#ifndef FACEPAY_GRAPH_H
#define FACEPAY_GRAPH_H

#include "facepay/backend.h"
#include "status.h" /* fpay_set_err */

#include <stdarg.h>


void fpay_graph_init(fpay_graph *g);
void fpay_graph_free(fpay_graph *g);

/* Allocates size bytes (64-byte aligned, zeroed) owned by the graph. NULL on
 * out of memory. */
void *fpay_graph_alloc(fpay_graph *g, size_t size);
/* Copies a string into graph-owned memory. */
const char *fpay_graph_strdup(fpay_graph *g, const char *s, size_t len);

/* Appends a tensor; returns its index or -1 on out of memory. The tensor
 * struct is copied; name and data must already be graph-owned (or NULL). */
int fpay_graph_add_tensor(fpay_graph *g, const fpay_tensor *t);
/* Appends a node; returns its index or -1 on out of memory. */
int fpay_graph_add_node(fpay_graph *g, const fpay_node *n);
/* Adds a graph-owned constant f32 tensor copied from values. */
int fpay_graph_add_const_f32(fpay_graph *g, const char *name, int rank,
                             const int64_t *dims, const float *values);

/* Deep copy: dst gets its own tensor/node arrays; constant data and names are
 * shared with src (src must outlive dst). */
fpay_status fpay_graph_clone_shallow(fpay_graph *dst, const fpay_graph *src);

/* A node initialised with no inputs/outputs, act NONE, act_slope -1. */
void fpay_node_init(fpay_node *n, fpay_op op);

/* Number of elements; -1 if a dim is negative or the product overflows
 * INT64_MAX / 16. */
int64_t fpay_tensor_count(const fpay_tensor *t);
int64_t fpay_dims_count(int rank, const int64_t *dims);

/* Consumers: how many node inputs (including act_slope) read tensor t. */
int fpay_graph_consumers(const fpay_graph *g, int t);
bool fpay_graph_is_output(const fpay_graph *g, int t);

/* Removes nodes whose flag in drop[] is set, keeping order. */
void fpay_graph_remove_nodes(fpay_graph *g, const bool *drop);

/* Checks structure: indices in range, topological order, every non-const,
 * non-input tensor read by a node is written before it. err gets the first
 * problem. */
fpay_status fpay_graph_validate(const fpay_graph *g, char *err, size_t err_len);

/* Shape inference over the whole graph from the current input shapes:
 * fills every activation tensor's dims and the explicit padding of conv/pool
 * nodes, and checks each node's constraints (channel counts, weight shapes,
 * broadcastability, dtypes). A failure names the node and what is wrong. */
fpay_status fpay_graph_infer_shapes(fpay_graph *g, char *err, size_t err_len);

/* Multiply-accumulates of conv/dwconv/fc at the current shapes. */
int64_t fpay_graph_macs(const fpay_graph *g);


/* STRIDED_SLICE resolved against a concrete input shape (TFLite semantics:
 * masks, negative indices, clamping). begin/strides/out_dims have in_rank
 * entries (shrunk axes have out_dims 1); out_rank/out_shape exclude shrunk
 * axes. */
typedef struct fpay_slice_plan {
    int rank;
    int64_t begin[FPAY_MAX_RANK], strides[FPAY_MAX_RANK], dims[FPAY_MAX_RANK];
    int out_rank;
    int64_t out_shape[FPAY_MAX_RANK];
} fpay_slice_plan;

fpay_status fpay_slice_resolve(const fpay_slice_attr *a, int in_rank,
                               const int64_t *in_dims, fpay_slice_plan *plan,
                               char *err, size_t err_len);

/* Broadcast shapes of a and b (numpy rules). out gets the result rank/dims. */
bool fpay_broadcast_shape(const fpay_tensor *a, const fpay_tensor *b,
                          int *out_rank, int64_t *out_dims);

#endif /* FACEPAY_GRAPH_H */
