/*
 * xnnpack_backend.c - a facepay backend plugin on XNNPACK's subgraph API
 * (the 2022 snapshot Debian ships: libxnnpack-dev 0.0~git20220216).
 *
 * prepare builds one xnn_subgraph -> xnn_runtime per maximal run of
 * consecutive nodes this backend runs (a partition). Tensors crossing a
 * partition edge (graph inputs/outputs, or produced/consumed by a node on
 * another backend) are external values bound to the session's buffers at
 * run time; the rest are internal values XNNPACK allocates. Weights are the
 * model's constants, handed over once per prepare: XNNPACK packs conv and
 * fully connected weights at runtime creation; static operands of
 * elementwise ops are read in place (the model outlives every session).
 *
 * What it declines (the session runs those on the CPU backend): see
 * xnn_supports_node and docs/backends.md.
 */
#include "facepay/backend.h"

#include <xnnpack.h>
#include <pthreadpool.h>

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------- initialise */

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static enum xnn_status init_status = xnn_status_uninitialized;

static void init_xnnpack(void) { init_status = xnn_initialize(NULL); }

static fpay_status xnn_probe(char *why, size_t why_len)
{
    pthread_once(&init_once, init_xnnpack);
    if (init_status != xnn_status_success) {
        fpay_backend_set_err(why, why_len, "xnn_initialize failed (status %d%s)", (int)init_status,
                init_status == xnn_status_unsupported_hardware ? ": unsupported CPU" : "");
        return FPAY_BACKEND_UNAVAILABLE;
    }
    return FPAY_OK;
}

/* ------------------------------------------------------------- support */

static const fpay_tensor *tensor(const fpay_graph *g, int t) { return &g->tensors[t]; }

static bool is_const_f32(const fpay_graph *g, int t)
{
    return t >= 0 && (g->tensors[t].flags & FPAY_TENSOR_CONST) &&
           g->tensors[t].dtype == FPAY_DT_F32 && g->tensors[t].data;
}

/* Output clamp and the activation that needs a node of its own. */
typedef struct act_plan {
    float lo, hi;
    int post; /* 0 none, 1 PReLU (slope tensor), 2 leaky ReLU */
} act_plan;

static bool plan_act(const fpay_graph *g, const fpay_node *n, act_plan *a)
{
    a->lo = -INFINITY;
    a->hi = INFINITY;
    a->post = 0;
    const fpay_tensor *y = tensor(g, n->outputs[0]);
    switch (n->act) {
    case FPAY_ACT_NONE: return true;
    case FPAY_ACT_RELU: a->lo = 0; return true;
    case FPAY_ACT_RELU6: a->lo = 0; a->hi = 6; return true;
    case FPAY_ACT_RELU_N1_TO_1: a->lo = -1; a->hi = 1; return true;
    case FPAY_ACT_PRELU:
        /* xnn_define_prelu takes 4-D NHWC and a static [C] slope. */
        a->post = 1;
        return y->rank == 4 && is_const_f32(g, n->act_slope) &&
               fpay_backend_elems(tensor(g, n->act_slope)) == y->dims[3];
    case FPAY_ACT_LEAKY_RELU: a->post = 2; return true;
    }
    return false;
}

static bool all_f32(const fpay_graph *g, const fpay_node *n)
{
    for (int k = 0; k < n->n_inputs; k++)
        if (n->inputs[k] >= 0 && g->tensors[n->inputs[k]].dtype != FPAY_DT_F32)
            return false;
    for (int k = 0; k < n->n_outputs; k++)
        if (g->tensors[n->outputs[k]].dtype != FPAY_DT_F32)
            return false;
    for (int k = 0; k < n->n_inputs; k++)
        if (n->inputs[k] >= 0 && g->tensors[n->inputs[k]].rank > XNN_MAX_TENSOR_DIMS)
            return false;
    return true;
}

