/*
 * test_optimizer.c - each optimizer pass on a small graph built here: the
 * graph before and after (node ops and counts), and the same numbers bit for
 * bit on random inputs (every rewrite claims exactness on the reference
 * kernels, so the tolerance is zero). Negative cases check that a pattern
 * whose intermediate is read elsewhere is left alone. The real models check
 * the node counts the issue names (MobileFaceNet 230 -> 98 after PReLU
 * fusion).
 */
#include "test_util.h"

#include "model_impl.h"
#include "optimizer.h"

#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ building */

static int tensor_(fpay_graph *g, const char *name, int rank, const int64_t *dims,
                   unsigned flags)
{
    fpay_tensor t;
    memset(&t, 0, sizeof t);
    t.name = fpay_graph_strdup(g, name, strlen(name));
    t.dtype = FPAY_DT_F32;
    t.rank = rank;
    for (int i = 0; i < rank; i++)
        t.dims[i] = dims[i];
    t.flags = flags;
    return fpay_graph_add_tensor(g, &t);
}

static int act_(fpay_graph *g, const char *name) { return tensor_(g, name, 0, NULL, 0); }

static int const_(fpay_graph *g, const char *name, int rank, const int64_t *dims,
                  uint64_t seed, float lo, float hi)
{
    int64_t n = fpay_dims_count(rank, dims);
    float *v = malloc((size_t)n * sizeof(float));
    fpay_test_rng r;
    fpay_test_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++)
        v[i] = fpay_test_rng_uniform(&r, lo, hi);
    int t = fpay_graph_add_const_f32(g, name, rank, dims, v);
    free(v);
    return t;
}

static void io_(fpay_graph *g, int in, int out)
{
    g->inputs = fpay_graph_alloc(g, sizeof(int));
    g->outputs = fpay_graph_alloc(g, 2 * sizeof(int));
    g->inputs[0] = in;
    g->n_inputs = 1;
    g->tensors[in].flags |= FPAY_TENSOR_INPUT;
    g->outputs[0] = out;
    g->n_outputs = 1;
    g->tensors[out].flags |= FPAY_TENSOR_OUTPUT;
}

static int node_(fpay_graph *g, fpay_op op, int a, int b, int out)
{
    fpay_node n;
    fpay_node_init(&n, op);
    n.inputs[0] = a;
    n.inputs[1] = b;
    n.n_inputs = b >= 0 ? 2 : 1;
    n.outputs[0] = out;
    n.n_outputs = 1;
    return fpay_graph_add_node(g, &n);
}

static int conv_(fpay_graph *g, fpay_op op, int x, int w, int bias, int out)
{
    fpay_node n;
    fpay_node_init(&n, op);
    n.inputs[0] = x;
    n.inputs[1] = w;
    n.inputs[2] = bias;
    n.n_inputs = 3;
    n.outputs[0] = out;
    n.n_outputs = 1;
    n.attr.conv.padding = FPAY_PAD_SAME;
    n.attr.conv.stride_h = n.attr.conv.stride_w = 1;
    n.attr.conv.dilation_h = n.attr.conv.dilation_w = 1;
    n.attr.conv.depth_multiplier = 1;
    return fpay_graph_add_node(g, &n);
}

static const int64_t X_DIMS[4] = {2, 5, 6, 7}; /* 7 channels: not a vector multiple */
static const int64_t C_DIMS[1] = {7};

/* --------------------------------------------------------------- running */

/* Runs g (consumed) on a fixed pseudo-random input with negatives, zeros and
 * positives; returns the single output (malloc'd). */
