/*
 * test_backend_ops.c - every backend the registry holds x every op x a set
 * of shapes (awkward ones included), against the reference kernels run by
 * the "cpu" backend; then every backend x every bundled model against the
 * oracle's golden outputs. After ggml's test-backend-ops: a new backend joins
 * by being found by the registry (ctest sets FACEPAY_BACKEND_PATH to the
 * build's plugin folder), with no new test code.
 *
 * A node a backend declines runs on the CPU fallback, so its result must
 * then equal the reference bit for bit; the table printed says, per case,
 * how many nodes the backend ran itself.
 *
 * Error measure: max |y - ref| / max |ref| over the output ("normalised max
 * error"), thresholds per op (op_case.tol):
 *   - 0 (exact) for ops whose IEEE result has one rounding and no
 *     reordering: abs/neg/relu/relu6/clamp, max pool, PReLU, leaky ReLU,
 *     add/sub/mul and their clamp epilogues, reshape, concat, reduce max;
 *     we still allow 1 ulp of max|ref| (1.2e-7) because a vectorised
 *     "x * (1/n)" or "x < 0 ? a * x" may be written as an FMA;
 *   - 1e-6 for div (a backend may compute a * (1/b): 2 roundings), average
 *     pool (sum order, then * 1/n instead of / n) and reduce sum (order);
 *   - 1e-5 for the GEMM-like ops (conv, depthwise, fully connected): the taps
 *     are summed in another order, blocked, with FMA (one rounding instead of
 *     two) and the bias first instead of last. With K taps of inputs in
 *     [-1, 1] the float32 error of a reordered sum is bounded by about
 *     K * eps * max|term|; relative to max|y| (~sqrt(K) typical) that is
 *     ~sqrt(K) * eps ~ 1.4e-6 for K = 576 (3x3x64), and 1e-5 leaves 7x
 *     headroom while a wrong tap, pad or slope gives errors of order 1e-1;
 *   - 1e-5 for exp-based ops (exp, softmax) and L2 normalisation: libraries
 *     use their own exp polynomial (1-2 ulp) and rsqrt refinements.
 *
 * The Vulkan backend runs every case twice: at its default fp32 precision
 * under the thresholds above, and with FACEPAY_VK_PRECISION=fp16 (fp16
 * storage of weights and activations, fp32 accumulation) under TOL_F16
 * below, printed as backend "vulkan-fp16".
 */
#include "golden_case.h"
#include "test_util.h"

#include "graph.h"
#include "model_impl.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOL_EXACT 1.2e-7
#define TOL_ROUND 1e-6
#define TOL_GEMM 1e-5
#define TOL_EXP 1e-5

/* fp16 mode (docs/vulkan.md). binary16 keeps 11 significant bits: rounding
 * to nearest puts a stored value within u = 2^-11 = 4.9e-4 of itself,
 * relatively. The backend rounds in three places: the host's f32 inputs,
 * the weights (at upload) and every tensor a shader stores; products of two
 * fp16 values are exact in fp32 and sums are fp32, as in the fp32 mode.
 *
 * To test the shaders rather than the rounding of random inputs, the fp16
 * run gets a copy of the case whose inputs and constants are already fp16
 * values (round_f16), and so does its reference: both then compute on the
 * same operands and, for one node, the only new error is the rounding of
 * the output, |y16 - y| <= u |y| <= u max|y|, i.e. a normalised error of at
 * most u on top of the fp32 threshold (subnormal outputs, below 2^-14, err
 * by at most 2^-25 in absolute terms: far less). A missing bias, a wrong
 * weight or tap is an O(1e-1) error, two hundred times this bound.
 *
 * In a chain of nodes each stored intermediate z_j errs by <= u |z_j| and
 * the rest of the chain carries that error to the output; f16_roundings()
 * says how many such roundings a case adds, each weighted by how much the
 * nodes after it can amplify a relative error of z_j in the normalised
 * output. Models: vk_fp16 (cosine). */
#define TOL_F16 0x1p-11

/* ------------------------------------------------------------ building */

typedef struct builder {
    fpay_graph *g;
    int inputs[4], n_inputs;
    float lo[4], hi[4];
    uint64_t seed;
    bool f16;                /* inputs and constants rounded to fp16 values */
} builder;

/* x rounded to the nearest binary16 value (ties to even), as a float: what
 * the Vulkan backend's fp16 mode stores. Written apart from the plugin's
 * bit-level conversion (scaling by the value's ulp), so one checks the
 * other. */
static float round_f16(float x)
{
    if (!isfinite(x))
        return x;
    double a = fabs((double)x);
    if (a >= 65520.0) /* halfway past 65504, the largest binary16 */
        return copysignf(INFINITY, x);
    int e;
    (void)frexp(a, &e); /* a in [2^(e-1), 2^e): 11 bits -> ulp 2^(e-11) */
    double ulp = ldexp(1.0, e - 11 < -24 ? -24 : e - 11); /* subnormals: 2^-24 */
    return (float)copysign(nearbyint(a / ulp) * ulp, (double)x);
}

static int act_tensor(builder *b)
{
    fpay_tensor t;
    memset(&t, 0, sizeof t);
    t.name = fpay_graph_strdup(b->g, "t", 1);
    t.dtype = FPAY_DT_F32;
    return fpay_graph_add_tensor(b->g, &t);
}

static int input_tensor(builder *b, int rank, const int64_t *dims, float lo, float hi)
{
    int t = act_tensor(b);
    b->g->tensors[t].rank = rank;
    memcpy(b->g->tensors[t].dims, dims, (size_t)rank * sizeof(int64_t));
    b->g->tensors[t].flags |= FPAY_TENSOR_INPUT;
    b->lo[b->n_inputs] = lo;
    b->hi[b->n_inputs] = hi;
    b->inputs[b->n_inputs++] = t;
    return t;
}

static int const_tensor(builder *b, int rank, const int64_t *dims, float lo, float hi)
{
    int64_t n = fpay_dims_count(rank, dims);
    float *v = malloc((size_t)n * sizeof(float));
    fpay_test_rng r;
    fpay_test_rng_seed(&r, ++b->seed * 7919);
    for (int64_t i = 0; i < n; i++) {
        v[i] = fpay_test_rng_uniform(&r, lo, hi);
        if (b->f16)
            v[i] = round_f16(v[i]);
    }
    int t = fpay_graph_add_const_f32(b->g, "c", rank, dims, v);
    free(v);
    return t;
}