static bool xnn_supports_node(const fpay_graph *g, int index)
{
    if (index < 0 || index >= g->n_nodes)
        return false;
    const fpay_node *n = &g->nodes[index];
    if (n->n_outputs != 1 || !all_f32(g, n))
        return false;
    act_plan a;
    const fpay_tensor *x = tensor(g, n->inputs[0]), *y = tensor(g, n->outputs[0]);
    switch (n->op) {
    case FPAY_OP_CONV_2D:
    case FPAY_OP_DEPTHWISE_CONV_2D: {
        /* Input 3 (FPAY_CONV_INPUT_RESIDUAL): conv, then add2 with it. */
        if (n->n_inputs == FPAY_CONV_INPUT_RESIDUAL + 1) {
            int r = n->inputs[FPAY_CONV_INPUT_RESIDUAL];
            if (n->op != FPAY_OP_CONV_2D || r < 0 ||
                (g->tensors[r].flags & FPAY_TENSOR_CONST) || tensor(g, r)->rank != 4)
                return false;
            for (int i = 0; i < 4; i++)
                if (tensor(g, r)->dims[i] != y->dims[i])
                    return false;
        } else if (n->n_inputs > 3) {
            return false;
        }
        if (n->n_inputs < 2 || x->rank != 4 ||
            !is_const_f32(g, n->inputs[1]) ||
            (n->n_inputs == 3 && n->inputs[2] >= 0 && !is_const_f32(g, n->inputs[2])))
            return false;
        const fpay_conv_attr *c = &n->attr.conv;
        return c->pad_top >= 0 && c->pad_left >= 0 && c->pad_bottom >= 0 &&
               c->pad_right >= 0 && plan_act(g, n, &a);
    }
    case FPAY_OP_FULLY_CONNECTED:
        if (n->n_inputs < 2 || n->n_inputs > 3 || !is_const_f32(g, n->inputs[1]) ||
            (n->n_inputs == 3 && n->inputs[2] >= 0 && !is_const_f32(g, n->inputs[2])))
            return false;
        /* Without keep_num_dims the output is 2-D: RESHAPE_2D flattens any
         * input. With it XNNPACK's default (leading dims kept) matches. */
        if (n->attr.fc.keep_num_dims && x->rank < 2)
            return false;
        return plan_act(g, n, &a);
    case FPAY_OP_ADD:
    case FPAY_OP_SUB:
    case FPAY_OP_MUL:
    case FPAY_OP_DIV:
        if (n->n_inputs != 2 || y->rank > 4 || x->rank > 4 ||
            tensor(g, n->inputs[1])->rank > 4)
            return false;
        return plan_act(g, n, &a);
    case FPAY_OP_ABS:
    case FPAY_OP_NEG:
    case FPAY_OP_RELU:
    case FPAY_OP_RELU6:
    case FPAY_OP_LEAKY_RELU:
        return n->act == FPAY_ACT_NONE;
    case FPAY_OP_PRELU:
        return x->rank == 4 && is_const_f32(g, n->inputs[1]) &&
               fpay_backend_elems(tensor(g, n->inputs[1])) == x->dims[3];
    case FPAY_OP_SOFTMAX:
        return x->rank >= 1 && n->act == FPAY_ACT_NONE;
    case FPAY_OP_MAX_POOL_2D:
    case FPAY_OP_AVERAGE_POOL_2D: {
        const fpay_pool_attr *p = &n->attr.pool;
        if (x->rank != 4 || p->filter_h * p->filter_w <= 1 || !plan_act(g, n, &a) || a.post)
            return false;
        if (p->pad_top >= p->filter_h || p->pad_bottom >= p->filter_h ||
            p->pad_left >= p->filter_w || p->pad_right >= p->filter_w)
            return false;
        /* Max pool skips padded cells (XNNPACK clamps the window to the
         * image), as TFLite does. XNNPACK's average pool with padding differs
         * from TFLite's (divides by in-image cells) in this snapshot's
         * subgraph path: take it only when no window touches padding. */
        if (n->op == FPAY_OP_AVERAGE_POOL_2D)
            return p->pad_top == 0 && p->pad_left == 0 && p->pad_bottom == 0 &&
                   p->pad_right == 0;
        return true;
    }
    case FPAY_OP_RESHAPE:
        return y->rank >= 1 && y->rank <= XNN_MAX_TENSOR_DIMS &&
               (x->flags & FPAY_TENSOR_CONST) == 0;
    default:
        return false;
    }
}

