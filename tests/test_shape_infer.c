/*
 * test_shape_infer.c - shape inference (core/src/shape_infer.c) on small
 * graphs built here: the output shapes and explicit paddings it computes
 * against TFLite's rules worked out by hand, and the refusals that keep the
 * kernels safe (each names the node and says what is wrong). The importer
 * and model tests exercise it on the real models; these pin the rules.
 */
#include "graph.h"

#include <criterion/criterion.h>

#include <string.h>

typedef struct gb {
    fpay_graph g;
    char err[256];
} gb;

static int tensor(gb *b, int rank, const int64_t *dims, unsigned flags)
{
    fpay_tensor t;
    memset(&t, 0, sizeof t);
    t.name = fpay_graph_strdup(&b->g, "t", 1);
    t.dtype = FPAY_DT_F32;
    t.rank = rank;
    for (int i = 0; i < rank; i++)
        t.dims[i] = dims[i];
    t.flags = flags;
    return fpay_graph_add_tensor(&b->g, &t);
}

static int input(gb *b, int rank, const int64_t *dims)
{
    int t = tensor(b, rank, dims, FPAY_TENSOR_INPUT);
    b->g.inputs = fpay_graph_alloc(&b->g, sizeof(int));
    b->g.inputs[0] = t;
    b->g.n_inputs = 1;
    return t;
}

static int weights(gb *b, int rank, const int64_t *dims)
{
    int64_t n = fpay_dims_count(rank, dims);
    float *zero = calloc((size_t)n, sizeof(float));
    int t = fpay_graph_add_const_f32(&b->g, "w", rank, dims, zero);
    free(zero);
    return t;
}

static int output(gb *b)
{
    int t = tensor(b, 0, NULL, FPAY_TENSOR_OUTPUT);
    b->g.outputs = fpay_graph_alloc(&b->g, sizeof(int));
    b->g.outputs[0] = t;
    b->g.n_outputs = 1;
    return t;
}

static fpay_node *conv(gb *b, fpay_op op, int x, int w, int bias, int out, fpay_padding pad,
                       int stride)
{
    fpay_node n;
    fpay_node_init(&n, op);
    n.inputs[0] = x;
    n.inputs[1] = w;
    n.inputs[2] = bias;
    n.n_inputs = 3;
    n.outputs[0] = out;
    n.n_outputs = 1;
    n.attr.conv.padding = pad;
    n.attr.conv.stride_h = n.attr.conv.stride_w = stride;
    n.attr.conv.dilation_h = n.attr.conv.dilation_w = 1;
    int k = fpay_graph_add_node(&b->g, &n);
    return &b->g.nodes[k];
}

static void expect_dims(const fpay_tensor *t, int rank, const int64_t *dims)
{
    cr_assert_eq(t->rank, rank);
    for (int i = 0; i < rank; i++)
        cr_expect_eq(t->dims[i], dims[i], "dim %d: %lld, want %lld", i, (long long)t->dims[i],
                     (long long)dims[i]);
}

/* SAME: out = ceil(in / stride); the padding total is split with the odd
 * pixel at the bottom/right (TFLite). 8 wide, 3x3, stride 2: out 4, total
 * (4-1)*2 + 3 - 8 = 1 -> 0 before, 1 after. 7 high: out 4, total 2 -> 1, 1. */
Test(shape_infer, conv_same_padding_puts_the_odd_pixel_after)
{
    gb b = {0};
    fpay_graph_init(&b.g);
    int x = input(&b, 4, (int64_t[]){1, 7, 8, 3});
    int w = weights(&b, 4, (int64_t[]){5, 3, 3, 3});
    int y = output(&b);
    conv(&b, FPAY_OP_CONV_2D, x, w, -1, y, FPAY_PAD_SAME, 2);
    cr_assert_eq(fpay_graph_infer_shapes(&b.g, b.err, sizeof b.err), FPAY_OK, "%s", b.err);
    expect_dims(&b.g.tensors[y], 4, (int64_t[]){1, 4, 4, 5});
    const fpay_conv_attr *a = &b.g.nodes[0].attr.conv;
    cr_expect_eq(a->pad_top, 1);
    cr_expect_eq(a->pad_bottom, 1);
    cr_expect_eq(a->pad_left, 0);
    cr_expect_eq(a->pad_right, 1);
    fpay_graph_free(&b.g);
}