static float *run_(fpay_graph *g, size_t *count)
{
    fpay_model *m = calloc(1, sizeof *m);
    m->graph = *g;
    char err[256];
    cr_assert_eq(fpay_graph_infer_shapes(&m->graph, err, sizeof err), FPAY_OK, "%s", err);
    fpay_session *s = NULL;
    fpay_session_options o;
    fpay_session_options_init(&o);
    o.backend = "cpu"; /* the reference kernels, with FACEPAY_ISA=ref (CMake) */
    cr_assert_eq(fpay_session_create(m, &o, &s, err, sizeof err), FPAY_OK, "%s", err);
    fpay_tensor_info in;
    fpay_session_input_info(s, 0, &in);
    float *x = malloc(in.count * sizeof(float));
    fpay_test_rng r;
    fpay_test_rng_seed(&r, 42);
    for (size_t i = 0; i < in.count; i++)
        x[i] = i % 11 == 0 ? 0.0f : fpay_test_rng_uniform(&r, -3.0f, 3.0f);
    cr_assert_eq(fpay_session_set_input(s, 0, x, in.count), FPAY_OK);
    cr_assert_eq(fpay_session_run(s), FPAY_OK, "%s", fpay_session_errmsg(s));
    const float *y;
    cr_assert_eq(fpay_session_output(s, 0, &y, count), FPAY_OK);
    float *copy = malloc(*count * sizeof(float));
    memcpy(copy, y, *count * sizeof(float));
    free(x);
    fpay_session_free(s);
    fpay_model_free(m);
    return copy;
}

typedef void (*builder)(fpay_graph *g, int variant);
typedef int (*pass_fn)(fpay_graph *g);

/* Builds the graph twice, runs `pass` on one copy, checks the rewrite count
 * and the node count after, and that both compute identical bits. */
static void check_pass(builder build, int variant, pass_fn pass, int want_rewrites,
                       int want_nodes_after, fpay_op want_op_after)
{
    fpay_graph before, after;
    fpay_graph_init(&before);
    fpay_graph_init(&after);
    build(&before, variant);
    build(&after, variant);
    char err[256];
    cr_assert_eq(fpay_graph_infer_shapes(&after, err, sizeof err), FPAY_OK, "%s", err);
    int nodes_before = after.n_nodes;
    int rewrites = pass(&after);
    cr_assert_eq(rewrites, want_rewrites, "variant %d: %d rewrites, expected %d", variant,
                 rewrites, want_rewrites);
    cr_assert_eq(after.n_nodes, want_nodes_after, "variant %d: %d -> %d nodes, expected %d",
                 variant, nodes_before, after.n_nodes, want_nodes_after);
    if (want_rewrites > 0)
        cr_assert(after.nodes[after.n_nodes - 1].op == want_op_after ||
                      after.nodes[0].op == want_op_after,
                  "variant %d: expected a %s node after the pass", variant,
                  fpay_op_name(want_op_after));
    size_t n1, n2;
    float *y1 = run_(&before, &n1);
    float *y2 = run_(&after, &n2);
    cr_assert_eq(n1, n2);
    cr_assert_eq(memcmp(y1, y2, n1 * sizeof(float)), 0,
                 "variant %d: the rewrite changed the numbers", variant);
    free(y1);
    free(y2);
}

/* ----------------------------------------------------------------- PReLU */

/* relu(x) + c*(x - |x|); variant bit 0 swaps MUL operands, bit 1 swaps ADD
 * operands, bit 2 also makes the SUB result a graph output (must not fuse). */
static void build_prelu_abs(fpay_graph *g, int variant)
{
    int x = tensor_(g, "x", 4, X_DIMS, 0);
    int c = const_(g, "c", 1, C_DIMS, 7, -2.0f, 2.0f);
    int r = act_(g, "relu"), a = act_(g, "abs"), s = act_(g, "sub"), m = act_(g, "mul"),
        y = act_(g, "y");
    node_(g, FPAY_OP_RELU, x, -1, r);
    node_(g, FPAY_OP_ABS, x, -1, a);
    node_(g, FPAY_OP_SUB, x, a, s);
    if (variant & 1)
        node_(g, FPAY_OP_MUL, s, c, m);
    else
        node_(g, FPAY_OP_MUL, c, s, m);
    if (variant & 2)
        node_(g, FPAY_OP_ADD, m, r, y);
    else
        node_(g, FPAY_OP_ADD, r, m, y);
    io_(g, x, y);
    if (variant & 4) {
        g->outputs[g->n_outputs++] = s;
        g->tensors[s].flags |= FPAY_TENSOR_OUTPUT;
    }
}

Test(optimizer, prelu_abs_pattern_fuses_exactly)
{
    for (int v = 0; v < 4; v++)
        check_pass(build_prelu_abs, v, fpay_pass_fuse_prelu, 1, 1, FPAY_OP_PRELU);
}