/* ------------------------------------------------------------- prepare */

typedef struct xnn_part {
    int first, last;
    xnn_runtime_t runtime;
    uint32_t n_ext;
    int *ext_tensor;                  /* external id -> tensor index */
    bool *ext_is_input;
    struct xnn_external_value *ext;   /* bound pointers of the last setup */
    bool set_up;
} xnn_part;

typedef struct xnn_state {
    pthreadpool_t pool;
    int n_parts;
    xnn_part *parts;
    /* Inputs that end where XNNPACK's over-read (XNN_EXTRA_BYTES) could
     * leave the arena are staged through this padded buffer. */
    char *stage;
    size_t stage_size;
    char *arena_hi;                   /* end of the highest buffer, per bind */
    void **bound_buffers;
} xnn_state;

static void release_state(xnn_state *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->n_parts; i++) {
        if (s->parts[i].runtime)
            xnn_delete_runtime(s->parts[i].runtime);
        free(s->parts[i].ext_tensor);
        free(s->parts[i].ext_is_input);
        free(s->parts[i].ext);
    }
    free(s->parts);
    free(s->stage);
    if (s->pool)
        pthreadpool_destroy(s->pool);
    free(s);
}

static void xnn_release(void *state) { release_state(state); }

typedef struct builder {
    const fpay_graph *g;
    xnn_subgraph_t sg;
    uint32_t *value;     /* tensor -> value id, XNN_INVALID_VALUE_ID if none */
    int *ext_id;         /* tensor -> external id or -1 */
    char *err;
    size_t err_len;
} builder;

#define XCHECK(call, what)                                                         \
    do {                                                                           \
        enum xnn_status xs_ = (call);                                              \
        if (xs_ != xnn_status_success) {                                           \
            fpay_backend_set_err(b->err, b->err_len, "%s failed (status %d)", what, (int)xs_);  \
            return false;                                                          \
        }                                                                          \
    } while (0)

static bool define_value(builder *b, int t, uint32_t *id)
{
    if (b->value[t] != XNN_INVALID_VALUE_ID) {
        *id = b->value[t];
        return true;
    }
    const fpay_tensor *x = tensor(b->g, t);
    size_t dims[XNN_MAX_TENSOR_DIMS];
    for (int i = 0; i < x->rank; i++)
        dims[i] = (size_t)x->dims[i];
    bool is_const = (x->flags & FPAY_TENSOR_CONST) != 0;
    /* External values were defined up front; what is left is a static
     * (the model's constant, read in place or packed) or an internal value. */
    XCHECK(xnn_define_tensor_value(b->sg, xnn_datatype_fp32, (size_t)x->rank, dims,
                                   is_const ? x->data : NULL, XNN_INVALID_VALUE_ID, 0, id),
           "xnn_define_tensor_value");
    b->value[t] = *id;
    return true;
}

/* An internal value shaped like tensor t (an activation's pre-image). */
static bool define_temp(builder *b, int t, uint32_t *id)
{
    const fpay_tensor *x = tensor(b->g, t);
    size_t dims[XNN_MAX_TENSOR_DIMS];
    for (int i = 0; i < x->rank; i++)
        dims[i] = (size_t)x->dims[i];
    XCHECK(xnn_define_tensor_value(b->sg, xnn_datatype_fp32, (size_t)x->rank, dims, NULL,
                                   XNN_INVALID_VALUE_ID, 0, id),
           "xnn_define_tensor_value (temporary)");
    return true;
}

/* Where the op itself writes: the output, or a temporary when a PReLU or
 * leaky ReLU node follows. */
static bool op_output(builder *b, const fpay_node *n, const act_plan *a, uint32_t *op_out)
{
    return a->post ? define_temp(b, n->outputs[0], op_out)
                   : define_value(b, n->outputs[0], op_out);
}