static int add_node(builder *b, fpay_node *n)
{
    if (n->n_outputs == 0) {
        n->outputs[0] = act_tensor(b);
        n->n_outputs = 1;
    }
    cr_assert_geq(fpay_graph_add_node(b->g, n), 0);
    return n->outputs[0];
}

static int simple(builder *b, fpay_op op, int x, int y, fpay_act act, int slope)
{
    fpay_node n;
    fpay_node_init(&n, op);
    n.inputs[0] = x;
    n.inputs[1] = y;
    n.n_inputs = y >= 0 ? 2 : 1;
    n.act = act;
    n.act_slope = slope;
    return add_node(b, &n);
}

static void finish(builder *b, int out)
{
    fpay_graph *g = b->g;
    g->inputs = fpay_graph_alloc(g, (size_t)b->n_inputs * sizeof(int));
    memcpy(g->inputs, b->inputs, (size_t)b->n_inputs * sizeof(int));
    g->n_inputs = b->n_inputs;
    g->outputs = fpay_graph_alloc(g, sizeof(int));
    g->outputs[0] = out;
    g->n_outputs = 1;
    g->tensors[out].flags |= FPAY_TENSOR_OUTPUT;
}

/* ------------------------------------------------------------ op cases */

/* p[]: parameters, meaning per builder (see each). */
typedef struct op_case {
    const char *name;
    double tol;
    int (*build)(builder *b, const int *p);
    int p[16];
} op_case;

/* conv: op, N, H, W, Cin, Cout(or mult), KH, KW, stride, dilation, padding,
 * act, bias, residual (SAME stride 1 only: an input of the output's shape) */
static int build_conv(builder *b, const int *p)
{
    fpay_op op = (fpay_op)p[0];
    int64_t xd[4] = {p[1], p[2], p[3], p[4]};
    int x = input_tensor(b, 4, xd, -1, 1);
    int cout = op == FPAY_OP_DEPTHWISE_CONV_2D ? p[4] * p[5] : p[5];
    int64_t wd[4] = {cout, p[6], p[7], p[4]};
    if (op == FPAY_OP_DEPTHWISE_CONV_2D) {
        wd[0] = 1;
        wd[3] = cout;
    }
    fpay_node n;
    fpay_node_init(&n, op);
    n.inputs[0] = x;
    n.inputs[1] = const_tensor(b, 4, wd, -1, 1);
    n.n_inputs = 2;
    if (p[12]) {
        int64_t bd[1] = {cout};
        n.inputs[2] = const_tensor(b, 1, bd, -1, 1);
        n.n_inputs = 3;
    }
    n.attr.conv.stride_h = n.attr.conv.stride_w = p[8];
    n.attr.conv.dilation_h = n.attr.conv.dilation_w = p[9];
    n.attr.conv.padding = (fpay_padding)p[10];
    n.attr.conv.depth_multiplier = op == FPAY_OP_DEPTHWISE_CONV_2D ? p[5] : 0;
    if (p[13]) {
        int64_t rd[4] = {p[1], p[2], p[3], cout};
        if (n.n_inputs == 2)
            n.inputs[2] = -1;
        n.inputs[FPAY_CONV_INPUT_RESIDUAL] = input_tensor(b, 4, rd, -1, 1);
        n.n_inputs = FPAY_CONV_INPUT_RESIDUAL + 1;
    }
    n.act = (fpay_act)p[11];
    n.act_alpha = 0.15f;
    if (n.act == FPAY_ACT_PRELU) {
        int64_t sd[1] = {cout};
        n.act_slope = const_tensor(b, 1, sd, -0.6f, 0.6f);
    }
    return add_node(b, &n);
}

/* fc: N, H, W, C (rank 4 when H > 0, else rank 2 [N, C]), units, act, bias */
static int build_fc(builder *b, const int *p)
{
    int64_t xd[4] = {p[0], p[1], p[2], p[3]};
    int x = p[1] ? input_tensor(b, 4, xd, -1, 1)
                 : input_tensor(b, 2, (int64_t[]){p[0], p[3]}, -1, 1);
    int64_t k = (int64_t)(p[1] ? p[1] : 1) * (p[2] ? p[2] : 1) * p[3];
    fpay_node n;
    fpay_node_init(&n, FPAY_OP_FULLY_CONNECTED);
    n.inputs[0] = x;
    n.inputs[1] = const_tensor(b, 2, (int64_t[]){p[4], k}, -1, 1);
    n.n_inputs = 2;
    if (p[6]) {
        n.inputs[2] = const_tensor(b, 1, (int64_t[]){p[4]}, -1, 1);
        n.n_inputs = 3;
    }
    n.act = (fpay_act)p[5];
    if (n.act == FPAY_ACT_PRELU)
        n.act_slope = const_tensor(b, 1, (int64_t[]){p[4]}, -0.6f, 0.6f);
    return add_node(b, &n);
}

/* binary: op, rank a, a dims[4], rank b, b dims[4], act, b constant */
static int build_binary(builder *b, const int *p)
{
    fpay_op op = (fpay_op)p[0];
    int64_t ad[4] = {p[2], p[3], p[4], p[5]}, bd[4] = {p[7], p[8], p[9], p[10]};
    int x = input_tensor(b, p[1], ad, -1, 1);
    float lo = op == FPAY_OP_DIV ? 0.5f : -1, hi = op == FPAY_OP_DIV ? 2.0f : 1;
    int y = p[12] ? const_tensor(b, p[6], bd, lo, hi) : input_tensor(b, p[6], bd, lo, hi);
    fpay_act act = (fpay_act)p[11];
    int slope = -1;
    if (act == FPAY_ACT_PRELU) {
        int64_t c = p[1] >= p[6] ? ad[p[1] - 1] : bd[p[6] - 1];
        if (p[1] == p[6] && bd[p[6] - 1] > c)
            c = bd[p[6] - 1];
        slope = const_tensor(b, 1, &c, -0.6f, 0.6f);
    }
    fpay_node n;
    fpay_node_init(&n, op);
    n.inputs[0] = x;
    n.inputs[1] = y;
    n.n_inputs = 2;
    n.act = act;
    n.act_alpha = 0.1f;
    n.act_slope = slope;
    return add_node(b, &n);
}

/* unary: op, rank, dims[4], lo x10, hi x10 */
static int build_unary(builder *b, const int *p)
{
    int64_t d[4] = {p[2], p[3], p[4], p[5]};
    int x = input_tensor(b, p[1], d, (float)p[6] / 10, (float)p[7] / 10);
    fpay_node n;
    fpay_node_init(&n, (fpay_op)p[0]);
    n.inputs[0] = x;
    n.n_inputs = 1;
    if (n.op == FPAY_OP_LEAKY_RELU)
        n.attr.leaky.alpha = 0.2f;
    if (n.op == FPAY_OP_L2_NORMALIZE)
        n.attr.l2.epsilon = 1e-10f;
    if (n.op == FPAY_OP_PRELU) {
        n.inputs[1] = const_tensor(b, 1, &d[p[1] - 1], -0.6f, 0.6f);
        n.n_inputs = 2;
    }
    return add_node(b, &n);
}

