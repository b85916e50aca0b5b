/*
 * onednn_backend.c - a facepay backend plugin on oneDNN 2.6.3's C API.
 *
 * prepare creates every primitive once per session (per reshape): one CPU
 * engine and stream, and per node a short list of steps (primitive + its
 * memory objects) that run_range executes in order.
 *
 * Layouts. A partition is a maximal run of consecutive nodes of ours (what
 * the session hands run_range). Inside one, each conv/depthwise conv picks
 * its destination layout (format tag any: nChw16c, nhwc, ... whatever its
 * fastest kernel wants) and the tensor stays in that layout, in
 * plugin-owned buffers reused by lifetime; eltwise/binary/pool/prelu/softmax
 * are created on their producer's memory descriptor, so they add no
 * reorder. Reorders from/to the arena's NHWC happen only at partition
 * edges: a tensor read from outside (a partition input) is reordered into
 * the layout its first conv reader chose; a tensor read outside (after the
 * partition, or a graph output) is reordered back to NHWC (or written there
 * directly when its layout is already plain NHWC). Weights are described as
 * stored (OHWI, depthwise [1,KH,KW,C*m]) and reordered once into the
 * layout the primitive asked for, into plugin-owned memory.
 *
 * Activations: RELU/RELU6/RELU_N1_TO_1/LEAKY_RELU are eltwise post-ops
 * (relu with alpha, clip), which keep brgconv/jit implementations. PReLU is
 * a standalone prelu primitive run in place on the output: a conv with a
 * prelu post-op falls to ref:any in 2.6.3 (ONEDNN_VERBOSE=1 shows it).
 * A fused residual (conv input 3) is a binary add post-op before the
 * activation: taps + bias, then + residual, then the activation, the IR's
 * order. Threads: omp_set_num_threads(session threads) before each run.
 */
#include "facepay/backend.h"

#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>
#include <omp.h>

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static fpay_status dn_probe(char *why, size_t why_len)
{
    dnnl_engine_t e = NULL;
    dnnl_status_t st = dnnl_engine_create(&e, dnnl_cpu, 0);
    if (st != dnnl_success) {
        fpay_backend_set_err(why, why_len, "dnnl_engine_create(cpu) failed (status %d)", (int)st);
        return FPAY_BACKEND_UNAVAILABLE;
    }
    dnnl_engine_destroy(e);
    return FPAY_OK;
}

/* ------------------------------------------------------------- support */

static const fpay_tensor *tensor(const fpay_graph *g, int t) { return &g->tensors[t]; }

static bool is_const_f32(const fpay_graph *g, int t)
{
    return t >= 0 && (g->tensors[t].flags & FPAY_TENSOR_CONST) &&
           g->tensors[t].dtype == FPAY_DT_F32 && g->tensors[t].data;
}

static bool all_f32(const fpay_graph *g, const fpay_node *n)
{
    for (int k = 0; k < n->n_inputs; k++)
        if (n->inputs[k] >= 0 && g->tensors[n->inputs[k]].dtype != FPAY_DT_F32)
            return false;
    return n->n_outputs == 1 && g->tensors[n->outputs[0]].dtype == FPAY_DT_F32;
}

/* Epilogue: an eltwise post-op, or a prelu primitive after (4-D or 2-D). */
static bool act_ok(const fpay_graph *g, const fpay_node *n)
{
    const fpay_tensor *y = tensor(g, n->outputs[0]);
    if (n->act != FPAY_ACT_PRELU)
        return true;
    return (y->rank == 4 || y->rank == 2) && is_const_f32(g, n->act_slope) &&
           fpay_backend_elems(tensor(g, n->act_slope)) == y->dims[y->rank - 1];
}

static bool dn_supports_node(const fpay_graph *g, int index)
{
    if (index < 0 || index >= g->n_nodes)
        return false;
    const fpay_node *n = &g->nodes[index];
    if (!all_f32(g, n))
        return false;
    const fpay_tensor *x = tensor(g, n->inputs[0]), *y = tensor(g, n->outputs[0]);
    switch (n->op) {
    case FPAY_OP_CONV_2D:
    case FPAY_OP_DEPTHWISE_CONV_2D:
    case FPAY_OP_FULLY_CONNECTED: {
        /* A residual (input 3, CONV_2D only) is a binary add post-op: it
         * must have the output's shape. */
        int max_in = n->op == FPAY_OP_CONV_2D ? FPAY_CONV_INPUT_RESIDUAL + 1 : 3;
        if (n->n_inputs < 2 || n->n_inputs > max_in || !is_const_f32(g, n->inputs[1]) ||
            (n->n_inputs >= 3 && n->inputs[2] >= 0 && !is_const_f32(g, n->inputs[2])))
            return false;
        if (n->op == FPAY_OP_FULLY_CONNECTED)
            return !n->attr.fc.keep_num_dims && y->rank == 2 && act_ok(g, n);
        if (n->n_inputs > FPAY_CONV_INPUT_RESIDUAL) {
            int r = n->inputs[FPAY_CONV_INPUT_RESIDUAL];
            if (r < 0 || tensor(g, r)->rank != 4)
                return false;
            for (int i = 0; i < 4; i++)
                if (tensor(g, r)->dims[i] != y->dims[i])
                    return false;
        }
        return x->rank == 4 && act_ok(g, n);
    }
    case FPAY_OP_ADD:
    case FPAY_OP_SUB:
    case FPAY_OP_MUL:
    case FPAY_OP_DIV: {
        /* oneDNN 2.6 broadcasts src1 only: src0 must have the output shape. */
        if (n->n_inputs != 2 || x->rank != y->rank || y->rank < 1 || y->rank > 6)
            return false;
        for (int i = 0; i < y->rank; i++)
            if (x->dims[i] != y->dims[i])
                return false;
        return act_ok(g, n) && (n->act != FPAY_ACT_PRELU || y->rank == 4 || y->rank == 2);
    }
    case FPAY_OP_ABS:
    case FPAY_OP_NEG:
    case FPAY_OP_RELU:
    case FPAY_OP_RELU6:
    case FPAY_OP_LEAKY_RELU:
    case FPAY_OP_EXP:
        return x->rank >= 1 && x->rank <= 6;
    case FPAY_OP_PRELU:
        return (x->rank == 4 || x->rank == 2) && is_const_f32(g, n->inputs[1]) &&
               fpay_backend_elems(tensor(g, n->inputs[1])) == x->dims[x->rank - 1];
    case FPAY_OP_SOFTMAX:
        return x->rank >= 1 && x->rank <= 6;
    case FPAY_OP_MAX_POOL_2D:
    case FPAY_OP_AVERAGE_POOL_2D:
        /* avg_exclude_padding divides by in-image cells, as TFLite. */
        return x->rank == 4 && n->act == FPAY_ACT_NONE;
    default:
        return false;
    }
}