static bool finish_act(builder *b, const fpay_node *n, const act_plan *a, uint32_t op_out)
{
    if (!a->post)
        return true;
    uint32_t out;
    if (!define_value(b, n->outputs[0], &out))
        return false;
    if (a->post == 1) {
        uint32_t slope;
        if (!define_value(b, n->act_slope, &slope))
            return false;
        XCHECK(xnn_define_prelu(b->sg, op_out, slope, out, 0), "xnn_define_prelu");
    } else {
        XCHECK(xnn_define_leaky_relu(b->sg, n->act_alpha, op_out, out, 0),
               "xnn_define_leaky_relu");
    }
    return true;
}

static bool define_node(builder *b, int index)
{
    const fpay_graph *g = b->g;
    const fpay_node *n = &g->nodes[index];
    act_plan a;
    plan_act(g, n, &a);
    uint32_t in, out, w, bias = XNN_INVALID_VALUE_ID, in2;
    if (!define_value(b, n->inputs[0], &in))
        return false;
    switch (n->op) {
    case FPAY_OP_CONV_2D:
    case FPAY_OP_DEPTHWISE_CONV_2D: {
        const fpay_conv_attr *c = &n->attr.conv;
        const fpay_tensor *x = tensor(g, n->inputs[0]), *wt = tensor(g, n->inputs[1]);
        bool residual = n->n_inputs > FPAY_CONV_INPUT_RESIDUAL;
        act_plan conv_act = a;
        if (residual) /* the clamp goes on the add, the taps stay unclamped */
            conv_act.lo = -INFINITY, conv_act.hi = INFINITY;
        if (!define_value(b, n->inputs[1], &w) ||
            (n->n_inputs > 2 && n->inputs[2] >= 0 && !define_value(b, n->inputs[2], &bias)) ||
            (residual ? !define_temp(b, n->outputs[0], &out) : !op_output(b, n, &a, &out)))
            return false;
        if (n->op == FPAY_OP_CONV_2D)
            XCHECK(xnn_define_convolution_2d(
                       b->sg, (uint32_t)c->pad_top, (uint32_t)c->pad_right,
                       (uint32_t)c->pad_bottom, (uint32_t)c->pad_left, (uint32_t)wt->dims[1],
                       (uint32_t)wt->dims[2], (uint32_t)c->stride_h, (uint32_t)c->stride_w,
                       (uint32_t)c->dilation_h, (uint32_t)c->dilation_w, 1,
                       (size_t)x->dims[3], (size_t)wt->dims[0], conv_act.lo, conv_act.hi, in,
                       w, bias, out, 0),
                   "xnn_define_convolution_2d");
        else
            XCHECK(xnn_define_depthwise_convolution_2d(
                       b->sg, (uint32_t)c->pad_top, (uint32_t)c->pad_right,
                       (uint32_t)c->pad_bottom, (uint32_t)c->pad_left, (uint32_t)wt->dims[1],
                       (uint32_t)wt->dims[2], (uint32_t)c->stride_h, (uint32_t)c->stride_w,
                       (uint32_t)c->dilation_h, (uint32_t)c->dilation_w,
                       (uint32_t)c->depth_multiplier, (size_t)x->dims[3], a.lo, a.hi, in, w,
                       bias, out, 0),
                   "xnn_define_depthwise_convolution_2d");
        if (residual) {
            uint32_t res, sum;
            if (!define_value(b, n->inputs[FPAY_CONV_INPUT_RESIDUAL], &res) ||
                !op_output(b, n, &a, &sum))
                return false;
            XCHECK(xnn_define_add2(b->sg, a.lo, a.hi, out, res, sum, 0),
                   "xnn_define_add2 (residual)");
            out = sum;
        }
        return finish_act(b, n, &a, out);
    }
    case FPAY_OP_FULLY_CONNECTED: {
        const fpay_tensor *x = tensor(g, n->inputs[0]);
        if (!define_value(b, n->inputs[1], &w) ||
            (n->n_inputs > 2 && n->inputs[2] >= 0 && !define_value(b, n->inputs[2], &bias)) ||
            !op_output(b, n, &a, &out))
            return false;
        uint32_t flags = n->attr.fc.keep_num_dims || x->rank == 2
                             ? 0 : XNN_FLAG_TENSORFLOW_RESHAPE_2D;
        XCHECK(xnn_define_fully_connected(b->sg, a.lo, a.hi, in, w, bias, out, flags),
               "xnn_define_fully_connected");
        return finish_act(b, n, &a, out);
    }
    case FPAY_OP_ADD:
    case FPAY_OP_SUB:
    case FPAY_OP_MUL:
    case FPAY_OP_DIV:
        if (!define_value(b, n->inputs[1], &in2) || !op_output(b, n, &a, &out))
            return false;
        if (n->op == FPAY_OP_ADD)
            XCHECK(xnn_define_add2(b->sg, a.lo, a.hi, in, in2, out, 0), "xnn_define_add2");
        else if (n->op == FPAY_OP_SUB)
            XCHECK(xnn_define_subtract(b->sg, a.lo, a.hi, in, in2, out, 0), "xnn_define_subtract");
        else if (n->op == FPAY_OP_MUL)
            XCHECK(xnn_define_multiply2(b->sg, a.lo, a.hi, in, in2, out, 0),
                   "xnn_define_multiply2");
        else
            XCHECK(xnn_define_divide(b->sg, a.lo, a.hi, in, in2, out, 0), "xnn_define_divide");
        return finish_act(b, n, &a, out);
    case FPAY_OP_ABS:
    case FPAY_OP_NEG:
    case FPAY_OP_RELU:
    case FPAY_OP_RELU6:
    case FPAY_OP_LEAKY_RELU:
    case FPAY_OP_SOFTMAX:
        if (!define_value(b, n->outputs[0], &out))
            return false;
        if (n->op == FPAY_OP_ABS)
            XCHECK(xnn_define_abs(b->sg, in, out, 0), "xnn_define_abs");
        else if (n->op == FPAY_OP_NEG)
            XCHECK(xnn_define_negate(b->sg, in, out, 0), "xnn_define_negate");
        else if (n->op == FPAY_OP_RELU)
            XCHECK(xnn_define_clamp(b->sg, 0.0f, INFINITY, in, out, 0), "xnn_define_clamp");
        else if (n->op == FPAY_OP_RELU6)
            XCHECK(xnn_define_clamp(b->sg, 0.0f, 6.0f, in, out, 0), "xnn_define_clamp");
        else if (n->op == FPAY_OP_LEAKY_RELU)
            XCHECK(xnn_define_leaky_relu(b->sg, n->attr.leaky.alpha, in, out, 0),
                   "xnn_define_leaky_relu");
        else
            XCHECK(xnn_define_softmax(b->sg, in, out, 0), "xnn_define_softmax");
        return true;
    case FPAY_OP_PRELU:
        if (!define_value(b, n->inputs[1], &in2) || !define_value(b, n->outputs[0], &out))
            return false;
        XCHECK(xnn_define_prelu(b->sg, in, in2, out, 0), "xnn_define_prelu");
        return true;
    case FPAY_OP_MAX_POOL_2D:
    case FPAY_OP_AVERAGE_POOL_2D: {
        const fpay_pool_attr *p = &n->attr.pool;
        if (!define_value(b, n->outputs[0], &out))
            return false;
        if (n->op == FPAY_OP_MAX_POOL_2D)
            XCHECK(xnn_define_max_pooling_2d(
                       b->sg, (uint32_t)p->pad_top, (uint32_t)p->pad_right,
                       (uint32_t)p->pad_bottom, (uint32_t)p->pad_left, (uint32_t)p->filter_h,
                       (uint32_t)p->filter_w, (uint32_t)p->stride_h, (uint32_t)p->stride_w, 1,
                       1, a.lo, a.hi, in, out, 0),
                   "xnn_define_max_pooling_2d");
        else
            XCHECK(xnn_define_average_pooling_2d(
                       b->sg, 0, 0, 0, 0, (uint32_t)p->filter_h, (uint32_t)p->filter_w,
                       (uint32_t)p->stride_h, (uint32_t)p->stride_w, a.lo, a.hi, in, out, 0),
                   "xnn_define_average_pooling_2d");
        return true;
    }
    case FPAY_OP_RESHAPE: {
        const fpay_tensor *y = tensor(g, n->outputs[0]);
        size_t dims[XNN_MAX_TENSOR_DIMS];
        for (int i = 0; i < y->rank; i++)
            dims[i] = (size_t)y->dims[i];
        if (!define_value(b, n->outputs[0], &out))
            return false;
        XCHECK(xnn_define_static_reshape(b->sg, (size_t)y->rank, dims, in, out, 0),
               "xnn_define_static_reshape");
        return true;
    }
    default:
        fpay_backend_set_err(b->err, b->err_len, "node %d: op %d not supported", index, (int)n->op);
        return false;
    }
}

