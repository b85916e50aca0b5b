/*
 * backend.h - the implementer header: the graph IR and the backend ABI.
 *
 * Application code includes facepay.h only. Backend authors (the built-in CPU
 * backend and run-time plugins) include this header as well. The IR structs
 * are part of the backend ABI: fields are only appended, and
 * FPAY_BACKEND_ABI_VERSION changes when a layout changes.
 */
#ifndef FACEPAY_BACKEND_H
#define FACEPAY_BACKEND_H

#include "facepay/facepay.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------- ops */

/* One list drives the enum, the names and the per-op tables. Each is a TFLite
 * builtin the importer takes as it is; PRELU and SOFTMAX also come from the
 * optimizer, which fuses the decomposed forms in the bundled models into them
 * (PReLU written with RELU, ABS, SUB and MUL; softmax with EXP, SUM, DIV).
 * L2_NORMALIZE is only imported (TFLite's L2_NORMALIZATION). Appended, never
 * reordered. */
#define FPAY_OP_LIST(X)                                                       \
    X(CONV_2D)                                                                \
    X(DEPTHWISE_CONV_2D)                                                      \
    X(FULLY_CONNECTED)                                                        \
    X(ADD)                                                                    \
    X(SUB)                                                                    \
    X(MUL)                                                                    \
    X(DIV)                                                                    \
    X(ABS)                                                                    \
    X(NEG)                                                                    \
    X(RELU)                                                                   \
    X(RELU6)                                                                  \
    X(LEAKY_RELU)                                                             \
    X(EXP)                                                                    \
    X(MAX_POOL_2D)                                                            \
    X(AVERAGE_POOL_2D)                                                        \
    X(REDUCE_MAX)                                                             \
    X(SUM)                                                                    \
    X(RESHAPE)                                                                \
    X(STRIDED_SLICE)                                                          \
    X(CONCATENATION)                                                          \
    X(CAST)                                                                   \
    X(GREATER_EQUAL)                                                          \
    X(LESS)                                                                   \
    X(DEQUANTIZE)                                                             \
    X(PRELU)                                                                  \
    X(SOFTMAX)                                                                \
    X(L2_NORMALIZE)

typedef enum fpay_op {
#define FPAY_OP_ENUM_(name) FPAY_OP_##name,
    FPAY_OP_LIST(FPAY_OP_ENUM_)
#undef FPAY_OP_ENUM_
    FPAY_OP_COUNT_
} fpay_op;

FPAY_API const char *fpay_op_name(fpay_op op);

/* Activation applied in the epilogue of conv, depthwise conv, fully connected
 * and the binary arithmetic ops, while the value is still in registers. */
typedef enum fpay_act {
    FPAY_ACT_NONE = 0,
    FPAY_ACT_RELU,
    FPAY_ACT_RELU_N1_TO_1,
    FPAY_ACT_RELU6,
    FPAY_ACT_PRELU,      /* per-channel slope: node->act_slope tensor [C] */
    FPAY_ACT_LEAKY_RELU, /* slope node->act_alpha */
} fpay_act;

typedef enum fpay_padding { FPAY_PAD_SAME = 0, FPAY_PAD_VALID = 1 } fpay_padding;

/* --------------------------------------------------------------- tensors */

enum {
    FPAY_TENSOR_CONST = 1u << 0,  /* data holds the value */
    FPAY_TENSOR_INPUT = 1u << 1,  /* a graph input */
    FPAY_TENSOR_OUTPUT = 1u << 2, /* a graph output */
};

typedef struct fpay_tensor {
    const char *name;            /* owned by the graph */
    fpay_dtype dtype;
    int rank;
    int64_t dims[FPAY_MAX_RANK];
    unsigned flags;
    const void *data;            /* CONST tensors: owned by the graph, 64-byte
                                    aligned, nbytes long */
    size_t nbytes;
} fpay_tensor;

#define FPAY_MAX_NODE_INPUTS 16

/* CONV_2D inputs: 0 input, 1 weights, 2 bias (-1: none), and optionally
 * 3 a residual tensor of the output's shape, made by the optimizer from
 * conv -> ADD (fpay_pass_fuse_residual). Semantics: the conv's taps + bias,
 * THEN + residual, THEN the node's activation: bit for bit the unfused conv
 * (no activation) followed by ADD with that activation. A backend that does
 * not implement input 3 must say no in supports_node for a CONV_2D with
 * n_inputs > 3 (the node then runs on the CPU backend). */
#define FPAY_CONV_INPUT_RESIDUAL 3
#define FPAY_MAX_NODE_OUTPUTS 4