Test(optimizer, prelu_abs_pattern_kept_when_intermediate_is_an_output)
{
    check_pass(build_prelu_abs, 4, fpay_pass_fuse_prelu, 0, 5, FPAY_OP_ADD);
}

/* relu(x) + alpha*(-relu(-x)); variant bit 0 swaps MUL operands, bit 1
 * gives the inner NEG a second reader (must not fuse). */
static void build_prelu_neg(fpay_graph *g, int variant)
{
    int x = tensor_(g, "x", 4, X_DIMS, 0);
    int alpha = const_(g, "alpha", 1, C_DIMS, 9, -1.0f, 1.0f);
    int r1 = act_(g, "r1"), n1 = act_(g, "n1"), r2 = act_(g, "r2"), n2 = act_(g, "n2"),
        m = act_(g, "m"), y = act_(g, "y");
    node_(g, FPAY_OP_RELU, x, -1, r1);
    node_(g, FPAY_OP_NEG, x, -1, n1);
    node_(g, FPAY_OP_RELU, n1, -1, r2);
    node_(g, FPAY_OP_NEG, r2, -1, n2);
    if (variant & 1)
        node_(g, FPAY_OP_MUL, n2, alpha, m);
    else
        node_(g, FPAY_OP_MUL, alpha, n2, m);
    if (variant & 2) {
        int y0 = act_(g, "y0");
        node_(g, FPAY_OP_ADD, r1, m, y0);
        node_(g, FPAY_OP_ADD, y0, n1, y);
    } else {
        node_(g, FPAY_OP_ADD, r1, m, y);
    }
    io_(g, x, y);
}

Test(optimizer, prelu_neg_pattern_fuses_exactly)
{
    check_pass(build_prelu_neg, 0, fpay_pass_fuse_prelu, 1, 1, FPAY_OP_PRELU);
    check_pass(build_prelu_neg, 1, fpay_pass_fuse_prelu, 1, 1, FPAY_OP_PRELU);
}

Test(optimizer, prelu_neg_pattern_kept_when_shared)
{
    check_pass(build_prelu_neg, 2, fpay_pass_fuse_prelu, 0, 7, FPAY_OP_ADD);
}

/* --------------------------------------------------------------- softmax */

static void reduce_(fpay_graph *g, fpay_op op, int x, int out, unsigned mask)
{
    int n = node_(g, op, x, -1, out);
    g->nodes[n].attr.reduce.axes_mask = mask;
    g->nodes[n].attr.reduce.keep_dims = 1;
}

/* variant 0: softmax over the last axis; 1: over axis 2 (must not fuse). */
static void build_softmax(fpay_graph *g, int variant)
{
    int x = tensor_(g, "x", 4, X_DIMS, 0);
    int mx = act_(g, "max"), d = act_(g, "d"), e = act_(g, "e"), s = act_(g, "s"),
        y = act_(g, "y");
    unsigned mask = variant == 1 ? 1u << 2 : 1u << 3;
    reduce_(g, FPAY_OP_REDUCE_MAX, x, mx, mask);
    node_(g, FPAY_OP_SUB, x, mx, d);
    node_(g, FPAY_OP_EXP, d, -1, e);
    reduce_(g, FPAY_OP_SUM, e, s, mask);
    node_(g, FPAY_OP_DIV, e, s, y);
    io_(g, x, y);
}

Test(optimizer, softmax_fuses_exactly)
{
    check_pass(build_softmax, 0, fpay_pass_fuse_softmax, 1, 1, FPAY_OP_SOFTMAX);
}

Test(optimizer, softmax_over_another_axis_is_kept)
{
    check_pass(build_softmax, 1, fpay_pass_fuse_softmax, 0, 5, FPAY_OP_DIV);
}

/* ------------------------------------------------------ constant folding */

static int fold_pass(fpay_graph *g)
{
    char err[128];
    return fpay_pass_fold_constants(g, err, sizeof err);
}