/* ------------------------------------------------------------- prepare */

enum { MAX_ARGS = 6, MAX_STEPS = 6 };

/* A memory object and, when it views the session's arena, the tensor whose
 * buffer is bound to it before each run (-1: plugin-owned or constant). */
typedef struct dn_ref {
    dnnl_memory_t mem;
    int bind;
} dn_ref;

/* One primitive execution. A node is a short list of them: reorders of
 * partition inputs, the op, the standalone prelu, the reorder of a partition
 * output back to the arena's NHWC. */
typedef struct dn_step {
    dnnl_primitive_t prim;
    int nargs;
    dnnl_exec_arg_t args[MAX_ARGS];
    int bind[MAX_ARGS];
} dn_step;

typedef struct dn_node {
    int n_steps;
    dn_step steps[MAX_STEPS];
} dn_node;

/* Where a tensor lives inside the partition being built (prepare only). */
typedef struct dn_val {
    int part;                 /* partition it is valid for (0: none yet) */
    bool outside;             /* read from outside the partition: plain NHWC */
    dnnl_memory_desc_t md;    /* the layout its producer chose */
    dn_ref ref;
    bool has_alt;             /* a reordered copy in another layout */
    dnnl_memory_desc_t alt_md;
    dn_ref alt;
} dn_val;

/* Plugin-owned activation buffers, reused once the tensor in them is dead. */
typedef struct dn_buf {
    void *p;
    size_t size;
    int busy_until;           /* node index of the last reader */
} dn_buf;

typedef struct dn_state {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    int threads;
    int n_nodes;
    dn_node *nodes;
    dnnl_memory_t *owned;     /* every memory object we created */
    int n_owned, cap_owned;
    dn_buf *bufs;
    int n_bufs, cap_bufs;
    /* prepare only */
    const fpay_graph *g;
    dn_val *vals;
    int *last_use;            /* last reader within the current partition */
    int *last_any;            /* last reader in the graph (-1: none) */
    int part, part_last;
} dn_state;

static void dn_release(void *state)
{
    dn_state *s = state;
    if (!s)
        return;
    for (int i = 0; i < s->n_nodes; i++)
        for (int k = 0; k < s->nodes[i].n_steps; k++)
            if (s->nodes[i].steps[k].prim)
                dnnl_primitive_destroy(s->nodes[i].steps[k].prim);
    for (int i = 0; i < s->n_owned; i++)
        dnnl_memory_destroy(s->owned[i]);
    for (int i = 0; i < s->n_bufs; i++)
        free(s->bufs[i].p);
    free(s->bufs);
    free(s->owned);
    free(s->nodes);
    free(s->vals);
    free(s->last_use);
    free(s->last_any);
    if (s->stream)
        dnnl_stream_destroy(s->stream);
    if (s->engine)
        dnnl_engine_destroy(s->engine);
    free(s);
}

#define DCHECK(call, what)                                                          \
    do {                                                                            \
        dnnl_status_t ds_ = (call);                                                 \
        if (ds_ != dnnl_success) {                                                  \
            fpay_backend_set_err(err, err_len, "node %d: %s failed (status %d)", index, what,    \
                    (int)ds_);                                                      \
            goto fail;                                                              \
        }                                                                           \
    } while (0)

#define NCHECK(cond, what)                                                          \
    do {                                                                            \
        if (!(cond)) {                                                              \
            fpay_backend_set_err(err, err_len, "node %d: %s failed", index, what);               \
            goto fail;                                                              \
        }                                                                           \
    } while (0)

static dnnl_memory_t new_memory(dn_state *s, const dnnl_memory_desc_t *md, void *handle)
{
    if (s->n_owned == s->cap_owned) {
        int cap = s->cap_owned ? 2 * s->cap_owned : 64;
        dnnl_memory_t *o = realloc(s->owned, (size_t)cap * sizeof *o);
        if (!o)
            return NULL;
        s->owned = o;
        s->cap_owned = cap;
    }
    dnnl_memory_t m = NULL;
    if (dnnl_memory_create(&m, md, s->engine, handle) != dnnl_success)
        return NULL;
    s->owned[s->n_owned++] = m;
    return m;
}

/* A buffer of `size` bytes for a tensor written at node `now` and read last
 * at node `until`. Best fit among buffers whose tensor died before `now`
 * (strictly: the node's own inputs are still live while it writes). */
static void *buffer(dn_state *s, size_t size, int now, int until)
{
    int best = -1;
    for (int k = 0; k < s->n_bufs; k++)
        if (s->bufs[k].busy_until < now && s->bufs[k].size >= size &&
            (best < 0 || s->bufs[k].size < s->bufs[best].size))
            best = k;
    if (best < 0) {
        if (s->n_bufs == s->cap_bufs) {
            int cap = s->cap_bufs ? 2 * s->cap_bufs : 16;
            dn_buf *b = realloc(s->bufs, (size_t)cap * sizeof *b);
            if (!b)
                return NULL;
            s->bufs = b;
            s->cap_bufs = cap;
        }
        size_t rounded = (size + 63) & ~(size_t)63;
        void *p = aligned_alloc(64, rounded ? rounded : 64);
        if (!p)
            return NULL;
        best = s->n_bufs++;
        s->bufs[best].p = p;
        s->bufs[best].size = rounded;
    }
    s->bufs[best].busy_until = until;
    return s->bufs[best].p;
}

/* Hands buffer p (read last at node `now`) to a tensor read last at
 * `until`: the in-place residual accumulation. */
static void adopt(dn_state *s, const void *p, int until)
{
    for (int k = 0; k < s->n_bufs; k++)
        if (s->bufs[k].p == p && s->bufs[k].busy_until < until)
            s->bufs[k].busy_until = until;
}

/* Dense row-major descriptor of dims (in the given order). */
static void md_dense(dnnl_memory_desc_t *md, int rank, const dnnl_dims_t dims)
{
    dnnl_dims_t strides;
    int64_t st = 1;
    for (int i = rank - 1; i >= 0; i--) {
        strides[i] = st;
        st *= dims[i];
    }
    dnnl_memory_desc_init_by_strides(md, rank, dims, dnnl_f32, strides);
}