static bool reads(const fpay_node *n, int t)
{
    for (int k = 0; k < n->n_inputs; k++)
        if (n->inputs[k] == t)
            return true;
    return n->act_slope == t;
}

/* Builds partition [first, last]: finds its external tensors, defines the
 * subgraph, creates the runtime. */
static fpay_status build_part(const fpay_graph *g, xnn_state *s, xnn_part *p, char *err,
                              size_t err_len)
{
    int nt = g->n_tensors;
    builder b = {g, NULL, malloc((size_t)nt * sizeof(uint32_t)), malloc((size_t)nt * sizeof(int)),
                 err, err_len};
    fpay_status st = FPAY_INTERNAL;
    if (!b.value || !b.ext_id) {
        st = FPAY_OUT_OF_MEMORY;
        goto out;
    }
    for (int t = 0; t < nt; t++) {
        b.value[t] = XNN_INVALID_VALUE_ID;
        b.ext_id[t] = -1;
    }
    /* External: read here but written before (or a graph input); written here
     * and a graph output or read after the partition. */
    p->ext_tensor = malloc(((size_t)nt + 1) * sizeof(int));
    p->ext_is_input = malloc(((size_t)nt + 1) * sizeof(bool));
    if (!p->ext_tensor || !p->ext_is_input) {
        st = FPAY_OUT_OF_MEMORY;
        goto out;
    }
    bool *written = calloc((size_t)nt + 1, sizeof(bool));
    if (!written) {
        st = FPAY_OUT_OF_MEMORY;
        goto out;
    }
    for (int i = p->first; i <= p->last; i++) {
        const fpay_node *n = &g->nodes[i];
        for (int k = 0; k <= n->n_inputs; k++) {
            int t = k < n->n_inputs ? n->inputs[k] : n->act_slope;
            if (t < 0 || (g->tensors[t].flags & FPAY_TENSOR_CONST) || written[t] ||
                b.ext_id[t] >= 0)
                continue;
            b.ext_id[t] = (int)p->n_ext;
            p->ext_is_input[p->n_ext] = true;
            p->ext_tensor[p->n_ext++] = t;
        }
        for (int k = 0; k < n->n_outputs; k++)
            written[n->outputs[k]] = true;
    }
    for (int i = p->first; i <= p->last; i++) {
        const fpay_node *n = &g->nodes[i];
        for (int k = 0; k < n->n_outputs; k++) {
            int t = n->outputs[k];
            bool needed = (g->tensors[t].flags & FPAY_TENSOR_OUTPUT) != 0;
            for (int o = 0; o < g->n_outputs; o++)
                needed = needed || g->outputs[o] == t;
            for (int j = p->last + 1; j < g->n_nodes && !needed; j++)
                needed = reads(&g->nodes[j], t);
            if (needed && b.ext_id[t] < 0) {
                b.ext_id[t] = (int)p->n_ext;
                p->ext_is_input[p->n_ext] = false;
                p->ext_tensor[p->n_ext++] = t;
            }
        }
    }
    free(written);
    p->ext = calloc((size_t)p->n_ext + 1, sizeof *p->ext);
    if (!p->ext) {
        st = FPAY_OUT_OF_MEMORY;
        goto out;
    }
    enum xnn_status xs = xnn_create_subgraph(p->n_ext, 0, &b.sg);
    if (xs != xnn_status_success) {
        fpay_backend_set_err(err, err_len, "xnn_create_subgraph failed (status %d)", (int)xs);
        goto out;
    }
    /* External values first, with their flags. */
    for (uint32_t e = 0; e < p->n_ext; e++) {
        const fpay_tensor *x = tensor(g, p->ext_tensor[e]);
        size_t dims[XNN_MAX_TENSOR_DIMS];
        for (int i = 0; i < x->rank; i++)
            dims[i] = (size_t)x->dims[i];
        uint32_t id;
        xs = xnn_define_tensor_value(b.sg, xnn_datatype_fp32, (size_t)x->rank, dims, NULL, e,
                                     p->ext_is_input[e] ? XNN_VALUE_FLAG_EXTERNAL_INPUT
                                                        : XNN_VALUE_FLAG_EXTERNAL_OUTPUT,
                                     &id);
        if (xs != xnn_status_success) {
            fpay_backend_set_err(err, err_len, "external value %u: status %d", e, (int)xs);
            goto out;
        }
        b.value[p->ext_tensor[e]] = id;
    }
    for (int i = p->first; i <= p->last; i++)
        if (!define_node(&b, i)) {
            size_t used = strlen(err);
            snprintf(err + used, err_len - used, " (node %d, op %d)", i, (int)g->nodes[i].op);
            goto out;
        }
    xs = xnn_create_runtime_v2(b.sg, s->pool, 0, &p->runtime);
    if (xs != xnn_status_success) {
        fpay_backend_set_err(err, err_len, "xnn_create_runtime_v2 failed for nodes %d..%d (status %d)",
                p->first, p->last, (int)xs);
        goto out;
    }
    st = FPAY_OK;
out:
    if (b.sg)
        xnn_delete_subgraph(b.sg); /* the runtime keeps what it needs */
    free(b.value);
    free(b.ext_id);
    return st;
}