/* pool: op, N, H, W, C, fh, fw, stride, padding, act */
static int build_pool(builder *b, const int *p)
{
    int x = input_tensor(b, 4, (int64_t[]){p[1], p[2], p[3], p[4]}, -1, 1);
    fpay_node n;
    fpay_node_init(&n, (fpay_op)p[0]);
    n.inputs[0] = x;
    n.n_inputs = 1;
    n.attr.pool.filter_h = p[5];
    n.attr.pool.filter_w = p[6];
    n.attr.pool.stride_h = n.attr.pool.stride_w = p[7];
    n.attr.pool.padding = (fpay_padding)p[8];
    n.act = (fpay_act)p[9];
    return add_node(b, &n);
}

/* reduce: op, N, H, W, C, axes mask, keep dims */
static int build_reduce(builder *b, const int *p)
{
    int x = input_tensor(b, 4, (int64_t[]){p[1], p[2], p[3], p[4]}, -1, 1);
    fpay_node n;
    fpay_node_init(&n, (fpay_op)p[0]);
    n.inputs[0] = x;
    n.n_inputs = 1;
    n.attr.reduce.axes_mask = (unsigned)p[5];
    n.attr.reduce.keep_dims = p[6];
    return add_node(b, &n);
}

/* reshape [N, H, W, C] -> [N, H*W*C]; concat of two [N, H, W, C] on axis */
static int build_reshape(builder *b, const int *p)
{
    int x = input_tensor(b, 4, (int64_t[]){p[0], p[1], p[2], p[3]}, -1, 1);
    fpay_node n;
    fpay_node_init(&n, FPAY_OP_RESHAPE);
    n.inputs[0] = x;
    n.n_inputs = 1;
    n.attr.reshape.rank = 2;
    n.attr.reshape.dims[0] = p[0];
    n.attr.reshape.dims[1] = -1;
    return add_node(b, &n);
}

static int build_concat(builder *b, const int *p)
{
    int x = input_tensor(b, 4, (int64_t[]){p[0], p[1], p[2], p[3]}, -1, 1);
    int y = input_tensor(b, 4, (int64_t[]){p[0], p[1], p[2], p[5]}, -1, 1);
    fpay_node n;
    fpay_node_init(&n, FPAY_OP_CONCATENATION);
    n.inputs[0] = x;
    n.inputs[1] = y;
    n.n_inputs = 2;
    n.attr.concat.axis = p[4];
    return add_node(b, &n);
}

/* Partitions: conv+PReLU -> L2 (often declined) -> conv -> ADD with the
 * first conv's output (a tensor crossing two partition edges) -> EXP ->
 * depthwise -> softmax. p[0] = batch. */
static int build_chain(builder *b, const int *p)
{
    int conv1[16] = {FPAY_OP_CONV_2D, p[0], 9, 7, 5, 8, 3, 3, 1, 1, FPAY_PAD_SAME,
                     FPAY_ACT_PRELU, 1, 0};
    int a = build_conv(b, conv1);
    int l2 = simple(b, FPAY_OP_L2_NORMALIZE, a, -1, FPAY_ACT_NONE, -1);
    b->g->nodes[b->g->n_nodes - 1].attr.l2.epsilon = 1e-10f;
    fpay_node n;
    fpay_node_init(&n, FPAY_OP_CONV_2D);
    n.inputs[0] = l2;
    n.inputs[1] = const_tensor(b, 4, (int64_t[]){8, 1, 1, 8}, -1, 1);
    n.inputs[2] = const_tensor(b, 1, (int64_t[]){8}, -1, 1);
    n.n_inputs = 3;
    n.attr.conv.stride_h = n.attr.conv.stride_w = 1;
    n.attr.conv.dilation_h = n.attr.conv.dilation_w = 1;
    n.attr.conv.padding = FPAY_PAD_VALID;
    int c2 = add_node(b, &n);
    int sum = simple(b, FPAY_OP_ADD, c2, a, FPAY_ACT_RELU6, -1);
    int e = simple(b, FPAY_OP_EXP, sum, -1, FPAY_ACT_NONE, -1);
    fpay_node_init(&n, FPAY_OP_DEPTHWISE_CONV_2D);
    n.inputs[0] = e;
    n.inputs[1] = const_tensor(b, 4, (int64_t[]){1, 3, 3, 8}, -1, 1);
    n.n_inputs = 2;
    n.attr.conv.stride_h = n.attr.conv.stride_w = 2;
    n.attr.conv.dilation_h = n.attr.conv.dilation_w = 1;
    n.attr.conv.padding = FPAY_PAD_SAME;
    n.attr.conv.depth_multiplier = 1;
    int d = add_node(b, &n);
    return simple(b, FPAY_OP_SOFTMAX, d, -1, FPAY_ACT_NONE, -1);
}

/* A conv node on tensor x with constant weights and bias: 1x1 CONV_2D
 * (cin -> cout) or 3x3 depthwise (cout ignored), SAME, stride 1; `res` a
 * residual input (-1: none). */
static int conv_on(builder *b, fpay_op op, int x, int cin, int cout, fpay_act act, int res)
{
    fpay_node n;
    fpay_node_init(&n, op);
    int co = op == FPAY_OP_DEPTHWISE_CONV_2D ? cin : cout;
    int64_t wd[4] = {co, 1, 1, cin};
    if (op == FPAY_OP_DEPTHWISE_CONV_2D) {
        wd[0] = 1;
        wd[1] = wd[2] = 3;
        wd[3] = co;
    }
    n.inputs[0] = x;
    n.inputs[1] = const_tensor(b, 4, wd, -1, 1);
    n.inputs[2] = const_tensor(b, 1, (int64_t[]){co}, -1, 1);
    n.n_inputs = 3;
    if (res >= 0) {
        n.inputs[FPAY_CONV_INPUT_RESIDUAL] = res;
        n.n_inputs = FPAY_CONV_INPUT_RESIDUAL + 1;
    }
    n.attr.conv.stride_h = n.attr.conv.stride_w = 1;
    n.attr.conv.dilation_h = n.attr.conv.dilation_w = 1;
    n.attr.conv.padding = FPAY_PAD_SAME;
    n.attr.conv.depth_multiplier = op == FPAY_OP_DEPTHWISE_CONV_2D ? 1 : 0;
    n.act = act;
    if (act == FPAY_ACT_PRELU)
        n.act_slope = const_tensor(b, 1, (int64_t[]){co}, -0.6f, 0.6f);
    return add_node(b, &n);
}