/* Logical NCHW dims of a 4-D NHWC tensor (oneDNN's dimension order). */
static void dims_nchw(dnnl_dims_t d, const int64_t *nhwc)
{
    d[0] = nhwc[0];
    d[1] = nhwc[3];
    d[2] = nhwc[1];
    d[3] = nhwc[2];
}

/* A tensor as the arena stores it: 4-D as NCHW-logical nhwc, else dense. */
static void md_plain(dnnl_memory_desc_t *md, const fpay_tensor *t)
{
    dnnl_dims_t d;
    if (t->rank == 4) {
        dims_nchw(d, t->dims);
        dnnl_memory_desc_init_by_tag(md, 4, d, dnnl_f32, dnnl_nhwc);
        return;
    }
    for (int i = 0; i < t->rank; i++)
        d[i] = t->dims[i];
    md_dense(md, t->rank, d);
}

static void md_any4(dnnl_memory_desc_t *md, const fpay_tensor *t)
{
    dnnl_dims_t d;
    dims_nchw(d, t->dims);
    dnnl_memory_desc_init_by_tag(md, 4, d, dnnl_f32, dnnl_format_tag_any);
}

static bool md_eq(const dnnl_memory_desc_t *a, const dnnl_memory_desc_t *b)
{
    return dnnl_memory_desc_equal(a, b) != 0;
}

static bool is_ref_impl(const_dnnl_primitive_desc_t pd)
{
    const char *impl = NULL;
    return dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) ==
               dnnl_success &&
           impl && strncmp(impl, "ref", 3) == 0;
}

static dn_step *new_step(dn_node *dn, dnnl_primitive_t prim)
{
    if (dn->n_steps == MAX_STEPS) {
        dnnl_primitive_destroy(prim);
        return NULL;
    }
    dn_step *st = &dn->steps[dn->n_steps++];
    memset(st, 0, sizeof *st);
    st->prim = prim;
    return st;
}

static void step_arg(dn_step *st, int arg, dn_ref r)
{
    st->args[st->nargs].arg = arg;
    st->args[st->nargs].memory = r.mem;
    st->bind[st->nargs++] = r.bind;
}

/* Creates the primitive of pd (consumed) as a new step of dn. */
static dn_step *pd_step(dn_node *dn, dnnl_primitive_desc_t pd)
{
    dnnl_primitive_t prim = NULL;
    dnnl_status_t st = dnnl_primitive_create(&prim, pd);
    dnnl_primitive_desc_destroy(pd);
    return st == dnnl_success ? new_step(dn, prim) : NULL;
}

static bool reorder_step(dn_state *s, dn_node *dn, dn_ref from, const dnnl_memory_desc_t *fmd,
                         dn_ref to, const dnnl_memory_desc_t *tmd)
{
    dnnl_primitive_desc_t rpd = NULL;
    if (dnnl_reorder_primitive_desc_create(&rpd, fmd, s->engine, tmd, s->engine, NULL) !=
        dnnl_success)
        return false;
    dn_step *st = pd_step(dn, rpd);
    if (!st)
        return false;
    step_arg(st, DNNL_ARG_FROM, from);
    step_arg(st, DNNL_ARG_TO, to);
    return true;
}

/* Constant data described as stored (user) -> the layout the primitive
 * wants: reordered once, here, into plugin-owned memory. */
static dnnl_memory_t packed(dn_state *s, const dnnl_memory_desc_t *user,
                            const dnnl_memory_desc_t *want, const void *data)
{
    dnnl_memory_t src = new_memory(s, user, (void *)data);
    if (src && md_eq(user, want))
        return src;
    dnnl_memory_t dst = new_memory(s, want, DNNL_MEMORY_ALLOCATE);
    if (!src || !dst)
        return NULL;
    dnnl_primitive_desc_t rpd = NULL;
    dnnl_primitive_t r = NULL;
    bool ok = dnnl_reorder_primitive_desc_create(&rpd, user, s->engine, want, s->engine,
                                                 NULL) == dnnl_success &&
              dnnl_primitive_create(&r, rpd) == dnnl_success;
    if (ok) {
        dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, dst}};
        ok = dnnl_primitive_execute(r, s->stream, 2, a) == dnnl_success &&
             dnnl_stream_wait(s->stream) == dnnl_success;
    }
    if (r)
        dnnl_primitive_destroy(r);
    if (rpd)
        dnnl_primitive_desc_destroy(rpd);
    return ok ? dst : NULL;
}

/* Tensor t as seen by the current partition: its producer's value when the
 * producer is in the partition; otherwise (a partition input, a constant)
 * the plain NHWC bytes in the arena or the model. */
static dn_val *val_of(dn_state *s, int t)
{
    dn_val *v = &s->vals[t];
    if (v->part == s->part)
        return v;
    const fpay_tensor *ft = tensor(s->g, t);
    memset(v, 0, sizeof *v);
    v->part = s->part;
    v->outside = true;
    md_plain(&v->md, ft);
    bool c = ft->flags & FPAY_TENSOR_CONST;
    v->ref.mem = new_memory(s, &v->md, c ? (void *)ft->data : DNNL_MEMORY_NONE);
    v->ref.bind = c ? -1 : t;
    return v->ref.mem ? v : NULL;
}

/* Tensor t in layout `want`, read by node `now`. Equal layouts cost nothing;
 * otherwise a reorder step is added to dn (a constant is reordered once,
 * here). The copy is kept for other readers of the same layout. */
static dn_ref get_as(dn_state *s, dn_node *dn, int now, int t, const dnnl_memory_desc_t *want)
{
    dn_ref none = {NULL, -1};
    dn_val *v = val_of(s, t);
    if (!v)
        return none;
    if (md_eq(&v->md, want))
        return v->ref;
    if (v->has_alt && md_eq(&v->alt_md, want))
        return v->alt;
    dn_ref r = {NULL, -1};
    const fpay_tensor *ft = tensor(s->g, t);
    if (ft->flags & FPAY_TENSOR_CONST) {
        r.mem = packed(s, &v->md, want, ft->data);
    } else {
        void *p = buffer(s, dnnl_memory_desc_get_size(want), now, s->last_use[t]);
        r.mem = p ? new_memory(s, want, p) : NULL;
        if (r.mem && !reorder_step(s, dn, v->ref, &v->md, r, want))
            r.mem = NULL;
    }
    if (r.mem && !v->has_alt) {
        v->has_alt = true;
        v->alt_md = *want;
        v->alt = r;
    }
    return r.mem ? r : none;
}

/* The same bytes under another descriptor (a 2-D view of a plain 4-D
 * tensor, a broadcast operand padded to rank 4). */