static fpay_status xnn_prepare(const fpay_graph *g, const bool *mine, int threads,
                               void **state, char *err, size_t err_len)
{
    *state = NULL;
    if (xnn_probe(err, err_len) != FPAY_OK)
        return FPAY_BACKEND_UNAVAILABLE;
    xnn_state *s = calloc(1, sizeof *s);
    if (!s)
        return FPAY_OUT_OF_MEMORY;
    /* NULL pool: XNNPACK runs on the caller's thread. */
    if (threads > 1 && !(s->pool = pthreadpool_create((size_t)threads))) {
        free(s);
        fpay_backend_set_err(err, err_len, "pthreadpool_create(%d) failed", threads);
        return FPAY_OUT_OF_MEMORY;
    }
    for (int i = 0; i < g->n_nodes; i++)
        s->n_parts += mine[i] && (i == 0 || !mine[i - 1]);
    s->parts = calloc((size_t)s->n_parts + 1, sizeof *s->parts);
    if (!s->parts) {
        release_state(s);
        return FPAY_OUT_OF_MEMORY;
    }
    int k = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        if (!mine[i] || (i > 0 && mine[i - 1]))
            continue;
        int last = i;
        while (last + 1 < g->n_nodes && mine[last + 1])
            last++;
        s->parts[k].first = i;
        s->parts[k].last = last;
        fpay_status st = build_part(g, s, &s->parts[k], err, err_len);
        k++;
        if (st != FPAY_OK) {
            release_state(s);
            return st;
        }
    }
    *state = s;
    return FPAY_OK;
}