/* y = x * (c1 + dequantize(h)): the ADD and DEQUANTIZE fold. */
static void build_fold(fpay_graph *g, int variant)
{
    (void)variant;
    int x = tensor_(g, "x", 4, X_DIMS, 0);
    int c1 = const_(g, "c1", 1, C_DIMS, 3, -1.0f, 1.0f);
    fpay_tensor h;
    memset(&h, 0, sizeof h);
    h.name = fpay_graph_strdup(g, "h", 1);
    h.dtype = FPAY_DT_F16;
    h.rank = 1;
    h.dims[0] = 7;
    h.nbytes = 14;
    uint16_t *hv = fpay_graph_alloc(g, 14);
    const uint16_t halves[7] = {0x3C00, 0xBC00, 0x3555, 0x0001, 0x7BFF, 0x8000, 0x4248};
    memcpy(hv, halves, sizeof halves);
    h.data = hv;
    h.flags = FPAY_TENSOR_CONST;
    int ht = fpay_graph_add_tensor(g, &h);
    int hf = act_(g, "hf"), sum = act_(g, "sum"), y = act_(g, "y");
    node_(g, FPAY_OP_DEQUANTIZE, ht, -1, hf);
    node_(g, FPAY_OP_ADD, c1, hf, sum);
    node_(g, FPAY_OP_MUL, x, sum, y);
    io_(g, x, y);
}

Test(optimizer, constants_fold_exactly)
{
    check_pass(build_fold, 0, fold_pass, 2, 1, FPAY_OP_MUL);
}

/* ------------------------------------------------ bias and activation */

static const int64_t W_DIMS[4] = {7, 3, 3, 7};

/* conv without bias, then ADD of a per-channel constant; variant 1 gives the
 * conv a bias already (must not fuse: not exact). */
static void build_bias(fpay_graph *g, int variant)
{
    int x = tensor_(g, "x", 4, X_DIMS, 0);
    int w = const_(g, "w", 4, W_DIMS, 5, -0.5f, 0.5f);
    int b0 = variant == 1 ? const_(g, "b0", 1, C_DIMS, 6, -1.0f, 1.0f) : -1;
    int c = const_(g, "c", 1, C_DIMS, 8, -1.0f, 1.0f);
    int t = act_(g, "conv"), y = act_(g, "y");
    conv_(g, FPAY_OP_CONV_2D, x, w, b0, t);
    node_(g, FPAY_OP_ADD, t, c, y);
    io_(g, x, y);
}

Test(optimizer, bias_fuses_into_a_bias_free_conv_exactly)
{
    check_pass(build_bias, 0, fpay_pass_fuse_bias, 1, 1, FPAY_OP_CONV_2D);
}

Test(optimizer, bias_not_fused_when_conv_has_one)
{
    check_pass(build_bias, 1, fpay_pass_fuse_bias, 0, 2, FPAY_OP_CONV_2D);
}

/* variant: 0 conv+RELU, 1 dwconv+PRELU, 2 conv+LEAKY_RELU, 3 conv+RELU6,
 * 4 conv+RELU where the conv output is read twice (must not fuse),
 * 5 conv -> ADD(residual) -> LEAKY_RELU (the ADD takes the activation). */
static void build_act(fpay_graph *g, int variant)
{
    int x = tensor_(g, "x", 4, X_DIMS, 0);
    bool dw = variant == 1;
    const int64_t dw_dims[4] = {1, 3, 3, 7};
    int w = const_(g, "w", 4, dw ? dw_dims : W_DIMS, 5, -0.5f, 0.5f);
    int b = const_(g, "b", 1, C_DIMS, 6, -0.3f, 0.3f);
    int t = act_(g, "conv"), y = act_(g, "y");
    conv_(g, dw ? FPAY_OP_DEPTHWISE_CONV_2D : FPAY_OP_CONV_2D, x, w, b, t);
    switch (variant) {
    case 1: {
        int s = const_(g, "slope", 1, C_DIMS, 4, -1.0f, 1.0f);
        node_(g, FPAY_OP_PRELU, t, s, y);
        break;
    }
    case 2: {
        int n = node_(g, FPAY_OP_LEAKY_RELU, t, -1, y);
        g->nodes[n].attr.leaky.alpha = 0.2f;
        break;
    }
    case 3: node_(g, FPAY_OP_RELU6, t, -1, y); break;
    case 5: {
        /* residual ADD -> LEAKY_RELU, as FaceAntiSpoofing has */
        int r = act_(g, "r");
        node_(g, FPAY_OP_ADD, t, x, r);
        int n = node_(g, FPAY_OP_LEAKY_RELU, r, -1, y);
        g->nodes[n].attr.leaky.alpha = 0.2f;
        break;
    }
    case 4: {
        int r = act_(g, "r");
        node_(g, FPAY_OP_RELU, t, -1, r);
        node_(g, FPAY_OP_ADD, r, t, y);
        break;
    }
    default: node_(g, FPAY_OP_RELU, t, -1, y); break;
    }
    io_(g, x, y);
}