/* VALID: out = (in - k) / stride + 1, no padding; 7 -> 3, 8 -> 3. */
Test(shape_infer, conv_valid_has_no_padding)
{
    gb b = {0};
    fpay_graph_init(&b.g);
    int x = input(&b, 4, (int64_t[]){2, 7, 8, 3});
    int w = weights(&b, 4, (int64_t[]){4, 3, 3, 3});
    int y = output(&b);
    conv(&b, FPAY_OP_CONV_2D, x, w, -1, y, FPAY_PAD_VALID, 2);
    cr_assert_eq(fpay_graph_infer_shapes(&b.g, b.err, sizeof b.err), FPAY_OK, "%s", b.err);
    expect_dims(&b.g.tensors[y], 4, (int64_t[]){2, 3, 3, 4});
    const fpay_conv_attr *a = &b.g.nodes[0].attr.conv;
    cr_expect_eq(a->pad_top + a->pad_bottom + a->pad_left + a->pad_right, 0);
    fpay_graph_free(&b.g);
}

/* Depthwise weights [1,kh,kw,C*m]: the multiplier is derived, C*m out. */
Test(shape_infer, depthwise_derives_the_channel_multiplier)
{
    gb b = {0};
    fpay_graph_init(&b.g);
    int x = input(&b, 4, (int64_t[]){1, 6, 6, 4});
    int w = weights(&b, 4, (int64_t[]){1, 3, 3, 8});
    int bias = weights(&b, 1, (int64_t[]){8});
    int y = output(&b);
    conv(&b, FPAY_OP_DEPTHWISE_CONV_2D, x, w, bias, y, FPAY_PAD_SAME, 1);
    cr_assert_eq(fpay_graph_infer_shapes(&b.g, b.err, sizeof b.err), FPAY_OK, "%s", b.err);
    expect_dims(&b.g.tensors[y], 4, (int64_t[]){1, 6, 6, 8});
    cr_expect_eq(b.g.nodes[0].attr.conv.depth_multiplier, 2);
    fpay_graph_free(&b.g);
}

/* Refusals: each a clean status with the node and the reason. */
static void expect_refused(int in_c, int w_out, int w_in, int bias_n, int in_hw,
                           fpay_padding pad, fpay_status want, const char *needle)
{
    gb b = {0};
    fpay_graph_init(&b.g);
    int x = input(&b, 4, (int64_t[]){1, in_hw, in_hw, in_c});
    int w = weights(&b, 4, (int64_t[]){w_out, 3, 3, w_in});
    int bias = bias_n ? weights(&b, 1, (int64_t[]){bias_n}) : -1;
    int y = output(&b);
    conv(&b, FPAY_OP_CONV_2D, x, w, bias, y, pad, 1);
    fpay_status st = fpay_graph_infer_shapes(&b.g, b.err, sizeof b.err);
    cr_expect_eq(st, want, "status %d (%s), want %d", st, b.err, want);
    cr_expect(strstr(b.err, needle) != NULL, "'%s' lacks '%s'", b.err, needle);
    cr_expect(strstr(b.err, "node 0 (CONV_2D") != NULL, "'%s' does not name the node", b.err);
    fpay_graph_free(&b.g);
}

Test(shape_infer, conv_refuses_mismatched_weights_bias_and_tiny_inputs)
{
    expect_refused(3, 4, 5, 0, 8, FPAY_PAD_SAME, FPAY_SHAPE_MISMATCH,
                   "weights expect 5 input channels, input has 3");
    expect_refused(3, 4, 3, 5, 8, FPAY_PAD_SAME, FPAY_SHAPE_MISMATCH,
                   "bias has 5 values for 4 channels");
    expect_refused(3, 4, 3, 0, 2, FPAY_PAD_VALID, FPAY_SHAPE_MISMATCH,
                   "input size 2 smaller than window 3");
}