/* Binds the session's buffers to a partition's external values. XNNPACK
 * may read up to XNN_EXTRA_BYTES past an input; an input that ends at the
 * top of the arena is copied into a padded staging buffer first. */
static fpay_status bind(xnn_state *s, xnn_part *p, const fpay_exec_ctx *ctx, char *err,
                        size_t err_len)
{
    const fpay_graph *g = ctx->graph;
    if (s->bound_buffers != ctx->buffers || !s->arena_hi) {
        s->arena_hi = NULL;
        for (int t = 0; t < g->n_tensors; t++) {
            if ((g->tensors[t].flags & FPAY_TENSOR_CONST) || !ctx->buffers[t])
                continue;
            char *end = (char *)ctx->buffers[t] + g->tensors[t].nbytes;
            if (end > s->arena_hi)
                s->arena_hi = end;
        }
        s->bound_buffers = ctx->buffers;
        for (int i = 0; i < s->n_parts; i++)
            s->parts[i].set_up = false;
    }
    bool changed = !p->set_up;
    for (uint32_t e = 0; e < p->n_ext; e++) {
        int t = p->ext_tensor[e];
        void *ptr = ctx->buffers[t];
        size_t nbytes = g->tensors[t].nbytes;
        if (!ptr) {
            fpay_backend_set_err(err, err_len, "tensor %d has no buffer", t);
            return FPAY_INTERNAL;
        }
        if (p->ext_is_input[e] && (char *)ptr + nbytes + XNN_EXTRA_BYTES > s->arena_hi) {
            if (s->stage_size < nbytes + XNN_EXTRA_BYTES) {
                free(s->stage);
                s->stage_size = 0;
                s->stage = aligned_alloc(64, (nbytes + XNN_EXTRA_BYTES + 63) & ~(size_t)63);
                if (!s->stage)
                    return FPAY_OUT_OF_MEMORY;
                s->stage_size = nbytes + XNN_EXTRA_BYTES;
                memset(s->stage, 0, s->stage_size);
            }
            memcpy(s->stage, ptr, nbytes);
            ptr = s->stage;
        }
        if (p->ext[e].id != e || p->ext[e].data != ptr)
            changed = true;
        p->ext[e].id = e;
        p->ext[e].data = ptr;
    }
    if (changed) {
        enum xnn_status xs = xnn_setup_runtime(p->runtime, p->n_ext, p->ext);
        if (xs != xnn_status_success) {
            fpay_backend_set_err(err, err_len, "xnn_setup_runtime failed (status %d)", (int)xs);
            return FPAY_INTERNAL;
        }
        p->set_up = true;
    }
    return FPAY_OK;
}