static dn_ref view(dn_state *s, dn_ref r, const dnnl_memory_desc_t *md)
{
    void *h = DNNL_MEMORY_NONE;
    if (r.bind < 0 && dnnl_memory_get_data_handle(r.mem, &h) != dnnl_success)
        return (dn_ref){NULL, -1};
    return (dn_ref){new_memory(s, md, h), r.bind};
}

/* Is tensor t, produced in the current partition, read after it? */
static bool read_outside(const dn_state *s, int t)
{
    return (tensor(s->g, t)->flags & FPAY_TENSOR_OUTPUT) || s->last_any[t] > s->part_last;
}

/* The output t of node `now` in layout md. A tensor read only inside the
 * partition lives in a plugin-owned buffer (`reuse` when not NULL); one
 * read outside goes to its arena buffer: directly when md is the plain
 * layout, else through a reorder that finish_output adds after the node's
 * last step. */
static dn_val *produce(dn_state *s, int now, int t, const dnnl_memory_desc_t *md,
                       void *reuse)
{
    dn_val *v = &s->vals[t];
    memset(v, 0, sizeof *v);
    v->part = s->part;
    v->md = *md;
    dnnl_memory_desc_t plain;
    md_plain(&plain, tensor(s->g, t));
    if (read_outside(s, t) && md_eq(md, &plain) && !reuse) {
        v->ref.mem = new_memory(s, md, DNNL_MEMORY_NONE);
        v->ref.bind = t;
    } else {
        void *p = reuse ? reuse : buffer(s, dnnl_memory_desc_get_size(md), now, s->last_use[t]);
        if (reuse)
            adopt(s, reuse, s->last_use[t]);
        v->ref.mem = p ? new_memory(s, md, p) : NULL;
        v->ref.bind = -1;
    }
    return v->ref.mem ? v : NULL;
}

static bool finish_output(dn_state *s, dn_node *dn, int t)
{
    dn_val *v = &s->vals[t];
    if (!read_outside(s, t) || v->ref.bind == t)
        return true;
    dnnl_memory_desc_t plain;
    md_plain(&plain, tensor(s->g, t));
    dn_ref arena = {new_memory(s, &plain, DNNL_MEMORY_NONE), t};
    return arena.mem && reorder_step(s, dn, v->ref, &v->md, arena, &plain);
}

static bool eltwise_of(fpay_act act, float act_alpha, dnnl_alg_kind_t *alg, float *alpha,
                       float *beta)
{
    *alpha = *beta = 0;
    switch (act) {
    case FPAY_ACT_RELU: *alg = dnnl_eltwise_relu; return true;
    case FPAY_ACT_LEAKY_RELU: *alg = dnnl_eltwise_relu; *alpha = act_alpha; return true;
    case FPAY_ACT_RELU6: *alg = dnnl_eltwise_clip; *beta = 6; return true;
    case FPAY_ACT_RELU_N1_TO_1: *alg = dnnl_eltwise_clip; *alpha = -1; *beta = 1; return true;
    default: return false;
    }
}

/* RES_INPLACE is RES_SUM on the residual's own buffer (no copy). */
enum residual_mode { RES_NONE, RES_BINARY, RES_SUM, RES_INPLACE };

/* Post-ops in the order of the IR's semantics: the residual (binary add
 * of src1, or sum with the destination's prior contents) first, then the
 * fused activation. *attr stays NULL when there are none. */
static bool make_attr(const fpay_node *n, enum residual_mode res,
                      const dnnl_memory_desc_t *res_md, dnnl_primitive_attr_t *attr)
{
    dnnl_alg_kind_t alg = dnnl_eltwise_relu;
    float alpha, beta;
    bool elt = eltwise_of(n->act, n->act_alpha, &alg, &alpha, &beta);
    *attr = NULL;
    if (!elt && res == RES_NONE)
        return true;
    dnnl_post_ops_t po = NULL;
    if (dnnl_primitive_attr_create(attr) != dnnl_success)
        return false;
    bool ok = dnnl_post_ops_create(&po) == dnnl_success;
    if (ok && res == RES_BINARY)
        ok = dnnl_post_ops_append_binary(po, dnnl_binary_add, res_md) == dnnl_success;
    if (ok && (res == RES_SUM || res == RES_INPLACE))
        ok = dnnl_post_ops_append_sum(po, 1.0f) == dnnl_success;
    if (ok && elt)
        ok = dnnl_post_ops_append_eltwise(po, 1.0f, alg, alpha, beta) == dnnl_success;
    ok = ok && dnnl_primitive_attr_set_post_ops(*attr, po) == dnnl_success;
    if (po)
        dnnl_post_ops_destroy(po);
    if (!ok) {
        dnnl_primitive_attr_destroy(*attr);
        *attr = NULL;
    }
    return ok;
}

/* Conv primitive desc for src/dst layouts and a residual mode; NULL when
 * oneDNN has no implementation. */
static dnnl_primitive_desc_t conv_pd(dn_state *s, const fpay_node *n,
                                     const dnnl_memory_desc_t *src, const dnnl_memory_desc_t *w,
                                     const dnnl_memory_desc_t *b, const dnnl_memory_desc_t *dst,
                                     enum residual_mode res)
{
    const fpay_conv_attr *c = &n->attr.conv;
    dnnl_dims_t strides = {c->stride_h, c->stride_w};
    dnnl_dims_t dil = {c->dilation_h - 1, c->dilation_w - 1};
    dnnl_dims_t pl = {c->pad_top, c->pad_left}, pr = {c->pad_bottom, c->pad_right};
    dnnl_convolution_desc_t d;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    if (dnnl_dilated_convolution_forward_desc_init(&d, dnnl_forward_inference,
                                                   dnnl_convolution_direct, src, w, b, dst,
                                                   strides, dil, pl, pr) != dnnl_success ||
        !make_attr(n, res, dst, &attr))
        return NULL;
    if (dnnl_primitive_desc_create(&pd, &d, attr, s->engine, NULL) != dnnl_success)
        pd = NULL;
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    return pd;
}

/* Standalone prelu (jit) from src to dst (the same memory for a fused
 * PReLU: in place on the output). A prelu post-op would drop the conv to
 * ref:any in 2.6.3. The slope is reordered once into the layout asked. */