Test(optimizer, activations_fuse_exactly)
{
    check_pass(build_act, 0, fpay_pass_fuse_activation, 1, 1, FPAY_OP_CONV_2D);
    check_pass(build_act, 1, fpay_pass_fuse_activation, 1, 1, FPAY_OP_DEPTHWISE_CONV_2D);
    check_pass(build_act, 2, fpay_pass_fuse_activation, 1, 1, FPAY_OP_CONV_2D);
    check_pass(build_act, 3, fpay_pass_fuse_activation, 1, 1, FPAY_OP_CONV_2D);
    check_pass(build_act, 5, fpay_pass_fuse_activation, 1, 2, FPAY_OP_ADD);
}

Test(optimizer, activation_not_fused_when_conv_output_is_shared)
{
    check_pass(build_act, 4, fpay_pass_fuse_activation, 0, 3, FPAY_OP_ADD);
}

/* ---------------------------------------------- identities and dead code */

/* variant 0: a full-copy slice (masks) -> removed; 1: a slice starting at
 * 1 on axis 1 -> kept. Then ABS so the graph output is not the slice. */
static void build_slice(fpay_graph *g, int variant)
{
    int x = tensor_(g, "x", 4, X_DIMS, 0);
    int s = act_(g, "slice"), y = act_(g, "y");
    int n = node_(g, FPAY_OP_STRIDED_SLICE, x, -1, s);
    fpay_slice_attr *a = &g->nodes[n].attr.slice;
    a->rank = 4;
    for (int i = 0; i < 4; i++) {
        a->begin[i] = 0;
        a->end[i] = 0;
        a->strides[i] = 1;
    }
    a->begin_mask = 0xF;
    a->end_mask = 0xF;
    if (variant == 1) {
        a->begin_mask = 0xD;
        a->begin[1] = 1;
    }
    node_(g, FPAY_OP_ABS, s, -1, y);
    io_(g, x, y);
}

Test(optimizer, identity_slice_removed)
{
    check_pass(build_slice, 0, fpay_pass_remove_identity, 1, 1, FPAY_OP_ABS);
    check_pass(build_slice, 1, fpay_pass_remove_identity, 0, 2, FPAY_OP_ABS);
}

/* y = |x|; a NEG -> EXP chain whose result nobody reads. */
static void build_dead(fpay_graph *g, int variant)
{
    (void)variant;
    int x = tensor_(g, "x", 4, X_DIMS, 0);
    int d1 = act_(g, "d1"), d2 = act_(g, "d2"), y = act_(g, "y");
    node_(g, FPAY_OP_NEG, x, -1, d1);
    node_(g, FPAY_OP_ABS, x, -1, y);
    node_(g, FPAY_OP_EXP, d1, -1, d2);
    io_(g, x, y);
}

Test(optimizer, dead_nodes_removed)
{
    check_pass(build_dead, 0, fpay_pass_remove_dead, 2, 1, FPAY_OP_ABS);
}

/* ------------------------------------------------------------ real models */

static fpay_model *load_raw(const char *file)
{
    char err[256];
    fpay_model *m = NULL;
    cr_assert_eq(fpay_model_load_file(fpay_test_model_path(file), FPAY_LOAD_NO_OPTIMIZE, &m,
                                      err, sizeof err),
                 FPAY_OK, "%s", err);
    return m;
}

static int count_op(const fpay_graph *g, fpay_op op)
{
    int n = 0;
    for (int i = 0; i < g->n_nodes; i++)
        n += g->nodes[i].op == op;
    return n;
}