/* Residual blocks in one partition, so that a backend keeping tensors in
 * its own layout between nodes is checked there: expand (PReLU) -> dw
 * (RELU6) -> project + residual `a` (a read again after it) -> ADD(., a)
 * RELU -> max pool -> 1x1 + residual (its last reader: may accumulate in
 * place). p[0] = batch, p[1] = channels (odd: partial channel blocks). */
static int build_blocks(builder *b, const int *p)
{
    int c = p[1];
    int x = input_tensor(b, 4, (int64_t[]){p[0], 9, 7, 5}, -1, 1);
    int a = conv_on(b, FPAY_OP_CONV_2D, x, 5, c, FPAY_ACT_PRELU, -1);
    int d = conv_on(b, FPAY_OP_DEPTHWISE_CONV_2D, a, c, c, FPAY_ACT_RELU6, -1);
    int r = conv_on(b, FPAY_OP_CONV_2D, d, c, c, FPAY_ACT_NONE, a);
    int sum = simple(b, FPAY_OP_ADD, r, a, FPAY_ACT_RELU, -1);
    fpay_node n;
    fpay_node_init(&n, FPAY_OP_MAX_POOL_2D);
    n.inputs[0] = sum;
    n.n_inputs = 1;
    n.attr.pool.filter_h = n.attr.pool.filter_w = 2;
    n.attr.pool.stride_h = n.attr.pool.stride_w = 2;
    n.attr.pool.padding = FPAY_PAD_SAME;
    int pool = add_node(b, &n);
    return conv_on(b, FPAY_OP_CONV_2D, pool, c, c, FPAY_ACT_PRELU, pool);
}

enum { C2 = FPAY_OP_CONV_2D, DW = FPAY_OP_DEPTHWISE_CONV_2D, SAME = FPAY_PAD_SAME,
       VALID = FPAY_PAD_VALID, NONE = FPAY_ACT_NONE, RELU = FPAY_ACT_RELU,
       N1 = FPAY_ACT_RELU_N1_TO_1, R6 = FPAY_ACT_RELU6, PR = FPAY_ACT_PRELU,
       LK = FPAY_ACT_LEAKY_RELU };

