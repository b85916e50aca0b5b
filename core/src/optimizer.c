/*
 * optimizer.c - graph rewriting passes.
 *
 * Each pass matches a pattern in the imported graph and replaces it with a
 * node that computes the same float32 values bit for bit on the reference
 * kernels; why each rewrite is exact is said next to it. Passes rely on
 * shapes from fpay_graph_infer_shapes.
 */
#include "optimizer.h"

#include "cpu_backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Who writes each tensor, and how many node inputs read it. */
typedef struct usage {
    int *producer;
    int *readers;
} usage;

static bool usage_build(const fpay_graph *g, const bool *drop, usage *u)
{
    u->producer = malloc(((size_t)g->n_tensors + 1) * sizeof(int));
    u->readers = calloc((size_t)g->n_tensors + 1, sizeof(int));
    if (!u->producer || !u->readers) {
        free(u->producer);
        free(u->readers);
        return false;
    }
    for (int t = 0; t < g->n_tensors; t++)
        u->producer[t] = -1;
    for (int i = 0; i < g->n_nodes; i++) {
        if (drop && drop[i])
            continue;
        const fpay_node *n = &g->nodes[i];
        for (int k = 0; k < n->n_outputs; k++)
            u->producer[n->outputs[k]] = i;
        for (int k = 0; k < n->n_inputs; k++)
            if (n->inputs[k] >= 0)
                u->readers[n->inputs[k]]++;
        if (n->act_slope >= 0)
            u->readers[n->act_slope]++;
    }
    return true;
}

static void usage_free(usage *u)
{
    free(u->producer);
    free(u->readers);
}

static bool is_const(const fpay_graph *g, int t)
{
    return t >= 0 && (g->tensors[t].flags & FPAY_TENSOR_CONST);
}

/* A tensor an intermediate of a pattern may be: read exactly `readers`
 * times and not a graph output, so removing its producer loses nothing. */
static bool private_tensor(const fpay_graph *g, const usage *u, int t, int readers)
{
    return t >= 0 && u->readers[t] == readers && !fpay_graph_is_output(g, t);
}

/* The node writing t if it is `op` with no fused activation, else -1. */
static int made_by(const fpay_graph *g, const usage *u, int t, fpay_op op)
{
    if (t < 0)
        return -1;
    int p = u->producer[t];
    if (p < 0 || g->nodes[p].op != op || g->nodes[p].act != FPAY_ACT_NONE)
        return -1;
    return p;
}

/* A constant f32 vector of `channels` values that broadcasts along the last
 * axis only: shape [C], [1,C], [1,1,1,C]... */
static bool channel_vector(const fpay_graph *g, int t, int64_t channels)
{
    if (!is_const(g, t))
        return false;
    const fpay_tensor *c = &g->tensors[t];
    if (c->dtype != FPAY_DT_F32 || c->rank < 1 || c->dims[c->rank - 1] != channels)
        return false;
    for (int i = 0; i < c->rank - 1; i++)
        if (c->dims[i] != 1)
            return false;
    return true;
}

static int64_t last_dim(const fpay_graph *g, int t)
{
    const fpay_tensor *x = &g->tensors[t];
    return x->rank ? x->dims[x->rank - 1] : 1;
}

/* Ends a pass: drops the marked nodes. */
static int finish(fpay_graph *g, bool *drop, usage *u, int rewrites)
{
    fpay_graph_remove_nodes(g, drop);
    free(drop);
    usage_free(u);
    return rewrites;
}

static bool begin(const fpay_graph *g, bool **drop, usage *u)
{
    *drop = calloc((size_t)g->n_nodes + 1, sizeof(bool));
    if (!*drop)
        return false;
    if (!usage_build(g, NULL, u)) {
        free(*drop);
        return false;
    }
    return true;
}

static void make_prelu(fpay_node *n, int x, int slope)
{
    int out = n->outputs[0], src = n->source_index;
    fpay_node_init(n, FPAY_OP_PRELU);
    n->n_inputs = 2;
    n->inputs[0] = x;
    n->inputs[1] = slope;
    n->n_outputs = 1;
    n->outputs[0] = out;
    n->source_index = src;
}