static bool prelu_step(dn_state *s, dn_node *dn, const dnnl_memory_desc_t *md, int rank,
                       int64_t channels, int slope, dn_ref src, dn_ref dst)
{
    dnnl_memory_desc_t wu, wa;
    dnnl_dims_t wd = {1, channels, 1, 1};
    if (rank == 4)
        dnnl_memory_desc_init_by_tag(&wu, 4, wd, dnnl_f32, dnnl_nhwc);
    else
        md_dense(&wu, 2, wd);
    dnnl_memory_desc_init_by_tag(&wa, rank, wd, dnnl_f32, dnnl_format_tag_any);
    dnnl_prelu_desc_t d;
    dnnl_primitive_desc_t pd = NULL;
    if (dnnl_prelu_forward_desc_init(&d, dnnl_forward_inference, md, &wa) != dnnl_success ||
        dnnl_primitive_desc_create(&pd, &d, NULL, s->engine, NULL) != dnnl_success) {
        pd = NULL;
        if (dnnl_prelu_forward_desc_init(&d, dnnl_forward_inference, md, &wu) !=
                dnnl_success ||
            dnnl_primitive_desc_create(&pd, &d, NULL, s->engine, NULL) != dnnl_success)
            return false;
    }
    const dnnl_memory_desc_t *want = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    dn_ref w = {packed(s, &wu, want, tensor(s->g, slope)->data), -1};
    if (!w.mem) {
        dnnl_primitive_desc_destroy(pd);
        return false;
    }
    dn_step *st = pd_step(dn, pd);
    if (!st)
        return false;
    step_arg(st, DNNL_ARG_SRC, src);
    step_arg(st, DNNL_ARG_WEIGHTS, w);
    step_arg(st, DNNL_ARG_DST, dst);
    return true;
}

/* Conv / depthwise conv: the destination layout is oneDNN's choice (format
 * tag any); the source is the producer's layout when the producer is in
 * the partition (no reorder), else oneDNN's choice (one reorder at the
 * partition edge). A fused residual is a binary add post-op reading the
 * residual in the destination's layout; a sum post-op over a copy is the
 * fallback should the binary one drop the conv to ref. */
static fpay_status build_conv(dn_state *s, int index, char *err, size_t err_len)
{
    const fpay_graph *g = s->g;
    const fpay_node *n = &g->nodes[index];
    dn_node *dn = &s->nodes[index];
    const fpay_tensor *x = tensor(g, n->inputs[0]), *y = tensor(g, n->outputs[0]);
    const fpay_tensor *w = tensor(g, n->inputs[1]);
    bool has_bias = n->n_inputs > 2 && n->inputs[2] >= 0;
    int res = n->n_inputs > FPAY_CONV_INPUT_RESIDUAL ? n->inputs[FPAY_CONV_INPUT_RESIDUAL] : -1;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_memory_desc_t src_any, dst_md, wu_md, w_any, b_md;
    dnnl_dims_t wd, ws;
    int wrank;
    if (n->op == FPAY_OP_CONV_2D) { /* OHWI as logical OIHW */
        int64_t O = w->dims[0], KH = w->dims[1], KW = w->dims[2], I = w->dims[3];
        wrank = 4;
        wd[0] = O; wd[1] = I; wd[2] = KH; wd[3] = KW;
        ws[0] = KH * KW * I; ws[1] = 1; ws[2] = KW * I; ws[3] = I;
    } else { /* [1,KH,KW,C*m] as GOIHW */
        int64_t KH = w->dims[1], KW = w->dims[2], C = x->dims[3];
        int64_t m = n->attr.conv.depth_multiplier;
        wrank = 5;
        wd[0] = C; wd[1] = m; wd[2] = 1; wd[3] = KH; wd[4] = KW;
        ws[0] = m; ws[1] = 1; ws[2] = 1; ws[3] = KW * C * m; ws[4] = C * m;
    }
    DCHECK(dnnl_memory_desc_init_by_strides(&wu_md, wrank, wd, dnnl_f32, ws), "weights md");
    DCHECK(dnnl_memory_desc_init_by_tag(&w_any, wrank, wd, dnnl_f32, dnnl_format_tag_any),
           "weights md any");
    dnnl_dims_t bd = {y->dims[3]};
    dnnl_memory_desc_init_by_tag(&b_md, 1, bd, dnnl_f32, dnnl_a);
    const dnnl_memory_desc_t *bias = has_bias ? &b_md : NULL;
    md_any4(&src_any, x);
    md_any4(&dst_md, y);

    dn_val *vx = val_of(s, n->inputs[0]);
    NCHECK(vx, "input memory");
    const dnnl_memory_desc_t *src = vx->outside ? &src_any : &vx->md;
    pd = conv_pd(s, n, src, &w_any, bias, &dst_md, RES_NONE);
    if (src != &src_any && (!pd || is_ref_impl(pd))) {
        /* The producer's layout is one no fast kernel reads: let oneDNN
         * pick, at the price of a reorder inside the partition. */
        if (pd)
            dnnl_primitive_desc_destroy(pd);
        src = &src_any;
        pd = conv_pd(s, n, src, &w_any, bias, &dst_md, RES_NONE);
    }
    NCHECK(pd, "convolution primitive desc");
    enum residual_mode mode = RES_NONE;
    void *reuse = NULL;
    if (res >= 0) {
        /* Pin the destination to the layout chosen without the residual,
         * so that the residual operand can be described in it. */
        dst_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
        bool was_ref = is_ref_impl(pd);
        dnnl_primitive_desc_destroy(pd);
        pd = NULL;
        /* Preferred: accumulate into the residual's buffer when this conv is
         * its last reader and it already has the destination's layout (the
         * MobileNet block: x -> expand -> dw -> project + x). The sum
         * post-op keeps brgconv_1x1, and there is nothing to copy. */
        dn_val *vr = val_of(s, res);
        NCHECK(vr, "residual memory");
        void *h = NULL;
        if (!vr->outside && vr->ref.bind < 0 && s->last_use[res] == index &&
            res != n->inputs[0] && md_eq(&vr->md, &dst_md) && !read_outside(s, n->outputs[0]) &&
            dnnl_memory_get_data_handle(vr->ref.mem, &h) == dnnl_success && h) {
            pd = conv_pd(s, n, src, &w_any, bias, &dst_md, RES_INPLACE);
            if (pd && is_ref_impl(pd) && !was_ref) {
                dnnl_primitive_desc_destroy(pd);
                pd = NULL;
            }
            if (pd) {
                mode = RES_INPLACE;
                reuse = h;
            }
        }
        /* Else a binary add post-op reading the residual in place; a sum
         * over a copy if that drops the conv to ref. */
        if (!pd) {
            mode = RES_BINARY;
            pd = conv_pd(s, n, src, &w_any, bias, &dst_md, mode);
        }
        if (mode == RES_BINARY && (!pd || (is_ref_impl(pd) && !was_ref))) {
            if (pd)
                dnnl_primitive_desc_destroy(pd);
            mode = RES_SUM;
            pd = conv_pd(s, n, src, &w_any, bias, &dst_md, mode);
        }
        NCHECK(pd, "residual convolution primitive desc");
    }
    dnnl_memory_desc_t src_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    dst_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    const dnnl_memory_desc_t *want = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    dn_ref wm = {packed(s, &wu_md, want, w->data), -1};
    NCHECK(wm.mem, "weight reorder");
    dn_ref sm = get_as(s, dn, index, n->inputs[0], &src_md);
    NCHECK(sm.mem, "input reorder");
    dn_ref rm = {NULL, -1};
    if (mode == RES_BINARY) {
        rm = get_as(s, dn, index, res, &dst_md);
        NCHECK(rm.mem, "residual reorder");
    }
    dn_val *vy = produce(s, index, n->outputs[0], &dst_md, reuse);
    NCHECK(vy, "output memory");
    if (mode == RES_SUM) {
        dn_val *vr = val_of(s, res);
        NCHECK(vr && reorder_step(s, dn, vr->ref, &vr->md, vy->ref, &dst_md),
               "residual copy");
    }
    dn_step *st = pd_step(dn, pd);
    pd = NULL;
    NCHECK(st, "primitive create");
    step_arg(st, DNNL_ARG_SRC, sm);
    step_arg(st, DNNL_ARG_WEIGHTS, wm);
    if (has_bias) {
        dn_ref bm = {new_memory(s, &b_md, (void *)tensor(g, n->inputs[2])->data), -1};
        NCHECK(bm.mem, "bias memory");
        step_arg(st, DNNL_ARG_BIAS, bm);
    }
    step_arg(st, DNNL_ARG_DST, vy->ref);
    if (mode == RES_BINARY)
        step_arg(st, DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1, rm);
    if (n->act == FPAY_ACT_PRELU)
        NCHECK(prelu_step(s, dn, &dst_md, 4, y->dims[3], n->act_slope, vy->ref, vy->ref),
               "prelu");
    NCHECK(finish_output(s, dn, n->outputs[0]), "output reorder");
    return FPAY_OK;
fail:
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    return FPAY_INTERNAL;
}