static const op_case cases[] = {
    /* conv: op N H W Cin Cout KH KW stride dil pad act bias */
    {"conv 3x3 s1 SAME 8->16", TOL_GEMM, build_conv, {C2, 1, 10, 10, 8, 16, 3, 3, 1, 1, SAME, NONE, 1}},
    {"conv 3x3 s2 SAME odd 3->17 b2 prelu", TOL_GEMM, build_conv, {C2, 2, 13, 11, 3, 17, 3, 3, 2, 1, SAME, PR, 1}},
    {"conv 1x1 64->32 relu6", TOL_GEMM, build_conv, {C2, 1, 7, 7, 64, 32, 1, 1, 1, 1, SAME, R6, 1}},
    {"conv 1x1 no bias relu", TOL_GEMM, build_conv, {C2, 1, 5, 6, 5, 7, 1, 1, 1, 1, VALID, RELU, 0}},
    {"conv 5x3 VALID s1 n1to1", TOL_GEMM, build_conv, {C2, 1, 12, 9, 4, 6, 5, 3, 1, 1, VALID, N1, 1}},
    {"conv 3x3 dil2 SAME leaky", TOL_GEMM, build_conv, {C2, 1, 11, 11, 3, 5, 3, 3, 1, 2, SAME, LK, 1}},
    {"conv 4x4 s2 VALID 1x1 out", TOL_GEMM, build_conv, {C2, 3, 4, 4, 9, 11, 4, 4, 2, 1, VALID, NONE, 1}},
    {"conv 3x3 64->64 56x56", TOL_GEMM, build_conv, {C2, 1, 56, 56, 64, 64, 3, 3, 1, 1, SAME, PR, 1}},
    {"conv 3x3 + residual, prelu", TOL_GEMM, build_conv, {C2, 2, 6, 5, 8, 12, 3, 3, 1, 1, SAME, PR, 1, 1}},
    {"conv 1x1 + residual, relu6, no bias", TOL_GEMM, build_conv, {C2, 1, 7, 7, 16, 16, 1, 1, 1, 1, SAME, R6, 0, 1}},
    {"dwconv 3x3 s1 SAME prelu", TOL_GEMM, build_conv, {DW, 1, 14, 14, 32, 1, 3, 3, 1, 1, SAME, PR, 1}},
    {"dwconv 3x3 s2 SAME odd C=13", TOL_GEMM, build_conv, {DW, 2, 9, 7, 13, 1, 3, 3, 2, 1, SAME, NONE, 1}},
    {"dwconv 7x7 VALID GDC", TOL_GEMM, build_conv, {DW, 2, 7, 7, 24, 1, 7, 7, 1, 1, VALID, NONE, 1}},
    {"dwconv mult 2 no bias relu", TOL_GEMM, build_conv, {DW, 1, 8, 8, 3, 2, 3, 3, 1, 1, SAME, RELU, 0}},
    {"dwconv 5x5 dil2 SAME r6", TOL_GEMM, build_conv, {DW, 1, 12, 10, 6, 1, 5, 5, 1, 2, SAME, R6, 1}},
    /* fc: N H W C units act bias */
    {"fc 2-D 128->10", TOL_GEMM, build_fc, {3, 0, 0, 128, 10, NONE, 1}},
    {"fc 4-D [2,3,3,64]->576->7 relu", TOL_GEMM, build_fc, {2, 3, 3, 64, 7, RELU, 1}},
    {"fc 2-D 1->1 no bias prelu", TOL_GEMM, build_fc, {1, 0, 0, 1, 1, PR, 0}},
    {"fc 2-D 2048->1", TOL_GEMM, build_fc, {1, 0, 0, 2048, 1, NONE, 1}},
    /* binary: op ra a0..a3 rb b0..b3 act bconst */
    {"add same shape", TOL_EXACT, build_binary, {FPAY_OP_ADD, 4, 2, 5, 7, 9, 4, 2, 5, 7, 9, NONE, 0}},
    {"add relu6", TOL_EXACT, build_binary, {FPAY_OP_ADD, 4, 1, 6, 6, 16, 4, 1, 6, 6, 16, R6, 0}},
    {"add bcast channel const", TOL_EXACT, build_binary, {FPAY_OP_ADD, 4, 1, 4, 5, 3, 1, 3, 0, 0, 0, NONE, 1}},
    {"add prelu epilogue", TOL_EXACT, build_binary, {FPAY_OP_ADD, 4, 1, 3, 3, 10, 4, 1, 3, 3, 10, PR, 0}},
    {"add leaky epilogue", TOL_EXACT, build_binary, {FPAY_OP_ADD, 2, 3, 5, 0, 0, 2, 3, 5, 0, 0, LK, 0}},
    {"sub bcast [N,1,1,C]", TOL_EXACT, build_binary, {FPAY_OP_SUB, 4, 2, 3, 4, 5, 4, 2, 1, 1, 5, N1, 0}},
    {"mul const first", TOL_EXACT, build_binary, {FPAY_OP_MUL, 1, 7, 0, 0, 0, 4, 1, 2, 3, 7, NONE, 0}},
    {"mul scalar const", TOL_EXACT, build_binary, {FPAY_OP_MUL, 4, 1, 3, 3, 5, 0, 0, 0, 0, 0, RELU, 1}},
    {"div", TOL_ROUND, build_binary, {FPAY_OP_DIV, 4, 1, 3, 4, 5, 4, 1, 3, 4, 5, NONE, 0}},
    /* unary: op rank d0..d3 lo*10 hi*10 */
    {"abs", TOL_EXACT, build_unary, {FPAY_OP_ABS, 4, 2, 3, 5, 7, -10, 10}},
    {"neg", TOL_EXACT, build_unary, {FPAY_OP_NEG, 2, 3, 17, 0, 0, -10, 10}},
    {"relu", TOL_EXACT, build_unary, {FPAY_OP_RELU, 4, 1, 5, 5, 3, -10, 10}},
    {"relu6", TOL_EXACT, build_unary, {FPAY_OP_RELU6, 3, 2, 9, 4, 0, -80, 80}},
    {"leaky_relu", TOL_EXACT, build_unary, {FPAY_OP_LEAKY_RELU, 4, 1, 4, 4, 64, -10, 10}},
    {"prelu 4-D", TOL_EXACT, build_unary, {FPAY_OP_PRELU, 4, 2, 5, 5, 13, -10, 10}},
    {"prelu 2-D", TOL_EXACT, build_unary, {FPAY_OP_PRELU, 2, 4, 33, 0, 0, -10, 10}},
    {"exp", TOL_EXP, build_unary, {FPAY_OP_EXP, 2, 5, 11, 0, 0, -30, 30}},
    {"softmax 2 cols", TOL_EXP, build_unary, {FPAY_OP_SOFTMAX, 2, 6, 2, 0, 0, -50, 50}},
    {"softmax 4-D 13 cols", TOL_EXP, build_unary, {FPAY_OP_SOFTMAX, 4, 1, 3, 4, 13, -50, 50}},
    {"l2_normalize", TOL_EXP, build_unary, {FPAY_OP_L2_NORMALIZE, 2, 3, 192, 0, 0, -10, 10}},
    /* pool: op N H W C fh fw stride pad act */
    {"maxpool 2x2 s2 SAME odd", TOL_EXACT, build_pool, {FPAY_OP_MAX_POOL_2D, 1, 7, 9, 10, 2, 2, 2, SAME, NONE}},
    {"maxpool 3x3 s2 SAME", TOL_EXACT, build_pool, {FPAY_OP_MAX_POOL_2D, 2, 12, 12, 4, 3, 3, 2, SAME, NONE}},
    {"maxpool 3x3 s2 VALID relu", TOL_EXACT, build_pool, {FPAY_OP_MAX_POOL_2D, 1, 11, 11, 5, 3, 3, 2, VALID, RELU}},
    {"avgpool 3x3 s2 SAME (padded)", TOL_ROUND, build_pool, {FPAY_OP_AVERAGE_POOL_2D, 1, 9, 9, 6, 3, 3, 2, SAME, NONE}},
    {"avgpool 2x2 s2 VALID", TOL_ROUND, build_pool, {FPAY_OP_AVERAGE_POOL_2D, 2, 8, 6, 3, 2, 2, 2, VALID, NONE}},
    {"avgpool 7x7 VALID global", TOL_ROUND, build_pool, {FPAY_OP_AVERAGE_POOL_2D, 1, 7, 7, 16, 7, 7, 1, VALID, R6}},
    /* reduce: op N H W C mask keep */
    {"reduce_max last keep", TOL_EXACT, build_reduce, {FPAY_OP_REDUCE_MAX, 1, 4, 5, 2, 8, 1}},
    {"sum last keep", TOL_ROUND, build_reduce, {FPAY_OP_SUM, 1, 4, 5, 7, 8, 1}},
    {"reshape [N,1,1,C]->[N,C]", TOL_EXACT, build_reshape, {2, 1, 1, 192}},
    {"concat channels", TOL_EXACT, build_concat, {1, 3, 3, 4, 3, 5}},
    {"chain: partitions and edges b1", TOL_GEMM, build_chain, {1}},
    {"chain: partitions and edges b3", TOL_GEMM, build_chain, {3}},
    {"residual blocks, one partition b1 C=20", TOL_GEMM, build_blocks, {1, 20}},
    {"residual blocks, one partition b2 C=37", TOL_GEMM, build_blocks, {2, 37}},
};

/* ------------------------------------------------------------ running */

typedef struct outcome {
    int nodes, on_backend;
    double err;
} outcome;

static fpay_model *make_model(const op_case *c, builder *b, bool f16)
{
    fpay_model *m = calloc(1, sizeof *m);
    cr_assert_not_null(m);
    fpay_graph_init(&m->graph);
    memset(b, 0, sizeof *b);
    b->g = &m->graph;
    b->f16 = f16;
    finish(b, c->build(b, c->p));
    return m;
}

/* FACEPAY_VK_PRECISION for the sessions created next (the Vulkan plugin
 * reads it at every prepare: creation and batch changes, so it stays set
 * for the session's life). Set explicitly for every run, so that a value in
 * the caller's environment does not change what the fp32 checks test. */
static void vk_precision(const char *p) { setenv("FACEPAY_VK_PRECISION", p, 1); }