/* MobileFaceNet: y = relu(x) + c * (x - |x|).
 * x >= 0: x - |x| = 0, so y = x + (+-0) = x.
 * x <  0: x - |x| = 2x exactly, y = 0 + c*(2x); doubling is exact, so
 *         c*(2x) == (2c)*x after rounding: a PReLU with slope 2c. */
static bool match_prelu_abs(fpay_graph *g, const usage *u, int add, int r_t,
                            int m_t, bool *drop)
{
    int relu = made_by(g, u, r_t, FPAY_OP_RELU);
    int mul = made_by(g, u, m_t, FPAY_OP_MUL);
    if (relu < 0 || mul < 0 || drop[relu] || drop[mul])
        return false;
    int x = g->nodes[relu].inputs[0];
    int64_t ch = last_dim(g, x);
    for (int order = 0; order < 2; order++) {
        int c_t = g->nodes[mul].inputs[order], s_t = g->nodes[mul].inputs[1 - order];
        if (!channel_vector(g, c_t, ch))
            continue;
        int sub = made_by(g, u, s_t, FPAY_OP_SUB);
        if (sub < 0 || g->nodes[sub].inputs[0] != x)
            continue;
        int abs_ = made_by(g, u, g->nodes[sub].inputs[1], FPAY_OP_ABS);
        if (abs_ < 0 || g->nodes[abs_].inputs[0] != x)
            continue;
        if (!private_tensor(g, u, r_t, 1) || !private_tensor(g, u, m_t, 1) ||
            !private_tensor(g, u, s_t, 1) ||
            !private_tensor(g, u, g->nodes[sub].inputs[1], 1))
            return false;
        /* Same-shaped tensors only: a broadcasting ADD/SUB would change
         * the output shape. */
        if (g->tensors[g->nodes[add].outputs[0]].rank != g->tensors[x].rank)
            return false;
        float *slope = malloc((size_t)ch * sizeof(float));
        if (!slope)
            return false;
        const float *c = g->tensors[c_t].data;
        for (int64_t i = 0; i < ch; i++)
            slope[i] = 2.0f * c[i];
        int64_t dims[1] = {ch};
        char name[64];
        snprintf(name, sizeof name, "prelu_slope_%d", add);
        int s = fpay_graph_add_const_f32(g, name, 1, dims, slope);
        free(slope);
        if (s < 0)
            return false;
        make_prelu(&g->nodes[add], x, s);
        drop[relu] = drop[mul] = drop[sub] = drop[abs_] = true;
        return true;
    }
    return false;
}

/* MTCNN: y = relu(x) + alpha * (-relu(-x)).
 * x >= 0: -relu(-x) = -0, y = x + (+-0) = x.
 * x <  0: -relu(-x) = x exactly, y = 0 + alpha*x: a PReLU with slope alpha. */
static bool match_prelu_neg(fpay_graph *g, const usage *u, int add, int r_t,
                            int m_t, bool *drop)
{
    int relu = made_by(g, u, r_t, FPAY_OP_RELU);
    int mul = made_by(g, u, m_t, FPAY_OP_MUL);
    if (relu < 0 || mul < 0 || drop[relu] || drop[mul])
        return false;
    int x = g->nodes[relu].inputs[0];
    int64_t ch = last_dim(g, x);
    for (int order = 0; order < 2; order++) {
        int a_t = g->nodes[mul].inputs[order], n2_t = g->nodes[mul].inputs[1 - order];
        if (!channel_vector(g, a_t, ch))
            continue;
        int neg2 = made_by(g, u, n2_t, FPAY_OP_NEG);
        if (neg2 < 0)
            continue;
        int r2_t = g->nodes[neg2].inputs[0];
        int relu2 = made_by(g, u, r2_t, FPAY_OP_RELU);
        if (relu2 < 0)
            continue;
        int n1_t = g->nodes[relu2].inputs[0];
        int neg1 = made_by(g, u, n1_t, FPAY_OP_NEG);
        if (neg1 < 0 || g->nodes[neg1].inputs[0] != x)
            continue;
        if (!private_tensor(g, u, r_t, 1) || !private_tensor(g, u, m_t, 1) ||
            !private_tensor(g, u, n2_t, 1) || !private_tensor(g, u, r2_t, 1) ||
            !private_tensor(g, u, n1_t, 1))
            return false;
        if (g->tensors[g->nodes[add].outputs[0]].rank != g->tensors[x].rank)
            return false;
        make_prelu(&g->nodes[add], x, a_t);
        drop[relu] = drop[mul] = drop[neg2] = drop[relu2] = drop[neg1] = true;
        return true;
    }
    return false;
}