static fpay_status xnn_run_range(void *state, const fpay_exec_ctx *ctx, int first, int last,
                                 char *err, size_t err_len)
{
    xnn_state *s = state;
    if (!s) {
        fpay_backend_set_err(err, err_len, "not prepared");
        return FPAY_INTERNAL;
    }
    for (int i = 0; i < s->n_parts; i++) {
        xnn_part *p = &s->parts[i];
        if (p->first > last || p->last < first)
            continue;
        if (p->first != first || p->last != last) {
            /* The session runs maximal runs of our nodes: the partitions. */
            fpay_backend_set_err(err, err_len, "range %d..%d is not a prepared partition (%d..%d)", first,
                    last, p->first, p->last);
            return FPAY_INTERNAL;
        }
        fpay_status st = bind(s, p, ctx, err, err_len);
        if (st != FPAY_OK)
            return st;
        enum xnn_status xs = xnn_invoke_runtime(p->runtime);
        if (xs != xnn_status_success) {
            fpay_backend_set_err(err, err_len, "xnn_invoke_runtime failed (status %d)", (int)xs);
            return FPAY_INTERNAL;
        }
        return FPAY_OK;
    }
    fpay_backend_set_err(err, err_len, "nodes %d..%d were not prepared", first, last);
    return FPAY_INTERNAL;
}

static fpay_status xnn_run_node(void *state, const fpay_exec_ctx *ctx, int index, char *err,
                                size_t err_len)
{
    return xnn_run_range(state, ctx, index, index, err, err_len);
}

static const fpay_backend_iface xnn_iface = {
    .abi_version = FPAY_BACKEND_ABI_VERSION,
    .struct_size = sizeof(fpay_backend_iface),
    .name = "xnnpack",
    .version = "xnnpack-0.0~git20220216",
    .probe = xnn_probe,
    .supports_node = xnn_supports_node,
    .prepare = xnn_prepare,
    .run_node = xnn_run_node,
    .release = xnn_release,
    .run_range = xnn_run_range,
};

FPAY_BACKEND_EXPORT const fpay_backend_iface *fpay_backend_entry(void);
const fpay_backend_iface *fpay_backend_entry(void) { return &xnn_iface; }