/* Runs the model on `backend` with `threads`; copies output 0 into *out. */
static void run_on(const fpay_model *m, const builder *b, const char *backend, int threads,
                   float **out, size_t *count, outcome *o)
{
    fpay_session_options opt;
    fpay_session_options_init(&opt);
    opt.backend = backend;
    opt.threads = threads;
    fpay_session *s = NULL;
    char err[256];
    cr_assert_eq(fpay_session_create(m, &opt, &s, err, sizeof err), FPAY_OK, "%s: %s",
                 backend, err);
    for (int k = 0; k < b->n_inputs; k++) {
        fpay_tensor_info in;
        fpay_session_input_info(s, k, &in);
        float *x = malloc(in.count * sizeof(float));
        fpay_test_rng r;
        fpay_test_rng_seed(&r, 1234 + (uint64_t)k);
        for (size_t i = 0; i < in.count; i++) {
            x[i] = fpay_test_rng_uniform(&r, b->lo[k], b->hi[k]);
            if (b->f16)
                x[i] = round_f16(x[i]);
        }
        cr_assert_eq(fpay_session_set_input(s, k, x, in.count), FPAY_OK);
        free(x);
    }
    cr_assert_eq(fpay_session_run(s), FPAY_OK, "%s: %s", backend, fpay_session_errmsg(s));
    const float *y;
    cr_assert_eq(fpay_session_output(s, 0, &y, count), FPAY_OK);
    *out = malloc(*count * sizeof(float));
    memcpy(*out, y, *count * sizeof(float));
    if (o) {
        o->nodes = o->on_backend = 0;
        for (int i = 0; fpay_session_node_backend(s, i); i++, o->nodes++)
            o->on_backend += strcmp(fpay_session_node_backend(s, i), backend) == 0;
    }
    fpay_session_free(s);
}

/* Largest |got - want| (INFINITY if any is NaN). */
static double max_abs_err(const float *got, const float *want, size_t n)
{
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - want[i]);
        if (!(e <= worst))
            worst = isnan(e) ? INFINITY : e;
    }
    return worst;
}

/* Smallest cosine between matching rows of dim values (NaN counts as -inf). */
static double min_row_cosine(const float *got, const float *want, size_t n, size_t dim)
{
    double min_cos = 1;
    for (size_t row = 0; row < n / dim; row++) {
        double dot = 0, na = 0, nb = 0;
        for (size_t c = 0; c < dim; c++) {
            double a = got[row * dim + c], b = want[row * dim + c];
            dot += a * b;
            na += a * a;
            nb += b * b;
        }
        double cosine = dot / sqrt(na * nb);
        if (!(cosine >= min_cos))
            min_cos = isnan(cosine) ? -INFINITY : cosine;
    }
    return min_cos;
}

static double norm_max_err(const float *y, const float *ref, size_t n)
{
    double worst = 0, scale = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)y[i] - ref[i]);
        if (!(e <= worst))
            worst = isnan(e) ? INFINITY : e;
        if (fabs(ref[i]) > scale)
            scale = fabs(ref[i]);
    }
    return worst / (scale > 0 ? scale : 1);
}

/* How many TOL_F16 a case may lose in fp16 mode (see TOL_F16).
 *   - one node: 1, the rounding of its output (a strict bound);
 *   - build_blocks: 5 stored roundings on the path (a, d, r, sum, out; the
 *     max pool only selects stored values). Each is <= u relative to the
 *     tensor it rounds, and a layer of random weights in [-1, 1] carries a
 *     relative error through at about unit gain (|W e| / |W z| ~ |e| / |z|):
 *     5 u. A first-order estimate, not a worst case (that would weigh each
 *     rounding by |W| |z| / max|y|, up to ~sqrt(K) more); measured 1.2 u;
 *   - build_chain: the fp16 edges around two CPU nodes plus two exponentials
 *     (EXP on the CPU, then softmax) that turn an absolute error of their
 *     input into a relative error of their output. The input of EXP is
 *     relu6-bounded (<= 6), so its rounding alone is worth up to 6 u there,
 *     L2's upload 1-2 u, the convolutions' outputs 1 u each: 16 u. Also
 *     first-order and not a strict worst case (softmax of logits in the
 *     hundreds saturates); measured up to 6.1 u (batch 3). What the case is
 *     for (tensors crossing partition edges in the right format, at the
 *     right offsets) fails by O(1) when wrong. */
static double f16_roundings(const op_case *c)
{
    if (c->build == build_chain)
        return 16;
    if (c->build == build_blocks)
        return 5;
    return 1;
}

/* The Vulkan backend in fp16 mode on case c, against the reference on the
 * same fp16-valued operands (TOL_F16). Returns 1 on failure. */
static int check_vk_fp16(const op_case *c, int threads)
{
    builder b;
    fpay_model *m = make_model(c, &b, true);
    float *ref, *y;
    size_t nref, ny;
    outcome o;
    run_on(m, &b, "cpu", 1, &ref, &nref, NULL);
    vk_precision("fp16");
    run_on(m, &b, "vulkan", threads, &y, &ny, &o);
    vk_precision("fp32");
    cr_assert_eq(ny, nref);
    o.err = norm_max_err(y, ref, ny);
    double tol = o.on_backend ? c->tol + f16_roundings(c) * TOL_F16 : 0;
    int ok = o.err <= tol;
    printf("backend-ops %-8s t%d %-38s nodes %d/%d on backend  err %.2e  tol %.1e  %s\n",
           "vulkan-fp16", threads, c->name, o.on_backend, o.nodes, o.err, tol,
           ok ? "OK" : "FAIL");
    cr_expect(ok, "vulkan fp16: %s: normalised max error %.3e > %.1e", c->name, o.err, tol);
    free(y);
    free(ref);
    fpay_model_free(m);
    return !ok;
}

/* Every backend x every case, at 1 and 2 threads; prints one line each. */
static void check_ops(int threads)
{
    int n_backends = fpay_backend_count();
    int fails = 0;
    printf("# backend-ops, %d backend(s), %d thread(s)\n", n_backends, threads);
    vk_precision("fp32");
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        builder b;
        fpay_model *m = make_model(&cases[c], &b, false);
        float *ref;
        size_t nref;
        run_on(m, &b, "cpu", 1, &ref, &nref, NULL);
        for (int k = 0; k < n_backends; k++) {
            const char *name = fpay_backend_get(k)->name;
            if (strcmp(name, "cpu") == 0)
                continue;
            float *y;
            size_t ny;
            outcome o;
            run_on(m, &b, name, threads, &y, &ny, &o);
            cr_assert_eq(ny, nref);
            o.err = norm_max_err(y, ref, ny);
            /* Declined nodes ran on the reference: then exact. */
            double tol = o.on_backend ? cases[c].tol : 0;
            int ok = o.err <= tol;
            fails += !ok;
            printf("backend-ops %-8s t%d %-38s nodes %d/%d on backend  err %.2e  tol %.0e  %s\n",
                   name, threads, cases[c].name, o.on_backend, o.nodes, o.err, tol,
                   ok ? "OK" : "FAIL");
            cr_expect(ok, "%s: %s: normalised max error %.3e > %.0e", name, cases[c].name,
                      o.err, tol);
            free(y);
        }
        free(ref);
        fpay_model_free(m);
        if (fpay_backend_find("vulkan"))
            fails += check_vk_fp16(&cases[c], threads);
    }
    printf("# backend-ops: %d failure(s)\n", fails);
}