Test(optimizer, mobilefacenet_node_counts)
{
    fpay_model *m = load_raw("MobileFaceNet.tflite");
    fpay_graph *g = &m->graph;
    cr_assert_eq(g->n_nodes, 230);
    cr_assert_eq(fpay_pass_fuse_prelu(g), 33);
    cr_assert_eq(g->n_nodes, 98, "230 -> %d nodes after PReLU fusion", g->n_nodes);
    cr_assert_eq(count_op(g, FPAY_OP_PRELU), 33);
    cr_assert_eq(fpay_pass_fuse_activation(g), 33);
    cr_assert_eq(g->n_nodes, 65);
    cr_assert_eq(count_op(g, FPAY_OP_PRELU), 0);
    fpay_model_free(m);
}

Test(optimizer, mtcnn_prelu_and_softmax_fuse)
{
    const char *files[3] = {"pnet.tflite", "rnet.tflite", "onet.tflite"};
    const int prelus[3] = {3, 4, 5};
    for (int k = 0; k < 3; k++) {
        fpay_model *m = load_raw(files[k]);
        fpay_graph *g = &m->graph;
        int before = g->n_nodes;
        cr_assert_eq(fpay_pass_fuse_prelu(g), prelus[k], "%s", files[k]);
        cr_assert_eq(fpay_pass_fuse_softmax(g), 1, "%s", files[k]);
        cr_assert_eq(g->n_nodes, before - 5 * prelus[k] - 4, "%s", files[k]);
        cr_assert_eq(count_op(g, FPAY_OP_SOFTMAX), 1);
        fpay_model_free(m);
    }
}

Test(optimizer, antispoof_folds_dequantize_and_slices, .timeout = 300)
{
    fpay_model *m = load_raw("FaceAntiSpoofing.tflite");
    fpay_graph *g = &m->graph;
    char err[256];
    cr_assert_eq(g->n_nodes, 477);
    cr_assert_eq(fpay_pass_fold_constants(g, err, sizeof err), 211, "%s", err);
    cr_assert_eq(count_op(g, FPAY_OP_DEQUANTIZE), 0);
    cr_assert_eq(fpay_pass_remove_identity(g), 7);
    cr_assert_eq(count_op(g, FPAY_OP_STRIDED_SLICE), 0);
    fpay_model_free(m);
}

/* conv (act NONE) -> ADD(residual): fused into the conv's input 3, and the
 * fused node gives the same bits as the pair on the reference kernels (the
 * golden test checks the whole models the same way). */
Test(optimizer, residual_add_fuses_into_conv)
{
    fpay_model *m = load_raw("MobileFaceNet.tflite");
    fpay_graph *g = &m->graph;
    cr_assert_eq(fpay_pass_fuse_prelu(g), 33);
    int adds = count_op(g, FPAY_OP_ADD);
    int fused = fpay_pass_fuse_residual(g);
    cr_assert_eq(fused, 12, "MobileFaceNet has 12 residual connections, fused %d", fused);
    cr_assert_eq(count_op(g, FPAY_OP_ADD), adds - 12);
    int with_residual = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const fpay_node *n = &g->nodes[i];
        if (n->op != FPAY_OP_CONV_2D || n->n_inputs <= FPAY_CONV_INPUT_RESIDUAL)
            continue;
        int r = n->inputs[FPAY_CONV_INPUT_RESIDUAL];
        cr_assert_geq(r, 0);
        const fpay_tensor *rt = &g->tensors[r], *yt = &g->tensors[n->outputs[0]];
        cr_assert_eq(rt->rank, yt->rank);
        for (int d = 0; d < rt->rank; d++)
            cr_assert_eq(rt->dims[d], yt->dims[d]);
        with_residual++;
    }
    cr_assert_eq(with_residual, 12);
    /* Idempotent: a conv already carrying a residual is left alone. */
    cr_assert_eq(fpay_pass_fuse_residual(g), 0);
    char err[256];
    cr_assert_eq(fpay_graph_infer_shapes(g, err, sizeof err), FPAY_OK, "%s", err);
    fpay_model_free(m);
}