typedef struct fpay_conv_attr {
    fpay_padding padding;
    int stride_h, stride_w;
    int dilation_h, dilation_w;
    int depth_multiplier;        /* depthwise only */
    /* Explicit padding, filled by shape inference from `padding`. */
    int pad_top, pad_left, pad_bottom, pad_right;
} fpay_conv_attr;

typedef struct fpay_pool_attr {
    fpay_padding padding;
    int stride_h, stride_w;
    int filter_h, filter_w;
    int pad_top, pad_left, pad_bottom, pad_right; /* from shape inference */
} fpay_pool_attr;

typedef struct fpay_reshape_attr {
    int rank;
    int64_t dims[FPAY_MAX_RANK]; /* one entry may be -1 (inferred) */
    bool batch_follows;          /* dims[0] was the declared batch: it follows
                                    the input's dim 0 when the batch changes */
} fpay_reshape_attr;

typedef struct fpay_slice_attr {
    int rank;                    /* length of begin/end/strides */
    int64_t begin[FPAY_MAX_RANK], end[FPAY_MAX_RANK], strides[FPAY_MAX_RANK];
    int begin_mask, end_mask, ellipsis_mask, new_axis_mask, shrink_axis_mask;
} fpay_slice_attr;

typedef struct fpay_node {
    fpay_op op;
    int n_inputs, n_outputs;
    int inputs[FPAY_MAX_NODE_INPUTS];   /* tensor indices; -1 = optional input
                                           absent (e.g. conv without bias) */
    int outputs[FPAY_MAX_NODE_OUTPUTS];
    fpay_act act;                       /* fused activation */
    float act_alpha;                    /* LEAKY_RELU slope */
    int act_slope;                      /* PRELU slope tensor, else -1 */
    union {
        fpay_conv_attr conv;            /* CONV_2D, DEPTHWISE_CONV_2D */
        fpay_pool_attr pool;            /* MAX/AVERAGE_POOL_2D */
        fpay_reshape_attr reshape;      /* RESHAPE */
        fpay_slice_attr slice;          /* STRIDED_SLICE */
        struct { int keep_num_dims; } fc;
        struct { int axis; } concat;    /* normalised to 0..rank-1 */
        struct { int keep_dims; unsigned axes_mask; } reduce; /* bit i: axis i */
        struct { float alpha; } leaky;  /* LEAKY_RELU op */
        struct { fpay_dtype to; } cast;
        struct { float epsilon; } l2;   /* L2_NORMALIZE over the last axis */
    } attr;
    int source_index;                   /* operator index in the model file */
} fpay_node;

/* The graph: nodes in topological order. */
typedef struct fpay_graph {
    fpay_tensor *tensors;
    int n_tensors, cap_tensors;
    fpay_node *nodes;
    int n_nodes, cap_nodes;
    int *inputs;
    int n_inputs;
    int *outputs;
    int n_outputs;
    /* Memory owned by the graph (names, constant data): freed with it. */
    void **owned;
    int n_owned, cap_owned;
} fpay_graph;

/* ------------------------------------------------------- backend ABI */

/* 1: first layout. 2: CONV_2D/DEPTHWISE_CONV_2D may carry a residual input
 * (FPAY_CONV_INPUT_RESIDUAL) and run_range was appended; a plugin built for
 * 1 would silently ignore the residual, so it is refused. */
#define FPAY_BACKEND_ABI_VERSION 2u

/* What a backend gets to run a prepared graph: every tensor's storage.
 * buffers[t] points at tensor t's bytes (constants point at their data). */
typedef struct fpay_exec_ctx {
    const fpay_graph *graph;     /* shapes are final for this run */
    void **buffers;
    int threads;
} fpay_exec_ctx;

/* The versioned, append-only backend interface. A plugin exports one symbol,
 * `fpay_backend_entry`, that returns a pointer to a static instance. Slots
 * marked optional may be NULL; the documented default then applies. */