/* Where the plugin named `name` went: registered (NULL), or the reason the
 * loader refused it (never found: "not found by the loader"). */
static const char *plugin_refusal(const char *name)
{
    if (fpay_backend_find(name))
        return NULL;
    char file[96];
    snprintf(file, sizeof file, "libfacepay-backend-%s.so", name);
    for (int i = 0; i < fpay_backend_rejected_count(); i++) {
        const char *path = NULL, *reason = NULL;
        cr_assert_eq(fpay_backend_rejected(i, &path, &reason), FPAY_OK);
        if (strstr(path, file))
            return reason;
    }
    return "not found by the loader";
}

/* The suites above and below compare every registered backend with the
 * reference, so a plugin that silently failed to load would pass them
 * untested. ctest lists the plugins this build made (FPAY_TEST_PLUGINS):
 * each must be registered. The one exception is Vulkan refused by its
 * probe for want of a driver or device (a machine without one); its tests
 * then say they are skipped. */
Test(backend_ops, every_plugin_the_build_made_is_registered)
{
    const char *list = getenv("FPAY_TEST_PLUGINS");
    cr_assert_not_null(list, "ctest sets FPAY_TEST_PLUGINS (the plugins this build made)");
    cr_assert_not_null(fpay_backend_find("cpu"), "the built-in cpu backend is registered");
    char buf[256];
    snprintf(buf, sizeof buf, "%s", list);
    int expected = 1, registered = 1;
    for (char *save = NULL, *name = strtok_r(buf, ",", &save); name;
         name = strtok_r(NULL, ",", &save)) {
        expected++;
        const char *why = plugin_refusal(name);
        printf("plugin %-8s %s%s\n", name, why ? "refused: " : "registered", why ? why : "");
        if (!why) {
            registered++;
            continue;
        }
        bool no_device = strcmp(name, "vulkan") == 0 && strstr(why, "probe failed") &&
                         (strstr(why, "no Vulkan") || strstr(why, "INCOMPATIBLE_DRIVER"));
        cr_expect(no_device, "plugin %s was built but not registered: %s", name, why);
    }
    cr_expect_geq(fpay_backend_count(), registered, "registry holds %d, %d registered above",
                  fpay_backend_count(), registered);
    printf("plugins: %d built (with cpu), %d registered\n", expected, registered);
}

/* Vulkan's own cases run only where a Vulkan device is usable; elsewhere
 * they are reported as skipped, not passed. */
static void need_vulkan(void)
{
    if (!fpay_backend_find("vulkan"))
        cr_skip_test("no usable Vulkan device here: %s", plugin_refusal("vulkan"));
}

Test(backend_ops, every_backend_every_op_1_thread) { check_ops(1); }

/* An invalid FACEPAY_VK_PRECISION is an error at session creation, with
 * the variable's name in the message, not a silent fp32 (or fp16) run. */
Test(backend_ops, vulkan_precision_invalid)
{
    need_vulkan();
    builder b;
    fpay_model *m = make_model(&cases[0], &b, false);
    fpay_session_options opt;
    fpay_session_options_init(&opt);
    opt.backend = "vulkan";
    fpay_session *s = NULL;
    char err[256] = "";
    vk_precision("fp8");
    fpay_status st = fpay_session_create(m, &opt, &s, err, sizeof err);
    vk_precision("fp32");
    cr_expect_eq(st, FPAY_INVALID_ARGUMENT, "%s", err);
    cr_expect_null(s);
    cr_expect(strstr(err, "FACEPAY_VK_PRECISION=fp8") != NULL, "%s", err);
    fpay_session_free(s);
    fpay_model_free(m);
}
Test(backend_ops, every_backend_every_op_2_threads) { check_ops(2); }

/* ------------------------------------------------------------ models */

/* Tolerances as tests/test_golden.c: max |err| <= 1e-4 x max_abs per output,
 * and cosine >= 0.99999 per embedding row (MobileFaceNet). */
static void check_model(const char *case_name, int embed_dim, int threads)
{
    vk_precision("fp32");
    cJSON *j = fpay_golden_load(case_name);
    char err[256];
    fpay_model *m = fpay_golden_model(j, 0);
    for (int bi = 0; bi < fpay_backend_count(); bi++) {
        const char *backend = fpay_backend_get(bi)->name;
        fpay_session_options o;
        fpay_session_options_init(&o);
        o.backend = backend;
        o.threads = threads;
        fpay_session *s = NULL;
        cr_assert_eq(fpay_session_create(m, &o, &s, err, sizeof err), FPAY_OK, "%s", err);
        fpay_golden_feed(s, j);
        cr_assert_eq(fpay_session_run(s), FPAY_OK, "%s: %s", backend, fpay_session_errmsg(s));
        int nodes = 0, mine = 0;
        for (; fpay_session_node_backend(s, nodes); nodes++)
            mine += strcmp(fpay_session_node_backend(s, nodes), backend) == 0;
        int k = 0;
        for (cJSON *oj = cJSON_GetObjectItem(j, "outputs")->child; oj; oj = oj->next, k++) {
            size_t count = 0;
            float *want = fpay_golden_expected(oj, &count);
            const float *got;
            size_t n;
            cr_assert_eq(fpay_session_output(s, k, &got, &n), FPAY_OK);
            cr_assert_eq(n, count);
            double max_abs = cJSON_GetObjectItem(oj, "max_abs")->valuedouble;
            double worst = max_abs_err(got, want, n);
            double min_cos = embed_dim > 0 ? min_row_cosine(got, want, n, (size_t)embed_dim) : 1;
            int ok = worst <= 1e-4 * max_abs && (embed_dim == 0 || min_cos >= 0.99999);
            char cos_txt[48] = "";
            if (embed_dim)
                snprintf(cos_txt, sizeof cos_txt, "  min cosine %.9f", min_cos);
            printf("backend-model %-8s t%d %-20s out %d  nodes %d/%d on backend  "
                   "max|err| %.2e = %.2e x max_abs%s  %s\n",
                   backend, threads, case_name, k, mine, nodes, worst, worst / max_abs,
                   cos_txt, ok ? "OK" : "FAIL");
            cr_expect_leq(worst, 1e-4 * max_abs, "%s %s output %d: max |err| %g > 1e-4 x %g",
                          backend, case_name, k, worst, max_abs);
            if (embed_dim)
                cr_expect_geq(min_cos, 0.99999, "%s %s: cosine %.9f", backend, case_name,
                              min_cos);
            free(want);
        }
        fpay_session_free(s);
    }
    fpay_model_free(m);
    cJSON_Delete(j);
}