int fpay_pass_fuse_prelu(fpay_graph *g)
{
    bool *drop;
    usage u;
    if (!begin(g, &drop, &u))
        return -1;
    int rewrites = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        fpay_node *n = &g->nodes[i];
        if (n->op != FPAY_OP_ADD || n->act != FPAY_ACT_NONE || drop[i])
            continue;
        int a = n->inputs[0], b = n->inputs[1];
        if (match_prelu_abs(g, &u, i, a, b, drop) ||
            match_prelu_abs(g, &u, i, b, a, drop) ||
            match_prelu_neg(g, &u, i, a, b, drop) ||
            match_prelu_neg(g, &u, i, b, a, drop))
            rewrites++;
    }
    return finish(g, drop, &u, rewrites);
}

static bool last_axis_keep(const fpay_graph *g, const fpay_node *n)
{
    const fpay_tensor *x = &g->tensors[n->inputs[0]];
    return n->attr.reduce.keep_dims && x->rank >= 1 &&
           n->attr.reduce.axes_mask == 1u << (x->rank - 1);
}

/* MTCNN: y = exp(x - max(x)) / sum(exp(x - max(x))) over the last axis.
 * The reference softmax kernel performs the same five steps in the same
 * order (max, subtract, exp, sum in index order, divide), so it is exact. */
int fpay_pass_fuse_softmax(fpay_graph *g)
{
    bool *drop;
    usage u;
    if (!begin(g, &drop, &u))
        return -1;
    int rewrites = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        fpay_node *div = &g->nodes[i];
        if (div->op != FPAY_OP_DIV || div->act != FPAY_ACT_NONE)
            continue;
        int e_t = div->inputs[0], s_t = div->inputs[1];
        int sum = made_by(g, &u, s_t, FPAY_OP_SUM);
        int exp_ = made_by(g, &u, e_t, FPAY_OP_EXP);
        if (sum < 0 || exp_ < 0 || g->nodes[sum].inputs[0] != e_t ||
            !last_axis_keep(g, &g->nodes[sum]))
            continue;
        int d_t = g->nodes[exp_].inputs[0];
        int sub = made_by(g, &u, d_t, FPAY_OP_SUB);
        if (sub < 0)
            continue;
        int x = g->nodes[sub].inputs[0], mx_t = g->nodes[sub].inputs[1];
        int rmax = made_by(g, &u, mx_t, FPAY_OP_REDUCE_MAX);
        if (rmax < 0 || g->nodes[rmax].inputs[0] != x ||
            !last_axis_keep(g, &g->nodes[rmax]))
            continue;
        if (!private_tensor(g, &u, e_t, 2) || !private_tensor(g, &u, s_t, 1) ||
            !private_tensor(g, &u, d_t, 1) || !private_tensor(g, &u, mx_t, 1))
            continue;
        const fpay_tensor *xt = &g->tensors[x], *yt = &g->tensors[div->outputs[0]];
        if (xt->rank != yt->rank || fpay_tensor_count(xt) != fpay_tensor_count(yt))
            continue;
        int out = div->outputs[0], src = div->source_index;
        fpay_node_init(div, FPAY_OP_SOFTMAX);
        div->n_inputs = 1;
        div->inputs[0] = x;
        div->n_outputs = 1;
        div->outputs[0] = out;
        div->source_index = src;
        drop[sum] = drop[exp_] = drop[sub] = drop[rmax] = true;
        rewrites++;
    }
    return finish(g, drop, &u, rewrites);
}

/* A node whose inputs are all constant is run once now on the reference
 * kernels; its output becomes a constant. Exact by construction: the same
 * kernel would compute the same value at run time. */