static fpay_status build_node(dn_state *s, int index, char *err, size_t err_len)
{
    const fpay_graph *g = s->g;
    const fpay_node *n = &g->nodes[index];
    if (n->op == FPAY_OP_CONV_2D || n->op == FPAY_OP_DEPTHWISE_CONV_2D)
        return build_conv(s, index, err, err_len);
    dn_node *dn = &s->nodes[index];
    const fpay_tensor *x = tensor(g, n->inputs[0]), *y = tensor(g, n->outputs[0]);
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_memory_desc_t plain_x, dst_md;
    union {
        dnnl_inner_product_desc_t ip;
        dnnl_binary_desc_t bin;
        dnnl_eltwise_desc_t elt;
        dnnl_softmax_desc_t soft;
        dnnl_pooling_v2_desc_t pool;
    } d;
    md_plain(&plain_x, x);
    dn_val *vx = val_of(s, n->inputs[0]);
    NCHECK(vx, "input memory");
    dn_val *vy = NULL;
    dn_step *st = NULL;

    switch (n->op) {
    case FPAY_OP_FULLY_CONNECTED: {
        /* TFLite flattens in NHWC order: the input must be plain. */
        const fpay_tensor *w = tensor(g, n->inputs[1]);
        bool has_bias = n->n_inputs > 2 && n->inputs[2] >= 0;
        dnnl_memory_desc_t src_md, wu_md, w_any, b_md;
        dnnl_dims_t sd = {fpay_backend_elems(x) / w->dims[1], w->dims[1]};
        dnnl_dims_t wd = {w->dims[0], w->dims[1]}, bd = {w->dims[0]};
        md_dense(&src_md, 2, sd);
        md_dense(&wu_md, 2, wd);
        md_plain(&dst_md, y);
        dnnl_memory_desc_init_by_tag(&w_any, 2, wd, dnnl_f32, dnnl_format_tag_any);
        dnnl_memory_desc_init_by_tag(&b_md, 1, bd, dnnl_f32, dnnl_a);
        NCHECK(make_attr(n, RES_NONE, NULL, &attr), "post-ops");
        DCHECK(dnnl_inner_product_forward_desc_init(&d.ip, dnnl_forward_inference, &src_md,
                                                    &w_any, has_bias ? &b_md : NULL, &dst_md),
               "inner product desc");
        DCHECK(dnnl_primitive_desc_create(&pd, &d, attr, s->engine, NULL), "primitive desc");
        const dnnl_memory_desc_t *want = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
        dn_ref wm = {packed(s, &wu_md, want, w->data), -1};
        NCHECK(wm.mem, "weight reorder");
        dn_ref xm = get_as(s, dn, index, n->inputs[0], &plain_x);
        NCHECK(xm.mem, "input reorder");
        dn_ref sm = view(s, xm, &src_md);
        NCHECK(sm.mem, "input view");
        NCHECK(vy = produce(s, index, n->outputs[0], &dst_md, NULL), "output memory");
        NCHECK(st = pd_step(dn, pd), "primitive create");
        pd = NULL;
        step_arg(st, DNNL_ARG_SRC, sm);
        step_arg(st, DNNL_ARG_WEIGHTS, wm);
        if (has_bias) {
            dn_ref bm = {new_memory(s, &b_md, (void *)tensor(g, n->inputs[2])->data), -1};
            NCHECK(bm.mem, "bias memory");
            step_arg(st, DNNL_ARG_BIAS, bm);
        }
        step_arg(st, DNNL_ARG_DST, vy->ref);
        break;
    }
    case FPAY_OP_ADD:
    case FPAY_OP_SUB:
    case FPAY_OP_MUL:
    case FPAY_OP_DIV: {
        /* src0 has the output's shape (supports_node): it and the output
         * keep the producer's layout; a full-shape src1 is read in that
         * layout too, a broadcast one plain. */
        const fpay_tensor *x1 = tensor(g, n->inputs[1]);
        int r = y->rank;
        dnnl_dims_t d1;
        int64_t p1[FPAY_MAX_RANK];
        bool full = x1->rank == r;
        for (int i = 0; i < r; i++) {
            int j = x1->rank - r + i;
            p1[i] = j >= 0 ? x1->dims[j] : 1;
            full = full && p1[i] == y->dims[i];
        }
        dnnl_memory_desc_t s1_md, plain_x1;
        md_plain(&plain_x1, x1);
        if (r == 4) {
            dims_nchw(d1, p1);
            dnnl_memory_desc_init_by_tag(&s1_md, 4, d1, dnnl_f32, dnnl_nhwc);
        } else {
            for (int i = 0; i < r; i++)
                d1[i] = p1[i];
            md_dense(&s1_md, r, d1);
        }
        dnnl_memory_desc_t s0_md = vx->md;
        if (full)
            s1_md = s0_md;
        dnnl_alg_kind_t alg = n->op == FPAY_OP_ADD   ? dnnl_binary_add
                              : n->op == FPAY_OP_SUB ? dnnl_binary_sub
                              : n->op == FPAY_OP_MUL ? dnnl_binary_mul
                                                     : dnnl_binary_div;
        NCHECK(make_attr(n, RES_NONE, NULL, &attr), "post-ops");
        DCHECK(dnnl_binary_desc_init(&d.bin, alg, &s0_md, &s1_md, &s0_md), "binary desc");
        DCHECK(dnnl_primitive_desc_create(&pd, &d, attr, s->engine, NULL), "primitive desc");
        dst_md = s0_md;
        dn_ref m0 = vx->ref;
        dn_ref m1 = get_as(s, dn, index, n->inputs[1], full ? &s1_md : &plain_x1);
        NCHECK(m1.mem, "input reorder");
        if (!full)
            NCHECK((m1 = view(s, m1, &s1_md)).mem, "input view");
        NCHECK(vy = produce(s, index, n->outputs[0], &dst_md, NULL), "output memory");
        NCHECK(st = pd_step(dn, pd), "primitive create");
        pd = NULL;
        step_arg(st, DNNL_ARG_SRC_0, m0);
        step_arg(st, DNNL_ARG_SRC_1, m1);
        step_arg(st, DNNL_ARG_DST, vy->ref);
        break;
    }
    case FPAY_OP_ABS:
    case FPAY_OP_NEG:
    case FPAY_OP_RELU:
    case FPAY_OP_RELU6:
    case FPAY_OP_LEAKY_RELU:
    case FPAY_OP_EXP:
    case FPAY_OP_SOFTMAX: {
        dst_md = vx->md; /* elementwise: any layout, the producer's */
        if (n->op == FPAY_OP_SOFTMAX) {
            DCHECK(dnnl_softmax_forward_desc_init(&d.soft, dnnl_forward_inference, &dst_md,
                                                  x->rank == 4 ? 1 : x->rank - 1),
                   "softmax desc");
        } else {
            dnnl_alg_kind_t alg = dnnl_eltwise_relu;
            float alpha = 0, beta = 0;
            switch (n->op) {
            case FPAY_OP_ABS: alg = dnnl_eltwise_abs; break;
            case FPAY_OP_NEG: alg = dnnl_eltwise_linear; alpha = -1; break;
            case FPAY_OP_RELU6: alg = dnnl_eltwise_clip; beta = 6; break;
            case FPAY_OP_LEAKY_RELU: alpha = n->attr.leaky.alpha; break;
            case FPAY_OP_EXP: alg = dnnl_eltwise_exp; break;
            default: break;
            }
            DCHECK(dnnl_eltwise_forward_desc_init(&d.elt, dnnl_forward_inference, alg, &dst_md,
                                                  alpha, beta),
                   "eltwise desc");
        }
        DCHECK(dnnl_primitive_desc_create(&pd, &d, NULL, s->engine, NULL), "primitive desc");
        NCHECK(vy = produce(s, index, n->outputs[0], &dst_md, NULL), "output memory");
        NCHECK(st = pd_step(dn, pd), "primitive create");
        pd = NULL;
        step_arg(st, DNNL_ARG_SRC, vx->ref);
        step_arg(st, DNNL_ARG_DST, vy->ref);
        break;
    }
    case FPAY_OP_MAX_POOL_2D:
    case FPAY_OP_AVERAGE_POOL_2D: {
        const fpay_pool_attr *p = &n->attr.pool;
        dnnl_dims_t strides = {p->stride_h, p->stride_w}, k = {p->filter_h, p->filter_w};
        dnnl_dims_t dil = {0, 0}, pl = {p->pad_top, p->pad_left};
        dnnl_dims_t pr = {p->pad_bottom, p->pad_right};
        md_any4(&dst_md, y);
        DCHECK(dnnl_pooling_v2_forward_desc_init(
                   &d.pool, dnnl_forward_inference,
                   n->op == FPAY_OP_MAX_POOL_2D ? dnnl_pooling_max
                                                : dnnl_pooling_avg_exclude_padding,
                   &vx->md, &dst_md, strides, k, dil, pl, pr),
               "pooling desc");
        DCHECK(dnnl_primitive_desc_create(&pd, &d, NULL, s->engine, NULL), "primitive desc");
        dst_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
        NCHECK(vy = produce(s, index, n->outputs[0], &dst_md, NULL), "output memory");
        NCHECK(st = pd_step(dn, pd), "primitive create");
        pd = NULL;
        step_arg(st, DNNL_ARG_SRC, vx->ref);
        step_arg(st, DNNL_ARG_DST, vy->ref);
        break;
    }
    case FPAY_OP_PRELU:
        dst_md = vx->md;
        NCHECK(vy = produce(s, index, n->outputs[0], &dst_md, NULL), "output memory");
        NCHECK(prelu_step(s, dn, &dst_md, x->rank, x->dims[x->rank - 1], n->inputs[1], vx->ref,
                          vy->ref),
               "prelu");
        break;
    default:
        fpay_backend_set_err(err, err_len, "node %d: op %d not supported", index, (int)n->op);
        goto fail;
    }
    if (attr) {
        dnnl_primitive_attr_destroy(attr);
        attr = NULL;
    }
    if (n->act == FPAY_ACT_PRELU && n->op != FPAY_OP_PRELU)
        NCHECK(prelu_step(s, dn, &dst_md, y->rank, y->dims[y->rank - 1], n->act_slope, vy->ref,
                          vy->ref),
               "prelu");
    NCHECK(finish_output(s, dn, n->outputs[0]), "output reorder");
    return FPAY_OK;
fail:
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    return FPAY_INTERNAL;
}