Test(backend_models, mfn_random) { check_model("mfn_random", 192, 1); }
Test(backend_models, mfn_random_2_threads) { check_model("mfn_random", 192, 2); }
Test(backend_models, mfn_face_amy1) { check_model("mfn_face_amy1", 192, 1); }
Test(backend_models, mfn_face_tomcruise) { check_model("mfn_face_tomcruise", 192, 1); }
Test(backend_models, pnet_tomcruise_s0) { check_model("pnet_tomcruise_s0", 0, 1); }
Test(backend_models, rnet_tomcruise) { check_model("rnet_tomcruise", 0, 1); }
Test(backend_models, onet_tomcruise) { check_model("onet_tomcruise", 0, 2); }
Test(backend_models, antispoof_obama, .timeout = 900) { check_model("antispoof_obama", 0, 2); }

/* MobileFaceNet on Vulkan in fp16 mode against the golden (fp32 oracle)
 * embeddings of real faces and of random input, from the raw f32 inputs:
 * every rounding counts here (input, weights, each stored activation).
 * Bound: each rounding adds an independent relative error of rms about
 * u / sqrt(3) (u = 2^-11), and random-signed errors add in quadrature. The
 * longest path stores ~52 activations and reads ~52 rounded weight tensors
 * plus the input: L ~ 105, so |err| / |y| ~ u sqrt(L / 3) ~ 2.9e-3 and
 * 1 - cosine = |err|^2 / (2 |y|^2) ~ 4e-6 (measured 4.8e-6, 3.1e-3 on
 * lavapipe). The test asks cosine >= 0.9999, i.e. |err| / |y| <= 1.4e-2:
 * 4.6x headroom on the estimate, while a wrong weight tensor or a missing
 * (BN-folded) bias moves the embedding by far more. Unless the device
 * lacks 16-bit storage (then fp32: more accurate, passes too). */
#define COS_F16 0.9999

static void check_vk_fp16_model(const char *case_name)
{
    cJSON *j = fpay_golden_load(case_name);
    char err[256];
    fpay_model *m = fpay_golden_model(j, 0);
    fpay_session_options o;
    fpay_session_options_init(&o);
    o.backend = "vulkan";
    fpay_session *s = NULL;
    /* Read at every prepare: session creation and the batch change that
     * feeding the golden input may make. */
    vk_precision("fp16");
    cr_assert_eq(fpay_session_create(m, &o, &s, err, sizeof err), FPAY_OK, "%s", err);
    fpay_golden_feed(s, j);
    cr_assert_eq(fpay_session_run(s), FPAY_OK, "%s", fpay_session_errmsg(s));
    cJSON *oj = cJSON_GetObjectItem(j, "outputs")->child;
    size_t count = 0, n = 0;
    float *want = fpay_golden_expected(oj, &count);
    const float *got;
    cr_assert_eq(fpay_session_output(s, 0, &got, &n), FPAY_OK);
    cr_assert_eq(n, count);
    double max_abs = cJSON_GetObjectItem(oj, "max_abs")->valuedouble;
    double worst = max_abs_err(got, want, n), min_cos = min_row_cosine(got, want, n, 192);
    printf("backend-model vulkan-fp16 %-20s max|err| %.2e = %.2e x max_abs  min cosine "
           "%.9f (bound %.4f)  %s\n", case_name, worst, worst / max_abs, min_cos, COS_F16,
           min_cos >= COS_F16 ? "OK" : "FAIL");
    cr_expect_geq(min_cos, COS_F16, "vulkan fp16 %s: cosine %.9f", case_name, min_cos);
    free(want);
    fpay_session_free(s);
    vk_precision("fp32");
    fpay_model_free(m);
    cJSON_Delete(j);
}

Test(backend_models, vulkan_fp16_mobilefacenet)
{
    need_vulkan();
    check_vk_fp16_model("mfn_face_amy1");
    check_vk_fp16_model("mfn_face_tomcruise");
    check_vk_fp16_model("mfn_random");
}

/* Batch changes re-prepare the backend: batch 3 then 1 must give row 0 of
 * batch 3 within the GEMM tolerance on every backend. */
Test(backend_models, reshape_reprepares_every_backend)
{
    char err[256];
    fpay_model *m = NULL;
    cr_assert_eq(fpay_model_load_file(fpay_test_model_path("MobileFaceNet.tflite"), 0, &m,
                                      err, sizeof err), FPAY_OK, "%s", err);
    const size_t row = 112 * 112 * 3;
    float *x = malloc(3 * row * sizeof(float));
    fpay_test_rng r;
    fpay_test_rng_seed(&r, 99);
    for (size_t i = 0; i < 3 * row; i++)
        x[i] = fpay_test_rng_uniform(&r, -1, 1);
    vk_precision("fp32");
    for (int bi = 0; bi < fpay_backend_count(); bi++) {
        fpay_session_options o;
        fpay_session_options_init(&o);
        o.backend = fpay_backend_get(bi)->name;
        fpay_session *s = NULL;
        cr_assert_eq(fpay_session_create(m, &o, &s, err, sizeof err), FPAY_OK, "%s", err);
        float first[192];
        for (int pass = 0; pass < 2; pass++) {
            int batch = pass ? 1 : 3;
            cr_assert_eq(fpay_session_set_batch(s, batch), FPAY_OK, "%s", fpay_session_errmsg(s));
            cr_assert_eq(fpay_session_set_input(s, 0, x, (size_t)batch * row), FPAY_OK);
            cr_assert_eq(fpay_session_run(s), FPAY_OK, "%s", fpay_session_errmsg(s));
            const float *y;
            size_t n;
            cr_assert_eq(fpay_session_output(s, 0, &y, &n), FPAY_OK);
            cr_assert_eq(n, (size_t)batch * 192);
            if (!pass)
                memcpy(first, y, sizeof first);
            else
                cr_expect_leq(norm_max_err(y, first, 192), TOL_GEMM, "%s", o.backend);
        }
        fpay_session_free(s);
    }
    free(x);
    fpay_model_free(m);
}