int fpay_pass_fold_constants(fpay_graph *g, char *err, size_t err_len)
{
    bool *drop = calloc((size_t)g->n_nodes + 1, sizeof(bool));
    void **buffers = calloc((size_t)g->n_tensors + 1, sizeof(void *));
    if (!drop || !buffers) {
        free(drop);
        free(buffers);
        return -1;
    }
    int rewrites = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        fpay_node *n = &g->nodes[i];
        bool all_const = n->n_outputs == 1 && !fpay_graph_is_output(g, n->outputs[0]);
        for (int k = 0; k < n->n_inputs && all_const; k++)
            all_const = n->inputs[k] < 0 || is_const(g, n->inputs[k]);
        if (n->act_slope >= 0 && !is_const(g, n->act_slope))
            all_const = false;
        if (!all_const)
            continue;
        fpay_tensor *out = &g->tensors[n->outputs[0]];
        void *data = fpay_graph_alloc(g, out->nbytes);
        if (!data) {
            rewrites = -1;
            break;
        }
        for (int k = 0; k < n->n_inputs; k++)
            if (n->inputs[k] >= 0)
                buffers[n->inputs[k]] = (void *)g->tensors[n->inputs[k]].data;
        if (n->act_slope >= 0)
            buffers[n->act_slope] = (void *)g->tensors[n->act_slope].data;
        buffers[n->outputs[0]] = data;
        fpay_exec_ctx ctx = {g, buffers, 1};
        if (fpay_cpu_run_node(&ctx, i, err, err_len) != FPAY_OK) {
            rewrites = -1;
            break;
        }
        out->data = data;
        out->flags |= FPAY_TENSOR_CONST;
        drop[i] = true;
        rewrites++;
    }
    free(buffers);
    if (rewrites >= 0)
        fpay_graph_remove_nodes(g, drop);
    free(drop);
    return rewrites;
}

static void replace_uses(fpay_graph *g, int from, int to)
{
    for (int i = 0; i < g->n_nodes; i++) {
        fpay_node *n = &g->nodes[i];
        for (int k = 0; k < n->n_inputs; k++)
            if (n->inputs[k] == from)
                n->inputs[k] = to;
        if (n->act_slope == from)
            n->act_slope = to;
    }
}

/* A STRIDED_SLICE that copies every element for ANY input shape (each axis:
 * stride 1, begin 0 or masked, end masked, nothing shrunk) is an identity:
 * its readers read its input instead. Only attribute-level identities are
 * removed, so the graph stays right when the batch size changes. */
int fpay_pass_remove_identity(fpay_graph *g)
{
    bool *drop;
    usage u;
    if (!begin(g, &drop, &u))
        return -1;
    int rewrites = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const fpay_node *n = &g->nodes[i];
        if (n->op != FPAY_OP_STRIDED_SLICE || fpay_graph_is_output(g, n->outputs[0]))
            continue;
        const fpay_slice_attr *a = &n->attr.slice;
        bool identity = a->shrink_axis_mask == 0 && a->ellipsis_mask == 0 &&
                        a->new_axis_mask == 0 &&
                        a->rank == g->tensors[n->inputs[0]].rank;
        for (int k = 0; k < a->rank && identity; k++)
            identity = a->strides[k] == 1 &&
                       (((a->begin_mask >> k) & 1) || a->begin[k] == 0) &&
                       ((a->end_mask >> k) & 1);
        if (!identity)
            continue;
        replace_uses(g, n->outputs[0], n->inputs[0]);
        drop[i] = true;
        rewrites++;
    }
    return finish(g, drop, &u, rewrites);
}

static bool has_epilogue(fpay_op op)
{
    return op == FPAY_OP_CONV_2D || op == FPAY_OP_DEPTHWISE_CONV_2D ||
           op == FPAY_OP_FULLY_CONNECTED;
}

/* The single node reading tensor t, if t is private to it; else -1. */
static int sole_reader(const fpay_graph *g, const usage *u, int t)
{
    if (!private_tensor(g, u, t, 1))
        return -1;
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i].n_inputs; k++)
            if (g->nodes[i].inputs[k] == t)
                return i;
    return -1;
}