typedef struct fpay_backend_iface {
    uint32_t abi_version;        /* FPAY_BACKEND_ABI_VERSION it was built for */
    uint32_t struct_size;        /* sizeof(fpay_backend_iface) it was built with */
    const char *name;            /* short, lowercase: "cpu", "xnnpack" */
    const char *version;         /* the backend's own version string */

    /* Optional. Can this backend run on this machine? Writes the reason of a
     * "no" into why. Default: available. */
    fpay_status (*probe)(char *why, size_t why_len);

    /* Required. Can it run node `index` of graph at the shapes given? */
    bool (*supports_node)(const fpay_graph *graph, int index);

    /* Optional. Prepare the nodes it will run (pack weights, build
     * pipelines). *state receives backend-owned state passed to run_node and
     * release. Called again after every reshape. Default: no state. */
    fpay_status (*prepare)(const fpay_graph *graph, const bool *mine,
                           int threads, void **state, char *err,
                           size_t err_len);

    /* Required. Runs node `index`; tensors live in ctx->buffers. */
    fpay_status (*run_node)(void *state, const fpay_exec_ctx *ctx, int index,
                            char *err, size_t err_len);

    /* Optional. Frees *state from prepare. */
    void (*release)(void *state);

    /* Optional (ABI 2, appended). Runs nodes first..last (inclusive), all of
     * them this backend's, in one call: lets a backend that compiles a
     * partition into one runtime (XNNPACK, oneDNN, Vulkan) execute it without
     * a call per node. Default: run_node for each node. */
    fpay_status (*run_range)(void *state, const fpay_exec_ctx *ctx, int first,
                             int last, char *err, size_t err_len);

    /* ABI 2, appended. FPAY_BACKEND_CAP_* bits. */
    uint32_t caps;
} fpay_backend_iface;

/* The backend runs on an accelerator (a GPU): "auto" prefers it to the CPU.
 * CPU libraries (XNNPACK, oneDNN) leave it unset: our own CPU backend is the
 * one to beat on a CPU, and they are chosen by name for comparison. */
#define FPAY_BACKEND_CAP_ACCELERATOR 1u

typedef const fpay_backend_iface *(*fpay_backend_entry_fn)(void);

/* The one symbol a backend plugin (a shared library) exports:
 *   const fpay_backend_iface *fpay_backend_entry(void);
 * Plugins link nothing of the host; the inline helpers below are what they
 * may use of ours. */
#define FPAY_BACKEND_ENTRY_SYMBOL "fpay_backend_entry"

/* Plugins build with -fvisibility=hidden and mark the entry with this. */
#define FPAY_BACKEND_EXPORT __attribute__((visibility("default")))

/* One line into a caller's error buffer (err may be NULL). */
static inline void fpay_backend_set_err(char *err, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline void fpay_backend_set_err(char *err, size_t len, const char *fmt, ...)
{
    if (!err || !len)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, len, fmt, ap);
    va_end(ap);
}

static inline size_t fpay_backend_dtype_size(fpay_dtype dtype)
{
    switch (dtype) {
    case FPAY_DT_F32: case FPAY_DT_I32: return 4;
    case FPAY_DT_F16: return 2;
    case FPAY_DT_I64: return 8;
    case FPAY_DT_U8: case FPAY_DT_I8: case FPAY_DT_BOOL: return 1;
    }
    return 0;
}

static inline int64_t fpay_backend_elems(const fpay_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->rank; i++)
        n *= t->dims[i];
    return n; /* shapes reaching a backend were checked by shape inference */
}

/* The registry (core/src/backend_registry.c). The built-in CPU backend is
 * always registered. */
FPAY_API int fpay_backend_count(void);
FPAY_API const fpay_backend_iface *fpay_backend_get(int index);
FPAY_API const fpay_backend_iface *fpay_backend_find(const char *name);
/* Adds a backend (e.g. a test double); rejects it with a reason in err when
 * its abi_version/struct_size do not match or required slots are NULL. */
FPAY_API fpay_status fpay_backend_register(const fpay_backend_iface *iface,
                                           char *err, size_t err_len);

/* ------------------------------------------------- plugin loading (issue 4)
 *
 * Backend plugins are shared libraries named libfacepay-backend-<name>.so
 * that export FPAY_BACKEND_ENTRY_SYMBOL. They are loaded once per process
 * (on first use of the registry) from, in this order: every folder of
 * $FACEPAY_BACKEND_PATH (colon-separated), the executable's folder, its
 * ../lib/facepay/backends, and the install folder
 * (<libdir>/facepay/backends). Within a folder files load in name order; a
 * file already loaded (same real path) or a name already registered is
 * skipped. FACEPAY_DISABLE_<NAME>=1 (upper-case) skips plugin <name>. See
 * docs/backends.md. */

/* Number of plugins that were found but not registered. */
FPAY_API int fpay_backend_rejected_count(void);
/* Rejection i: the plugin's path and why it was refused (static strings,
 * valid for the life of the process). FPAY_NOT_FOUND for a bad index. */
FPAY_API fpay_status fpay_backend_rejected(int index, const char **path,
                                           const char **reason);
/* Where registered backend `index` came from: "built-in", "registered by
 * the application", or the plugin's path. NULL for a bad index. */
FPAY_API const char *fpay_backend_origin(int index);

/* Size in bytes of one element of dtype (0 for unknown). */
FPAY_API size_t fpay_dtype_size(fpay_dtype dtype);

#ifdef __cplusplus
}
#endif

#endif /* FACEPAY_BACKEND_H */