/* numpy broadcasting: trailing axes align, 1 stretches, else no. */
Test(shape_infer, broadcast_follows_numpy_rules)
{
    fpay_tensor a = {.rank = 3, .dims = {2, 1, 3}}, c = {.rank = 2, .dims = {4, 1}};
    int rank = 0;
    int64_t dims[FPAY_MAX_RANK];
    cr_assert(fpay_broadcast_shape(&a, &c, &rank, dims));
    cr_expect_eq(rank, 3);
    cr_expect(dims[0] == 2 && dims[1] == 4 && dims[2] == 3, "[%lld,%lld,%lld]",
              (long long)dims[0], (long long)dims[1], (long long)dims[2]);
    fpay_tensor d = {.rank = 2, .dims = {2, 3}}, e = {.rank = 1, .dims = {4}};
    cr_expect_not(fpay_broadcast_shape(&d, &e, &rank, dims), "[2,3] and [4] do not broadcast");
}

static fpay_status reshape(const int64_t *in, int in_rank, const int64_t *to, int to_rank,
                           fpay_tensor *out, char *err, size_t err_len)
{
    gb b = {0};
    fpay_graph_init(&b.g);
    int x = input(&b, in_rank, in);
    int y = output(&b);
    fpay_node n;
    fpay_node_init(&n, FPAY_OP_RESHAPE);
    n.inputs[0] = x;
    n.n_inputs = 1;
    n.outputs[0] = y;
    n.n_outputs = 1;
    n.attr.reshape.rank = to_rank;
    memcpy(n.attr.reshape.dims, to, (size_t)to_rank * sizeof *to);
    fpay_graph_add_node(&b.g, &n);
    fpay_status st = fpay_graph_infer_shapes(&b.g, err, err_len);
    *out = b.g.tensors[y];
    fpay_graph_free(&b.g);
    return st;
}

Test(shape_infer, reshape_infers_one_minus_one_and_refuses_what_does_not_divide)
{
    char err[256];
    fpay_tensor out;
    cr_assert_eq(reshape((int64_t[]){2, 6}, 2, (int64_t[]){-1, 3}, 2, &out, err, sizeof err),
                 FPAY_OK, "%s", err);
    expect_dims(&out, 2, (int64_t[]){4, 3});
    cr_expect_eq(reshape((int64_t[]){2, 6}, 2, (int64_t[]){-1, 5}, 2, &out, err, sizeof err),
                 FPAY_SHAPE_MISMATCH);
    cr_expect(strstr(err, "cannot reshape 12 elements with -1"), "%s", err);
    cr_expect_eq(reshape((int64_t[]){2, 6}, 2, (int64_t[]){-1, -1}, 2, &out, err, sizeof err),
                 FPAY_MODEL_MALFORMED);
    cr_expect_eq(reshape((int64_t[]){2, 6}, 2, (int64_t[]){5, 2}, 2, &out, err, sizeof err),
                 FPAY_SHAPE_MISMATCH);
}

/* Kernels index spatial sizes with int: a dim of 2^24 + 1 is refused before
 * any of them sees it. */
Test(shape_infer, dims_past_the_kernel_limit_are_refused)
{
    char err[256];
    fpay_tensor out;
    fpay_status st = reshape((int64_t[]){(1 << 24) + 1, 1}, 2, (int64_t[]){-1}, 1, &out, err,
                             sizeof err);
    cr_expect_neq(st, FPAY_OK, "a %d-long dim was accepted", (1 << 24) + 1);
}

/* STRIDED_SLICE as TFLite: negative indices count from the end, end_mask
 * takes the whole axis, shrink_axis drops the axis from the output. */
Test(shape_infer, slice_resolves_negative_indices_masks_and_shrink)
{
    fpay_slice_attr a = {.rank = 3,
                         .begin = {0, -2, 1},
                         .end = {1, 0, 0},
                         .strides = {1, 1, 2},
                         .end_mask = 2 | 4,
                         .shrink_axis_mask = 1};
    fpay_slice_plan p;
    char err[256];
    cr_assert_eq(fpay_slice_resolve(&a, 3, (int64_t[]){3, 5, 6}, &p, err, sizeof err), FPAY_OK,
                 "%s", err);
    cr_expect_eq(p.begin[1], 3);
    cr_expect_eq(p.dims[1], 2);
    cr_expect_eq(p.begin[2], 1);
    cr_expect_eq(p.dims[2], 3); /* 1, 3, 5 */
    cr_assert_eq(p.out_rank, 2);
    cr_expect(p.out_shape[0] == 2 && p.out_shape[1] == 3, "[%lld,%lld]",
              (long long)p.out_shape[0], (long long)p.out_shape[1]);
}