static int64_t out_channels(const fpay_graph *g, const fpay_node *n)
{
    return last_dim(g, n->outputs[0]);
}

/* conv (no bias) -> ADD of a per-channel constant: the reference kernels sum
 * the taps, then add the bias, so sum + c is the same float either way. A
 * conv that already has a bias b is left alone: (sum + b) + c is not
 * sum + (b + c) in float. */
int fpay_pass_fuse_bias(fpay_graph *g)
{
    bool *drop;
    usage u;
    if (!begin(g, &drop, &u))
        return -1;
    int rewrites = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        fpay_node *n = &g->nodes[i];
        if (!has_epilogue(n->op) || n->act != FPAY_ACT_NONE ||
            (n->n_inputs > 2 && n->inputs[2] >= 0))
            continue;
        int add = sole_reader(g, &u, n->outputs[0]);
        if (add < 0 || g->nodes[add].op != FPAY_OP_ADD || drop[add])
            continue;
        fpay_node *a = &g->nodes[add];
        int other = a->inputs[0] == n->outputs[0] ? a->inputs[1] : a->inputs[0];
        if (!channel_vector(g, other, out_channels(g, n)) ||
            g->tensors[other].rank > g->tensors[n->outputs[0]].rank ||
            a->act == FPAY_ACT_PRELU)
            continue;
        n->inputs[2] = other;
        n->n_inputs = 3;
        n->act = a->act;
        n->act_alpha = a->act_alpha;
        n->outputs[0] = a->outputs[0];
        drop[add] = true;
        rewrites++;
    }
    return finish(g, drop, &u, rewrites);
}

static bool same_shape(const fpay_tensor *a, const fpay_tensor *b)
{
    if (a->rank != b->rank || a->dtype != b->dtype)
        return false;
    for (int i = 0; i < a->rank; i++)
        if (a->dims[i] != b->dims[i])
            return false;
    return true;
}

/* CONV_2D (no activation) -> ADD(conv, r) with r of the output's shape
 * (MobileFaceNet's residual connections): r becomes the conv's input
 * FPAY_CONV_INPUT_RESIDUAL and the ADD's activation the conv's. Exact: the
 * fused node computes taps, + bias, + r, then the activation, which are the
 * float operations of conv then ADD in the same order (ADD(r, conv) too:
 * float addition is commutative). The ADD's output tensor is kept, so
 * readers and graph outputs are unchanged; r must be ready before the conv
 * (its producer earlier in the order) since the conv now reads it. */
int fpay_pass_fuse_residual(fpay_graph *g)
{
    bool *drop;
    usage u;
    if (!begin(g, &drop, &u))
        return -1;
    int rewrites = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        fpay_node *n = &g->nodes[i];
        if (n->op != FPAY_OP_CONV_2D || n->act != FPAY_ACT_NONE || drop[i] ||
            n->n_inputs > FPAY_CONV_INPUT_RESIDUAL)
            continue;
        int add = sole_reader(g, &u, n->outputs[0]);
        if (add < 0 || g->nodes[add].op != FPAY_OP_ADD || drop[add] ||
            g->nodes[add].n_inputs != 2)
            continue;
        fpay_node *a = &g->nodes[add];
        int other = a->inputs[0] == n->outputs[0] ? a->inputs[1] : a->inputs[0];
        if (other < 0 || other == n->outputs[0] || u.producer[other] >= i ||
            !same_shape(&g->tensors[other], &g->tensors[n->outputs[0]]) ||
            !same_shape(&g->tensors[a->outputs[0]], &g->tensors[n->outputs[0]]))
            continue;
        if (n->n_inputs < 3)
            n->inputs[2] = -1;
        n->inputs[FPAY_CONV_INPUT_RESIDUAL] = other;
        n->n_inputs = FPAY_CONV_INPUT_RESIDUAL + 1;
        n->act = a->act;
        n->act_alpha = a->act_alpha;
        n->act_slope = a->act_slope;
        n->outputs[0] = a->outputs[0];
        drop[add] = true;
        rewrites++;
    }
    return finish(g, drop, &u, rewrites);
}

