/*
 * onednn_backend.c - a facepay backend plugin on oneDNN 2.6.3's C API.
 *
 * prepare creates every primitive once per session (per reshape): one CPU
 * engine and stream, and per node its primitive(s) with memory objects
 * whose data handles are bound to the session's buffers at run time.
 * Activations stay in the session's NHWC buffers (plain nhwc memory
 * descriptors); weights are described as they are stored (OHWI, depthwise
 * [1,KH,KW,C*m]) and reordered once into the layout the primitive asked for
 * (format tag any), into plugin-owned memory.
 *
 * Activations: RELU/RELU6/RELU_N1_TO_1/LEAKY_RELU are eltwise post-ops
 * (relu with alpha, clip), which keep brgconv/jit implementations. PReLU is
 * a separate standalone prelu primitive run in place on the output: a conv
 * with a prelu post-op falls to ref:any in 2.6.3 (ONEDNN_VERBOSE=1 shows it).
 * Threads: omp_set_num_threads(session threads) before each run.
 */
#include "facepay/backend.h"

#include <oneapi/dnnl/dnnl.h>
#include <omp.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))

static void set_err(char *err, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t len, const char *fmt, ...)
{
    if (!err || !len)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, len, fmt, ap);
    va_end(ap);
}

static fpay_status dn_probe(char *why, size_t why_len)
{
    dnnl_engine_t e = NULL;
    dnnl_status_t st = dnnl_engine_create(&e, dnnl_cpu, 0);
    if (st != dnnl_success) {
        set_err(why, why_len, "dnnl_engine_create(cpu) failed (status %d)", (int)st);
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
    case FPAY_OP_FULLY_CONNECTED:
        if (n->n_inputs < 2 || n->n_inputs > 3 || !is_const_f32(g, n->inputs[1]) ||
            (n->n_inputs == 3 && n->inputs[2] >= 0 && !is_const_f32(g, n->inputs[2])))
            return false;
        if (n->op == FPAY_OP_FULLY_CONNECTED)
            return !n->attr.fc.keep_num_dims && y->rank == 2 && act_ok(g, n);
        return x->rank == 4 && act_ok(g, n);
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

enum { MAX_ARGS = 6 };

typedef struct dn_node {
    dnnl_primitive_t prim, prelu;
    int nargs;
    dnnl_exec_arg_t args[MAX_ARGS];
    int arg_tensor[MAX_ARGS];         /* tensor bound at run time, or -1 */
    dnnl_memory_t prelu_data, prelu_w;
} dn_node;

typedef struct dn_state {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    int threads;
    int n_nodes;
    dn_node *nodes;
    dnnl_memory_t *owned;             /* every memory object we created */
    int n_owned, cap_owned;
} dn_state;

static void dn_release(void *state)
{
    dn_state *s = state;
    if (!s)
        return;
    for (int i = 0; i < s->n_nodes; i++) {
        if (s->nodes[i].prim)
            dnnl_primitive_destroy(s->nodes[i].prim);
        if (s->nodes[i].prelu)
            dnnl_primitive_destroy(s->nodes[i].prelu);
    }
    for (int i = 0; i < s->n_owned; i++)
        dnnl_memory_destroy(s->owned[i]);
    free(s->owned);
    free(s->nodes);
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
            set_err(err, err_len, "node %d: %s failed (status %d)", index, what,    \
                    (int)ds_);                                                      \
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

/* NHWC buffer seen as oneDNN's logical NCHW. */
static void md_nhwc(dnnl_memory_desc_t *md, const fpay_tensor *t)
{
    dnnl_dims_t d = {t->dims[0], t->dims[3], t->dims[1], t->dims[2]};
    dnnl_memory_desc_init_by_tag(md, 4, d, dnnl_f32, dnnl_nhwc);
}

/* Activation tensor as oneDNN sees it: 4-D as NCHW-logical nhwc, else dense. */
static void md_act(dnnl_memory_desc_t *md, const fpay_tensor *t)
{
    if (t->rank == 4) {
        md_nhwc(md, t);
        return;
    }
    dnnl_dims_t d;
    for (int i = 0; i < t->rank; i++)
        d[i] = t->dims[i];
    md_dense(md, t->rank, d);
}

static void add_arg(dn_node *dn, int arg, dnnl_memory_t m, int t)
{
    dn->args[dn->nargs].arg = arg;
    dn->args[dn->nargs].memory = m;
    dn->arg_tensor[dn->nargs++] = t;
}

static bool post_op(const fpay_node *n, dnnl_primitive_attr_t *attr)
{
    dnnl_alg_kind_t alg;
    float alpha = 0, beta = 0;
    switch (n->act) {
    case FPAY_ACT_RELU: alg = dnnl_eltwise_relu; break;
    case FPAY_ACT_LEAKY_RELU: alg = dnnl_eltwise_relu; alpha = n->act_alpha; break;
    case FPAY_ACT_RELU6: alg = dnnl_eltwise_clip; beta = 6; break;
    case FPAY_ACT_RELU_N1_TO_1: alg = dnnl_eltwise_clip; alpha = -1; beta = 1; break;
    default: *attr = NULL; return true;
    }
    dnnl_post_ops_t po = NULL;
    if (dnnl_primitive_attr_create(attr) != dnnl_success)
        return false;
    bool ok = dnnl_post_ops_create(&po) == dnnl_success &&
              dnnl_post_ops_append_eltwise(po, 1.0f, alg, alpha, beta) == dnnl_success &&
              dnnl_primitive_attr_set_post_ops(*attr, po) == dnnl_success;
    if (po)
        dnnl_post_ops_destroy(po);
    return ok;
}

/* Constant weights described as stored (user) -> the layout the primitive
 * wants: reorder once into plugin-owned memory. */
static dnnl_memory_t packed_weights(dn_state *s, const dnnl_memory_desc_t *user,
                                    const dnnl_memory_desc_t *want, const void *data)
{
    dnnl_memory_t src = new_memory(s, user, (void *)data);
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

static fpay_status build_node(dn_state *s, const fpay_graph *g, int index, char *err,
                              size_t err_len)
{
    const fpay_node *n = &g->nodes[index];
    dn_node *dn = &s->nodes[index];
    const fpay_tensor *x = tensor(g, n->inputs[0]), *y = tensor(g, n->outputs[0]);
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_memory_desc_t src_md, dst_md, w_md, b_md, wu_md;
    union {
        dnnl_convolution_desc_t conv;
        dnnl_inner_product_desc_t ip;
        dnnl_binary_desc_t bin;
        dnnl_eltwise_desc_t elt;
        dnnl_prelu_desc_t prelu;
        dnnl_softmax_desc_t soft;
        dnnl_pooling_v2_desc_t pool;
    } d;
    md_act(&src_md, x);
    md_act(&dst_md, y);
    bool has_bias = n->n_inputs > 2 && n->inputs[2] >= 0;

    switch (n->op) {
    case FPAY_OP_CONV_2D:
    case FPAY_OP_DEPTHWISE_CONV_2D:
    case FPAY_OP_FULLY_CONNECTED: {
        const fpay_tensor *w = tensor(g, n->inputs[1]);
        int wrank;
        dnnl_dims_t wd, ws;
        if (n->op == FPAY_OP_CONV_2D) { /* OHWI as logical OIHW */
            int64_t O = w->dims[0], KH = w->dims[1], KW = w->dims[2], I = w->dims[3];
            wrank = 4;
            wd[0] = O; wd[1] = I; wd[2] = KH; wd[3] = KW;
            ws[0] = KH * KW * I; ws[1] = 1; ws[2] = KW * I; ws[3] = I;
        } else if (n->op == FPAY_OP_DEPTHWISE_CONV_2D) { /* [1,KH,KW,C*m] as GOIHW */
            int64_t KH = w->dims[1], KW = w->dims[2], C = x->dims[3];
            int64_t m = n->attr.conv.depth_multiplier;
            wrank = 5;
            wd[0] = C; wd[1] = m; wd[2] = 1; wd[3] = KH; wd[4] = KW;
            ws[0] = m; ws[1] = 1; ws[2] = 1; ws[3] = KW * C * m; ws[4] = C * m;
        } else { /* [units, K] */
            wrank = 2;
            wd[0] = w->dims[0]; wd[1] = w->dims[1];
            ws[0] = w->dims[1]; ws[1] = 1;
            dnnl_dims_t sd = {fpay_backend_elems(x) / w->dims[1], w->dims[1]};
            md_dense(&src_md, 2, sd);
        }
        DCHECK(dnnl_memory_desc_init_by_strides(&wu_md, wrank, wd, dnnl_f32, ws), "weights md");
        DCHECK(dnnl_memory_desc_init_by_tag(&w_md, wrank, wd, dnnl_f32, dnnl_format_tag_any),
               "weights md any");
        dnnl_dims_t bd = {y->dims[y->rank - 1]};
        dnnl_memory_desc_init_by_tag(&b_md, 1, bd, dnnl_f32, dnnl_a);
        if (!post_op(n, &attr)) {
            set_err(err, err_len, "node %d: post-op", index);
            goto fail;
        }
        if (n->op == FPAY_OP_FULLY_CONNECTED) {
            DCHECK(dnnl_inner_product_forward_desc_init(&d.ip, dnnl_forward_inference, &src_md,
                                                        &w_md, has_bias ? &b_md : NULL,
                                                        &dst_md),
                   "inner product desc");
        } else {
            const fpay_conv_attr *c = &n->attr.conv;
            dnnl_dims_t strides = {c->stride_h, c->stride_w};
            dnnl_dims_t dil = {c->dilation_h - 1, c->dilation_w - 1};
            dnnl_dims_t pl = {c->pad_top, c->pad_left}, pr = {c->pad_bottom, c->pad_right};
            DCHECK(dnnl_dilated_convolution_forward_desc_init(
                       &d.conv, dnnl_forward_inference, dnnl_convolution_direct, &src_md,
                       &w_md, has_bias ? &b_md : NULL, &dst_md, strides, dil, pl, pr),
                   "convolution desc");
        }
        DCHECK(dnnl_primitive_desc_create(&pd, &d, attr, s->engine, NULL), "primitive desc");
        const dnnl_memory_desc_t *want = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
        dnnl_memory_t wm = packed_weights(s, &wu_md, want, w->data);
        if (!wm) {
            set_err(err, err_len, "node %d: weight reorder failed", index);
            goto fail;
        }
        add_arg(dn, DNNL_ARG_SRC, new_memory(s, &src_md, DNNL_MEMORY_NONE), n->inputs[0]);
        add_arg(dn, DNNL_ARG_WEIGHTS, wm, -1);
        if (has_bias)
            add_arg(dn, DNNL_ARG_BIAS,
                    new_memory(s, &b_md, (void *)tensor(g, n->inputs[2])->data), -1);
        add_arg(dn, DNNL_ARG_DST, new_memory(s, &dst_md, DNNL_MEMORY_NONE), n->outputs[0]);
        break;
    }
    case FPAY_OP_ADD:
    case FPAY_OP_SUB:
    case FPAY_OP_MUL:
    case FPAY_OP_DIV: {
        const fpay_tensor *x1 = tensor(g, n->inputs[1]);
        dnnl_dims_t od, d1;
        for (int i = 0; i < y->rank; i++) {
            od[i] = y->dims[i];
            int j = x1->rank - y->rank + i;
            d1[i] = j >= 0 ? x1->dims[j] : 1;
        }
        /* Same logical order for all three: dense in the stored order. */
        md_dense(&src_md, y->rank, od);
        md_dense(&dst_md, y->rank, od);
        dnnl_memory_desc_t s1_md;
        md_dense(&s1_md, y->rank, d1);
        dnnl_alg_kind_t alg = n->op == FPAY_OP_ADD   ? dnnl_binary_add
                              : n->op == FPAY_OP_SUB ? dnnl_binary_sub
                              : n->op == FPAY_OP_MUL ? dnnl_binary_mul
                                                     : dnnl_binary_div;
        if (!post_op(n, &attr)) {
            set_err(err, err_len, "node %d: post-op", index);
            goto fail;
        }
        DCHECK(dnnl_binary_desc_init(&d.bin, alg, &src_md, &s1_md, &dst_md), "binary desc");
        DCHECK(dnnl_primitive_desc_create(&pd, &d, attr, s->engine, NULL), "primitive desc");
        add_arg(dn, DNNL_ARG_SRC_0, new_memory(s, &src_md, DNNL_MEMORY_NONE), n->inputs[0]);
        add_arg(dn, DNNL_ARG_SRC_1, new_memory(s, &s1_md, DNNL_MEMORY_NONE), n->inputs[1]);
        add_arg(dn, DNNL_ARG_DST, new_memory(s, &dst_md, DNNL_MEMORY_NONE), n->outputs[0]);
        break;
    }
    case FPAY_OP_ABS:
    case FPAY_OP_NEG:
    case FPAY_OP_RELU:
    case FPAY_OP_RELU6:
    case FPAY_OP_LEAKY_RELU:
    case FPAY_OP_EXP: {
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
        DCHECK(dnnl_eltwise_forward_desc_init(&d.elt, dnnl_forward_inference, alg, &src_md,
                                              alpha, beta),
               "eltwise desc");
        DCHECK(dnnl_primitive_desc_create(&pd, &d, NULL, s->engine, NULL), "primitive desc");
        add_arg(dn, DNNL_ARG_SRC, new_memory(s, &src_md, DNNL_MEMORY_NONE), n->inputs[0]);
        add_arg(dn, DNNL_ARG_DST, new_memory(s, &src_md, DNNL_MEMORY_NONE), n->outputs[0]);
        break;
    }
    case FPAY_OP_SOFTMAX:
        DCHECK(dnnl_softmax_forward_desc_init(&d.soft, dnnl_forward_inference, &src_md,
                                              x->rank == 4 ? 1 : x->rank - 1),
               "softmax desc");
        DCHECK(dnnl_primitive_desc_create(&pd, &d, NULL, s->engine, NULL), "primitive desc");
        add_arg(dn, DNNL_ARG_SRC, new_memory(s, &src_md, DNNL_MEMORY_NONE), n->inputs[0]);
        add_arg(dn, DNNL_ARG_DST, new_memory(s, &src_md, DNNL_MEMORY_NONE), n->outputs[0]);
        break;
    case FPAY_OP_MAX_POOL_2D:
    case FPAY_OP_AVERAGE_POOL_2D: {
        const fpay_pool_attr *p = &n->attr.pool;
        dnnl_dims_t strides = {p->stride_h, p->stride_w}, k = {p->filter_h, p->filter_w};
        dnnl_dims_t dil = {0, 0}, pl = {p->pad_top, p->pad_left};
        dnnl_dims_t pr = {p->pad_bottom, p->pad_right};
        DCHECK(dnnl_pooling_v2_forward_desc_init(
                   &d.pool, dnnl_forward_inference,
                   n->op == FPAY_OP_MAX_POOL_2D ? dnnl_pooling_max
                                                : dnnl_pooling_avg_exclude_padding,
                   &src_md, &dst_md, strides, k, dil, pl, pr),
               "pooling desc");
        DCHECK(dnnl_primitive_desc_create(&pd, &d, NULL, s->engine, NULL), "primitive desc");
        add_arg(dn, DNNL_ARG_SRC, new_memory(s, &src_md, DNNL_MEMORY_NONE), n->inputs[0]);
        add_arg(dn, DNNL_ARG_DST, new_memory(s, &dst_md, DNNL_MEMORY_NONE), n->outputs[0]);
        break;
    }
    case FPAY_OP_PRELU:
        break; /* the prelu primitive below, from input to output */
    default:
        set_err(err, err_len, "node %d: op %d not supported", index, (int)n->op);
        goto fail;
    }
    if (pd) {
        DCHECK(dnnl_primitive_create(&dn->prim, pd), "primitive create");
        dnnl_primitive_desc_destroy(pd);
        pd = NULL;
    }
    if (attr) {
        dnnl_primitive_attr_destroy(attr);
        attr = NULL;
    }
    int slope = n->op == FPAY_OP_PRELU ? n->inputs[1] : n->act == FPAY_ACT_PRELU ? n->act_slope : -1;
    if (slope >= 0) {
        /* Standalone prelu (jit), in place on the output for a fused one. */
        dnnl_memory_desc_t sw_md;
        dnnl_dims_t swd = {1, 1, 1, 1};
        if (y->rank == 4) {
            swd[1] = y->dims[3];
            dnnl_memory_desc_init_by_tag(&sw_md, 4, swd, dnnl_f32, dnnl_nhwc);
        } else {
            swd[1] = y->dims[1];
            md_dense(&sw_md, 2, swd);
        }
        md_act(&dst_md, y);
        DCHECK(dnnl_prelu_forward_desc_init(&d.prelu, dnnl_forward_inference, &dst_md, &sw_md),
               "prelu desc");
        DCHECK(dnnl_primitive_desc_create(&pd, &d, NULL, s->engine, NULL), "primitive desc");
        DCHECK(dnnl_primitive_create(&dn->prelu, pd), "prelu create");
        dnnl_primitive_desc_destroy(pd);
        pd = NULL;
        dn->prelu_data = new_memory(s, &dst_md, DNNL_MEMORY_NONE);
        dn->prelu_w = new_memory(s, &sw_md, (void *)tensor(g, slope)->data);
        if (n->op == FPAY_OP_PRELU) {
            /* src = input, dst = output */
            add_arg(dn, DNNL_ARG_SRC, new_memory(s, &dst_md, DNNL_MEMORY_NONE), n->inputs[0]);
            add_arg(dn, DNNL_ARG_WEIGHTS, dn->prelu_w, -1);
            add_arg(dn, DNNL_ARG_DST, dn->prelu_data, n->outputs[0]);
            dn->prim = dn->prelu;
            dn->prelu = NULL;
        }
    }
    for (int i = 0; i < dn->nargs; i++)
        if (!dn->args[i].memory) {
            set_err(err, err_len, "node %d: memory create failed", index);
            goto fail;
        }
    return FPAY_OK;
fail:
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    return FPAY_INTERNAL;
}

static fpay_status dn_prepare(const fpay_graph *g, const bool *mine, int threads,
                              void **state, char *err, size_t err_len)
{
    *state = NULL;
    dn_state *s = calloc(1, sizeof *s);
    if (!s)
        return FPAY_OUT_OF_MEMORY;
    s->threads = threads > 0 ? threads : 1;
    s->n_nodes = g->n_nodes;
    s->nodes = calloc((size_t)g->n_nodes + 1, sizeof *s->nodes);
    if (!s->nodes) {
        free(s);
        return FPAY_OUT_OF_MEMORY;
    }
    omp_set_num_threads(s->threads);
    if (dnnl_engine_create(&s->engine, dnnl_cpu, 0) != dnnl_success ||
        dnnl_stream_create(&s->stream, s->engine, dnnl_stream_default_flags) != dnnl_success) {
        set_err(err, err_len, "cannot create a oneDNN CPU engine/stream");
        dn_release(s);
        return FPAY_BACKEND_UNAVAILABLE;
    }
    for (int i = 0; i < g->n_nodes; i++) {
        if (!mine[i])
            continue;
        fpay_status st = build_node(s, g, i, err, err_len);
        if (st != FPAY_OK) {
            dn_release(s);
            return st;
        }
    }
    *state = s;
    return FPAY_OK;
}

static fpay_status dn_run_range(void *state, const fpay_exec_ctx *ctx, int first, int last,
                                char *err, size_t err_len)
{
    dn_state *s = state;
    if (!s) {
        set_err(err, err_len, "not prepared");
        return FPAY_INTERNAL;
    }
    omp_set_num_threads(s->threads);
    for (int i = first; i <= last; i++) {
        dn_node *dn = &s->nodes[i];
        if (!dn->prim) {
            set_err(err, err_len, "node %d was not prepared", i);
            return FPAY_INTERNAL;
        }
        for (int a = 0; a < dn->nargs; a++)
            if (dn->arg_tensor[a] >= 0 &&
                dnnl_memory_set_data_handle(dn->args[a].memory,
                                            ctx->buffers[dn->arg_tensor[a]]) != dnnl_success)
                return FPAY_INTERNAL;
        dnnl_status_t st = dnnl_primitive_execute(dn->prim, s->stream, dn->nargs, dn->args);
        if (st == dnnl_success && dn->prelu) {
            int out = ctx->graph->nodes[i].outputs[0];
            dnnl_memory_set_data_handle(dn->prelu_data, ctx->buffers[out]);
            dnnl_exec_arg_t a[3] = {{DNNL_ARG_SRC, dn->prelu_data},
                                    {DNNL_ARG_WEIGHTS, dn->prelu_w},
                                    {DNNL_ARG_DST, dn->prelu_data}};
            st = dnnl_primitive_execute(dn->prelu, s->stream, 3, a);
        }
        if (st != dnnl_success) {
            set_err(err, err_len, "node %d: dnnl_primitive_execute failed (status %d)", i,
                    (int)st);
            return FPAY_INTERNAL;
        }
    }
    if (dnnl_stream_wait(s->stream) != dnnl_success)
        return FPAY_INTERNAL;
    return FPAY_OK;
}

static fpay_status dn_run_node(void *state, const fpay_exec_ctx *ctx, int index, char *err,
                               size_t err_len)
{
    return dn_run_range(state, ctx, index, index, err, err_len);
}

static const fpay_backend_iface dn_iface = {
    .abi_version = FPAY_BACKEND_ABI_VERSION,
    .struct_size = sizeof(fpay_backend_iface),
    .name = "onednn",
    .version = "onednn-2.6.3",
    .probe = dn_probe,
    .supports_node = dn_supports_node,
    .prepare = dn_prepare,
    .run_node = dn_run_node,
    .release = dn_release,
    .run_range = dn_run_range,
};

EXPORT const fpay_backend_iface *fpay_backend_entry(void);
const fpay_backend_iface *fpay_backend_entry(void) { return &dn_iface; }