static void note_read(int *last, const fpay_node *n, int j)
{
    for (int k = 0; k <= n->n_inputs; k++) {
        int t = k < n->n_inputs ? n->inputs[k] : n->act_slope;
        if (t >= 0)
            last[t] = j;
    }
}

/* Builds the nodes of each partition (maximal run of consecutive nodes of
 * ours, as the session runs them): tensors made and read inside one stay in
 * the layout their producer chose, in buffers reused by lifetime. */
static fpay_status dn_prepare(const fpay_graph *g, const bool *mine, int threads,
                              void **state, char *err, size_t err_len)
{
    *state = NULL;
    dn_state *s = calloc(1, sizeof *s);
    if (!s)
        return FPAY_OUT_OF_MEMORY;
    s->g = g;
    s->threads = threads > 0 ? threads : 1;
    s->n_nodes = g->n_nodes;
    size_t nt = (size_t)g->n_tensors + 1;
    s->nodes = calloc((size_t)g->n_nodes + 1, sizeof *s->nodes);
    s->vals = calloc(nt, sizeof *s->vals);
    s->last_use = malloc(nt * sizeof *s->last_use);
    s->last_any = malloc(nt * sizeof *s->last_any);
    if (!s->nodes || !s->vals || !s->last_use || !s->last_any) {
        dn_release(s);
        return FPAY_OUT_OF_MEMORY;
    }
    for (size_t t = 0; t < nt; t++)
        s->last_any[t] = -1;
    for (int j = 0; j < g->n_nodes; j++)
        note_read(s->last_any, &g->nodes[j], j);
    omp_set_num_threads(s->threads);
    if (dnnl_engine_create(&s->engine, dnnl_cpu, 0) != dnnl_success ||
        dnnl_stream_create(&s->stream, s->engine, dnnl_stream_default_flags) != dnnl_success) {
        fpay_backend_set_err(err, err_len, "cannot create a oneDNN CPU engine/stream");
        dn_release(s);
        return FPAY_BACKEND_UNAVAILABLE;
    }
    for (int first = 0; first < g->n_nodes;) {
        if (!mine[first]) {
            first++;
            continue;
        }
        int last = first;
        while (last + 1 < g->n_nodes && mine[last + 1])
            last++;
        s->part++;
        s->part_last = last;
        /* Lifetimes inside the partition: a tensor read nowhere in it
         * lives through its producer only. */
        for (int j = first; j <= last; j++)
            s->last_use[g->nodes[j].outputs[0]] = j;
        for (int j = first; j <= last; j++)
            note_read(s->last_use, &g->nodes[j], j);
        for (int i = first; i <= last; i++) {
            fpay_status st = build_node(s, i, err, err_len);
            if (st != FPAY_OK) {
                dn_release(s);
                return st;
            }
        }
        first = last + 1;
    }
    /* Prepare-time tables are not needed to run. */
    free(s->vals);
    free(s->last_use);
    free(s->last_any);
    s->vals = NULL;
    s->last_use = s->last_any = NULL;
    s->g = NULL;
    *state = s;
    return FPAY_OK;
}