static bool is_arith(fpay_op op)
{
    return op == FPAY_OP_ADD || op == FPAY_OP_SUB || op == FPAY_OP_MUL ||
           op == FPAY_OP_DIV;
}

/* conv/dwconv/fc or ADD/SUB/MUL/DIV -> RELU, RELU6, LEAKY_RELU or PRELU
 * (per-channel constant slope): the activation is applied to the same float
 * in the epilogue, so the result is identical. */
int fpay_pass_fuse_activation(fpay_graph *g)
{
    bool *drop;
    usage u;
    if (!begin(g, &drop, &u))
        return -1;
    int rewrites = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        fpay_node *n = &g->nodes[i];
        if ((!has_epilogue(n->op) && !is_arith(n->op)) || n->act != FPAY_ACT_NONE ||
            drop[i])
            continue;
        int r = sole_reader(g, &u, n->outputs[0]);
        if (r < 0 || drop[r])
            continue;
        fpay_node *a = &g->nodes[r];
        switch (a->op) {
        case FPAY_OP_RELU: n->act = FPAY_ACT_RELU; break;
        case FPAY_OP_RELU6: n->act = FPAY_ACT_RELU6; break;
        case FPAY_OP_LEAKY_RELU:
            n->act = FPAY_ACT_LEAKY_RELU;
            n->act_alpha = a->attr.leaky.alpha;
            break;
        case FPAY_OP_PRELU:
            if (a->inputs[0] != n->outputs[0] ||
                !channel_vector(g, a->inputs[1], out_channels(g, n)))
                continue;
            n->act = FPAY_ACT_PRELU;
            n->act_slope = a->inputs[1];
            break;
        default:
            continue;
        }
        n->outputs[0] = a->outputs[0];
        drop[r] = true;
        rewrites++;
    }
    return finish(g, drop, &u, rewrites);
}

/* Nodes none of whose outputs is read by a live node or is a graph output. */
int fpay_pass_remove_dead(fpay_graph *g)
{
    bool *drop = calloc((size_t)g->n_nodes + 1, sizeof(bool));
    if (!drop)
        return -1;
    int rewrites = 0;
    bool changed = true;
    while (changed) {
        changed = false;
        usage u;
        if (!usage_build(g, drop, &u)) {
            free(drop);
            return -1;
        }
        for (int i = g->n_nodes - 1; i >= 0; i--) {
            if (drop[i])
                continue;
            const fpay_node *n = &g->nodes[i];
            bool live = false;
            for (int k = 0; k < n->n_outputs && !live; k++)
                live = u.readers[n->outputs[k]] > 0 ||
                       fpay_graph_is_output(g, n->outputs[k]);
            if (!live) {
                drop[i] = true;
                rewrites++;
                changed = true;
            }
        }
        usage_free(&u);
    }
    fpay_graph_remove_nodes(g, drop);
    free(drop);
    return rewrites;
}

fpay_status fpay_optimize(fpay_graph *g, fpay_opt_report *r, char *err,
                          size_t err_len)
{
    fpay_opt_report local;
    if (!r)
        r = &local;
    memset(r, 0, sizeof *r);
    char msg[160] = "";
    if ((r->constants_folded = fpay_pass_fold_constants(g, msg, sizeof msg)) < 0 ||
        (r->prelu_fused = fpay_pass_fuse_prelu(g)) < 0 ||
        (r->softmax_fused = fpay_pass_fuse_softmax(g)) < 0 ||
        (r->identities_removed = fpay_pass_remove_identity(g)) < 0 ||
        (r->bias_fused = fpay_pass_fuse_bias(g)) < 0 ||
        (r->residuals_fused = fpay_pass_fuse_residual(g)) < 0 ||
        (r->activations_fused = fpay_pass_fuse_activation(g)) < 0 ||
        (r->dead_removed = fpay_pass_remove_dead(g)) < 0) {
        fpay_set_err(err, err_len, "optimizer failed%s%s", msg[0] ? ": " : "", msg);
        return msg[0] ? FPAY_INTERNAL : FPAY_OUT_OF_MEMORY;
    }
    return fpay_graph_infer_shapes(g, err, err_len);
}