static fpay_status dn_run_range(void *state, const fpay_exec_ctx *ctx, int first, int last,
                                char *err, size_t err_len)
{
    dn_state *s = state;
    if (!s) {
        fpay_backend_set_err(err, err_len, "not prepared");
        return FPAY_INTERNAL;
    }
    omp_set_num_threads(s->threads);
    for (int i = first; i <= last; i++) {
        dn_node *dn = &s->nodes[i];
        if (!dn->n_steps) {
            fpay_backend_set_err(err, err_len, "node %d was not prepared", i);
            return FPAY_INTERNAL;
        }
        for (int k = 0; k < dn->n_steps; k++) {
            dn_step *st = &dn->steps[k];
            for (int a = 0; a < st->nargs; a++)
                if (st->bind[a] >= 0 &&
                    dnnl_memory_set_data_handle(st->args[a].memory,
                                                ctx->buffers[st->bind[a]]) != dnnl_success) {
                    fpay_backend_set_err(err, err_len, "node %d: cannot bind tensor %d", i, st->bind[a]);
                    return FPAY_INTERNAL;
                }
            dnnl_status_t ds = dnnl_primitive_execute(st->prim, s->stream, st->nargs, st->args);
            if (ds != dnnl_success) {
                fpay_backend_set_err(err, err_len, "node %d: dnnl_primitive_execute failed (status %d)", i,
                        (int)ds);
                return FPAY_INTERNAL;
            }
        }
    }
    if (dnnl_stream_wait(s->stream) != dnnl_success) {
        fpay_backend_set_err(err, err_len, "dnnl_stream_wait failed");
        return FPAY_INTERNAL;
    }
    return FPAY_OK;
}

/* Runs one node. Intermediate tensors live in plugin memory, so this is
 * correct only in the order run_range uses (the session always calls
 * run_range when it is set). */
static fpay_status dn_run_node(void *state, const fpay_exec_ctx *ctx, int index, char *err,
                               size_t err_len)
{
    return dn_run_range(state, ctx, index, index, err, err_len);
}

/* "onednn-<the library's version at run time> (<runtime>, <isa>)": the
 * header we built with may differ from the .so the loader found. */
static char dn_version_str[96];
static pthread_once_t dn_version_once = PTHREAD_ONCE_INIT;

static fpay_backend_iface dn_iface = {
    .abi_version = FPAY_BACKEND_ABI_VERSION,
    .struct_size = sizeof(fpay_backend_iface),
    .name = "onednn",
    .version = dn_version_str,
    .probe = dn_probe,
    .supports_node = dn_supports_node,
    .prepare = dn_prepare,
    .run_node = dn_run_node,
    .release = dn_release,
    .run_range = dn_run_range,
};

static void dn_version_init(void)
{
    const dnnl_version_t *v = dnnl_version();
    const char *rt = v->cpu_runtime == DNNL_RUNTIME_OMP    ? "omp"
                     : v->cpu_runtime == DNNL_RUNTIME_TBB  ? "tbb"
                     : v->cpu_runtime == DNNL_RUNTIME_SEQ  ? "seq"
                                                           : "other runtime";
    const char *isa = dnnl_cpu_isa2str(dnnl_get_effective_cpu_isa());
    if (isa && strncmp(isa, "cpu_isa_", 8) == 0)
        isa += 8;
    snprintf(dn_version_str, sizeof dn_version_str, "onednn-%d.%d.%d (%s, %s)", v->major,
             v->minor, v->patch, rt, isa ? isa : "?");
}

FPAY_BACKEND_EXPORT const fpay_backend_iface *fpay_backend_entry(void);
const fpay_backend_iface *fpay_backend_entry(void)
{
    pthread_once(&dn_version_once, dn_version_init);
    return &dn_iface;
}
