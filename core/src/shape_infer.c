/*
 * shape_infer.c - shapes of every tensor from the input shapes, and the
 * checks that make the kernels safe.
 *
 * The kernels trust their parameters, so everything they rely on (channel
 * counts, weight shapes, sizes that fit in int, broadcastability, dtypes) is
 * checked here, once per reshape, with a message naming the node.
 */
#include "graph.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

/* Kernels index with int for spatial sizes and size_t for element counts;
 * keep every dim and every tensor well inside both. */
#define FPAY_MAX_DIM ((int64_t)1 << 24)
#define FPAY_MAX_ELEMS ((int64_t)1 << 31)

typedef struct ictx {
    fpay_graph *g;
    const fpay_node *n;
    int index;
    char *err;
    size_t err_len;
} ictx;

#define FAIL(c, st, ...)                                                      \
    do {                                                                      \
        char msg_[192];                                                       \
        snprintf(msg_, sizeof msg_, __VA_ARGS__);                             \
        fpay_set_err((c)->err, (c)->err_len, "node %d (%s, op %d in file): %s", \
                     (c)->index, fpay_op_name((c)->n->op),                    \
                     (c)->n->source_index, msg_);                             \
        return (st);                                                          \
    } while (0)

static fpay_tensor *in_t(ictx *c, int k)
{
    int t = k < c->n->n_inputs ? c->n->inputs[k] : -1;
    return t >= 0 ? &c->g->tensors[t] : NULL;
}

static fpay_tensor *out_t(ictx *c, int k) { return &c->g->tensors[c->n->outputs[k]]; }

static fpay_status need_inputs(ictx *c, int lo, int hi)
{
    if (c->n->n_inputs < lo || c->n->n_inputs > hi)
        FAIL(c, FPAY_MODEL_MALFORMED, "has %d inputs, expects %d..%d",
             c->n->n_inputs, lo, hi);
    for (int k = 0; k < lo; k++)
        if (c->n->inputs[k] < 0)
            FAIL(c, FPAY_MODEL_MALFORMED, "required input %d is missing", k);
    if (c->n->n_outputs != 1)
        FAIL(c, FPAY_MODEL_MALFORMED, "has %d outputs, expects 1", c->n->n_outputs);
    return FPAY_OK;
}

static fpay_status need_f32(ictx *c, const fpay_tensor *t, const char *what)
{
    if (t->dtype != FPAY_DT_F32)
        FAIL(c, FPAY_MODEL_UNSUPPORTED, "%s is %s, only float32 is supported",
             what, fpay_dtype_str(t->dtype));
    return FPAY_OK;
}

static fpay_status set_out(ictx *c, int k, fpay_dtype dt, int rank,
                           const int64_t *dims)
{
    fpay_tensor *o = out_t(c, k);
    if (rank < 0 || rank > FPAY_MAX_RANK)
        FAIL(c, FPAY_MODEL_UNSUPPORTED, "output rank %d", rank);
    for (int i = 0; i < rank; i++)
        if (dims[i] < 1 || dims[i] > FPAY_MAX_DIM)
            FAIL(c, FPAY_SHAPE_MISMATCH, "output dim %d would be %lld", i,
                 (long long)dims[i]);
    int64_t count = fpay_dims_count(rank, dims);
    if (count < 0 || count > FPAY_MAX_ELEMS)
        FAIL(c, FPAY_LIMIT_EXCEEDED, "output would hold too many elements");
    o->dtype = dt;
    o->rank = rank;
    memset(o->dims, 0, sizeof o->dims);
    for (int i = 0; i < rank; i++)
        o->dims[i] = dims[i];
    o->nbytes = (size_t)count * fpay_dtype_size(dt);
    return FPAY_OK;
}

static fpay_status check_dims(ictx *c, const fpay_tensor *t, const char *what)
{
    if (t->rank < 0 || t->rank > FPAY_MAX_RANK)
        FAIL(c, FPAY_MODEL_UNSUPPORTED, "%s has rank %d", what, t->rank);
    for (int i = 0; i < t->rank; i++)
        if (t->dims[i] < 1 || t->dims[i] > FPAY_MAX_DIM)
            FAIL(c, FPAY_SHAPE_MISMATCH, "%s dim %d is %lld", what, i,
                 (long long)t->dims[i]);
    int64_t count = fpay_tensor_count(t);
    if (count < 0 || count > FPAY_MAX_ELEMS)
        FAIL(c, FPAY_LIMIT_EXCEEDED, "%s holds too many elements", what);
    return FPAY_OK;
}

/* Output size and padding along one axis (TFLite's SAME/VALID rules). */
static fpay_status window(ictx *c, fpay_padding pad, int64_t in, int k,
                          int stride, int dilation, int64_t *out, int *before,
                          int *after)
{
    if (k < 1 || stride < 1 || dilation < 1 || k > 4096 || stride > 4096 ||
        dilation > 4096)
        FAIL(c, FPAY_MODEL_MALFORMED, "window %d stride %d dilation %d", k,
             stride, dilation);
    int64_t eff = (int64_t)(k - 1) * dilation + 1;
    if (pad == FPAY_PAD_SAME) {
        *out = (in + stride - 1) / stride;
        int64_t total = (*out - 1) * stride + eff - in;
        if (total < 0)
            total = 0;
        *before = (int)(total / 2);
        *after = (int)(total - total / 2);
    } else if (pad == FPAY_PAD_VALID) {
        if (in < eff)
            FAIL(c, FPAY_SHAPE_MISMATCH, "input size %lld smaller than window %lld",
                 (long long)in, (long long)eff);
        *out = (in - eff) / stride + 1;
        *before = *after = 0;
    } else {
        FAIL(c, FPAY_MODEL_MALFORMED, "padding mode %d", (int)pad);
    }
    return FPAY_OK;
}

static fpay_status check_act(ictx *c, int64_t channels)
{
    const fpay_node *n = c->n;
    if (n->act == FPAY_ACT_PRELU) {
        if (n->act_slope < 0 || n->act_slope >= c->g->n_tensors)
            FAIL(c, FPAY_MODEL_MALFORMED, "PReLU epilogue without slope");
        const fpay_tensor *s = &c->g->tensors[n->act_slope];
        if (s->dtype != FPAY_DT_F32 || fpay_tensor_count(s) != channels)
            FAIL(c, FPAY_SHAPE_MISMATCH, "PReLU slope has %lld values for %lld channels",
                 (long long)fpay_tensor_count(s), (long long)channels);
    } else if ((unsigned)n->act > FPAY_ACT_LEAKY_RELU) {
        FAIL(c, FPAY_MODEL_MALFORMED, "activation %d", (int)n->act);
    }
    return FPAY_OK;
}

static fpay_status infer_conv(ictx *c, bool depthwise)
{
    /* CONV_2D may carry a fused residual (FPAY_CONV_INPUT_RESIDUAL). */
    fpay_status st = need_inputs(c, 2, depthwise ? 3 : 4);
    if (st)
        return st;
    fpay_tensor *x = in_t(c, 0), *w = in_t(c, 1), *b = in_t(c, 2);
    if ((st = need_f32(c, x, "input")) || (st = need_f32(c, w, "weights")) ||
        (st = check_dims(c, x, "input")) || (st = check_dims(c, w, "weights")))
        return st;
    if (x->rank != 4 || w->rank != 4)
        FAIL(c, FPAY_SHAPE_MISMATCH, "input rank %d and weight rank %d, expects 4 and 4",
             x->rank, w->rank);
    int64_t out_c;
    fpay_conv_attr *a = &c->g->nodes[c->index].attr.conv;
    if (depthwise) {
        out_c = w->dims[3];
        if (w->dims[0] != 1 || out_c % x->dims[3] != 0)
            FAIL(c, FPAY_SHAPE_MISMATCH, "depthwise weights [%lld,%lld,%lld,%lld] for %lld input channels",
                 (long long)w->dims[0], (long long)w->dims[1], (long long)w->dims[2],
                 (long long)w->dims[3], (long long)x->dims[3]);
        a->depth_multiplier = (int)(out_c / x->dims[3]);
    } else {
        out_c = w->dims[0];
        if (w->dims[3] != x->dims[3])
            FAIL(c, FPAY_SHAPE_MISMATCH, "weights expect %lld input channels, input has %lld",
                 (long long)w->dims[3], (long long)x->dims[3]);
    }
    if (b) {
        if ((st = need_f32(c, b, "bias")))
            return st;
        if (fpay_tensor_count(b) != out_c)
            FAIL(c, FPAY_SHAPE_MISMATCH, "bias has %lld values for %lld channels",
                 (long long)fpay_tensor_count(b), (long long)out_c);
    }
    if ((st = check_act(c, out_c)))
        return st;
    int64_t dims[4] = {x->dims[0], 0, 0, out_c};
    if ((st = window(c, a->padding, x->dims[1], (int)w->dims[1], a->stride_h,
                     a->dilation_h, &dims[1], &a->pad_top, &a->pad_bottom)) ||
        (st = window(c, a->padding, x->dims[2], (int)w->dims[2], a->stride_w,
                     a->dilation_w, &dims[2], &a->pad_left, &a->pad_right)))
        return st;
    fpay_tensor *r = in_t(c, FPAY_CONV_INPUT_RESIDUAL);
    if (r) {
        if ((st = need_f32(c, r, "residual")))
            return st;
        if (r->rank != 4 || r->dims[0] != dims[0] || r->dims[1] != dims[1] ||
            r->dims[2] != dims[2] || r->dims[3] != dims[3])
            FAIL(c, FPAY_SHAPE_MISMATCH, "residual [%lld,%lld,%lld,%lld] differs from the output",
                 (long long)r->dims[0], (long long)r->dims[1], (long long)r->dims[2],
                 (long long)r->dims[3]);
    }
    return set_out(c, 0, FPAY_DT_F32, 4, dims);
}

static fpay_status infer_fc(ictx *c)
{
    fpay_status st = need_inputs(c, 2, 3);
    if (st)
        return st;
    fpay_tensor *x = in_t(c, 0), *w = in_t(c, 1), *b = in_t(c, 2);
    if ((st = need_f32(c, x, "input")) || (st = need_f32(c, w, "weights")) ||
        (st = check_dims(c, x, "input")) || (st = check_dims(c, w, "weights")))
        return st;
    if (w->rank != 2)
        FAIL(c, FPAY_SHAPE_MISMATCH, "weights have rank %d, expects 2", w->rank);
    int64_t units = w->dims[0], k = w->dims[1];
    int64_t count = fpay_tensor_count(x);
    if (count % k != 0)
        FAIL(c, FPAY_SHAPE_MISMATCH, "input of %lld elements is not a multiple of %lld features",
             (long long)count, (long long)k);
    if (b) {
        if ((st = need_f32(c, b, "bias")))
            return st;
        if (fpay_tensor_count(b) != units)
            FAIL(c, FPAY_SHAPE_MISMATCH, "bias has %lld values for %lld units",
                 (long long)fpay_tensor_count(b), (long long)units);
    }
    if ((st = check_act(c, units)))
        return st;
    if (c->n->attr.fc.keep_num_dims) {
        if (x->dims[x->rank - 1] != k)
            FAIL(c, FPAY_SHAPE_MISMATCH, "keep_num_dims needs last dim %lld", (long long)k);
        int64_t dims[FPAY_MAX_RANK];
        memcpy(dims, x->dims, sizeof dims);
        dims[x->rank - 1] = units;
        return set_out(c, 0, FPAY_DT_F32, x->rank, dims);
    }
    int64_t dims[2] = {count / k, units};
    return set_out(c, 0, FPAY_DT_F32, 2, dims);
}

bool fpay_broadcast_shape(const fpay_tensor *a, const fpay_tensor *b,
                          int *out_rank, int64_t *out_dims)
{
    int r = a->rank > b->rank ? a->rank : b->rank;
    for (int i = 0; i < r; i++) {
        int ia = a->rank - r + i, ib = b->rank - r + i;
        int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
        if (da != db && da != 1 && db != 1)
            return false;
        out_dims[i] = da == 1 ? db : da;
    }
    *out_rank = r;
    return true;
}

static fpay_status infer_binary(ictx *c, fpay_dtype out_dt)
{
    fpay_status st = need_inputs(c, 2, 2);
    if (st)
        return st;
    fpay_tensor *a = in_t(c, 0), *b = in_t(c, 1);
    if ((st = need_f32(c, a, "first operand")) ||
        (st = need_f32(c, b, "second operand")) ||
        (st = check_dims(c, a, "first operand")) ||
        (st = check_dims(c, b, "second operand")))
        return st;
    int rank;
    int64_t dims[FPAY_MAX_RANK];
    if (!fpay_broadcast_shape(a, b, &rank, dims))
        FAIL(c, FPAY_SHAPE_MISMATCH, "operands of rank %d and %d do not broadcast",
             a->rank, b->rank);
    if ((st = check_act(c, rank ? dims[rank - 1] : 1)))
        return st;
    return set_out(c, 0, out_dt, rank, dims);
}

static fpay_status infer_unary(ictx *c, fpay_dtype in_dt, fpay_dtype out_dt)
{
    fpay_status st = need_inputs(c, 1, 1);
    if (st)
        return st;
    fpay_tensor *x = in_t(c, 0);
    if ((st = check_dims(c, x, "input")))
        return st;
    if (x->dtype != in_dt)
        FAIL(c, FPAY_MODEL_UNSUPPORTED, "input is %s, expects %s",
             fpay_dtype_str(x->dtype), fpay_dtype_str(in_dt));
    return set_out(c, 0, out_dt, x->rank, x->dims);
}

static fpay_status infer_prelu(ictx *c)
{
    fpay_status st = need_inputs(c, 2, 2);
    if (st)
        return st;
    fpay_tensor *x = in_t(c, 0), *s = in_t(c, 1);
    if ((st = need_f32(c, x, "input")) || (st = need_f32(c, s, "slope")) ||
        (st = check_dims(c, x, "input")))
        return st;
    int64_t ch = x->rank ? x->dims[x->rank - 1] : 1;
    if (fpay_tensor_count(s) != ch)
        FAIL(c, FPAY_SHAPE_MISMATCH, "slope has %lld values for %lld channels",
             (long long)fpay_tensor_count(s), (long long)ch);
    return set_out(c, 0, FPAY_DT_F32, x->rank, x->dims);
}

static fpay_status infer_pool(ictx *c)
{
    fpay_status st = need_inputs(c, 1, 1);
    if (st)
        return st;
    fpay_tensor *x = in_t(c, 0);
    if ((st = need_f32(c, x, "input")) || (st = check_dims(c, x, "input")))
        return st;
    if (x->rank != 4)
        FAIL(c, FPAY_SHAPE_MISMATCH, "input rank %d, expects 4", x->rank);
    if (c->n->act != FPAY_ACT_NONE && c->n->act != FPAY_ACT_RELU &&
        c->n->act != FPAY_ACT_RELU6 && c->n->act != FPAY_ACT_RELU_N1_TO_1)
        FAIL(c, FPAY_MODEL_UNSUPPORTED, "pool activation %d", (int)c->n->act);
    fpay_pool_attr *a = &c->g->nodes[c->index].attr.pool;
    int64_t dims[4] = {x->dims[0], 0, 0, x->dims[3]};
    if ((st = window(c, a->padding, x->dims[1], a->filter_h, a->stride_h, 1,
                     &dims[1], &a->pad_top, &a->pad_bottom)) ||
        (st = window(c, a->padding, x->dims[2], a->filter_w, a->stride_w, 1,
                     &dims[2], &a->pad_left, &a->pad_right)))
        return st;
    return set_out(c, 0, FPAY_DT_F32, 4, dims);
}

static fpay_status infer_reduce(ictx *c)
{
    fpay_status st = need_inputs(c, 1, 1);
    if (st)
        return st;
    fpay_tensor *x = in_t(c, 0);
    if ((st = need_f32(c, x, "input")) || (st = check_dims(c, x, "input")))
        return st;
    unsigned mask = c->n->attr.reduce.axes_mask;
    if (x->rank == 0 || (mask >> x->rank) != 0)
        FAIL(c, FPAY_MODEL_MALFORMED, "reduction axes 0x%x for rank %d", mask, x->rank);
    int64_t dims[FPAY_MAX_RANK];
    int r = 0;
    for (int i = 0; i < x->rank; i++) {
        if (mask & (1u << i)) {
            if (c->n->attr.reduce.keep_dims)
                dims[r++] = 1;
        } else {
            dims[r++] = x->dims[i];
        }
    }
    return set_out(c, 0, FPAY_DT_F32, r, dims);
}

static fpay_status infer_reshape(ictx *c)
{
    fpay_status st = need_inputs(c, 1, 1);
    if (st)
        return st;
    fpay_tensor *x = in_t(c, 0);
    if ((st = check_dims(c, x, "input")))
        return st;
    const fpay_reshape_attr *a = &c->n->attr.reshape;
    if (a->rank < 0 || a->rank > FPAY_MAX_RANK)
        FAIL(c, FPAY_MODEL_UNSUPPORTED, "target rank %d", a->rank);
    int64_t dims[FPAY_MAX_RANK];
    int infer_at = -1;
    int64_t known = 1;
    for (int i = 0; i < a->rank; i++) {
        dims[i] = a->dims[i];
        if (i == 0 && a->batch_follows && x->rank > 0)
            dims[0] = x->dims[0];
        if (dims[i] == -1) {
            if (infer_at >= 0)
                FAIL(c, FPAY_MODEL_MALFORMED, "more than one -1 in the target shape");
            infer_at = i;
        } else if (dims[i] < 1 || dims[i] > FPAY_MAX_DIM) {
            FAIL(c, FPAY_MODEL_MALFORMED, "target dim %d is %lld", i, (long long)dims[i]);
        } else {
            known *= dims[i]; /* bounded: rank <= 6 dims of <= 2^24 would overflow, so check */
            if (known > FPAY_MAX_ELEMS)
                FAIL(c, FPAY_SHAPE_MISMATCH, "target shape too large");
        }
    }
    int64_t count = fpay_tensor_count(x);
    if (infer_at >= 0) {
        if (count % known != 0)
            FAIL(c, FPAY_SHAPE_MISMATCH, "cannot reshape %lld elements with -1",
                 (long long)count);
        dims[infer_at] = count / known;
    } else if (known != count) {
        FAIL(c, FPAY_SHAPE_MISMATCH, "cannot reshape %lld elements into %lld",
             (long long)count, (long long)known);
    }
    return set_out(c, 0, x->dtype, a->rank, dims);
}

fpay_status fpay_slice_resolve(const fpay_slice_attr *a, int in_rank,
                               const int64_t *in_dims, fpay_slice_plan *plan,
                               char *err, size_t err_len)
{
    if (a->ellipsis_mask || a->new_axis_mask) {
        fpay_set_err(err, err_len, "ellipsis and new-axis masks are not supported");
        return FPAY_MODEL_UNSUPPORTED;
    }
    if (a->rank != in_rank) {
        fpay_set_err(err, err_len, "slice of rank %d on input of rank %d", a->rank, in_rank);
        return FPAY_SHAPE_MISMATCH;
    }
    memset(plan, 0, sizeof *plan);
    plan->rank = in_rank;
    for (int i = 0; i < in_rank; i++) {
        int64_t dim = in_dims[i], s = a->strides[i];
        if (s == 0) {
            fpay_set_err(err, err_len, "slice stride 0 on axis %d", i);
            return FPAY_MODEL_MALFORMED;
        }
        if (s < -FPAY_MAX_DIM || s > FPAY_MAX_DIM) {
            fpay_set_err(err, err_len, "slice stride %lld on axis %d", (long long)s, i);
            return FPAY_MODEL_MALFORMED;
        }
        int64_t b = a->begin[i], e = a->end[i];
        bool shrink = (a->shrink_axis_mask >> i) & 1;
        /* Clamp untrusted indices before arithmetic on them. */
        if (b < -dim - 1) b = -dim - 1;
        if (b > dim) b = dim;
        if (e < -dim - 1) e = -dim - 1;
        if (e > dim) e = dim;
        if (b < 0) b += dim;
        if (e < 0) e += dim;
        if (shrink) {
            if (b < 0 || b >= dim) {
                fpay_set_err(err, err_len, "shrunk axis %d index out of range", i);
                return FPAY_SHAPE_MISMATCH;
            }
            e = b + 1;
            s = 1;
        } else if (s > 0) {
            if ((a->begin_mask >> i) & 1) b = 0;
            if ((a->end_mask >> i) & 1) e = dim;
            if (b < 0) b = 0;
            if (e > dim) e = dim;
        } else {
            if ((a->begin_mask >> i) & 1) b = dim - 1;
            if ((a->end_mask >> i) & 1) e = -1;
            if (b > dim - 1) b = dim - 1;
            if (e < -1) e = -1;
        }
        int64_t n = s > 0 ? (e - b + s - 1) / s : (b - e + (-s) - 1) / (-s);
        if (n < 0)
            n = 0;
        plan->begin[i] = b;
        plan->strides[i] = s;
        plan->dims[i] = n;
        if (!shrink)
            plan->out_shape[plan->out_rank++] = n;
    }
    return FPAY_OK;
}

static fpay_status infer_slice(ictx *c)
{
    fpay_status st = need_inputs(c, 1, 1);
    if (st)
        return st;
    fpay_tensor *x = in_t(c, 0);
    if ((st = check_dims(c, x, "input")))
        return st;
    fpay_slice_plan plan;
    char msg[128];
    if ((st = fpay_slice_resolve(&c->n->attr.slice, x->rank, x->dims, &plan, msg,
                                 sizeof msg)))
        FAIL(c, st, "%s", msg);
    return set_out(c, 0, x->dtype, plan.out_rank, plan.out_shape);
}

static fpay_status infer_concat(ictx *c)
{
    fpay_status st = need_inputs(c, 1, FPAY_MAX_NODE_INPUTS);
    if (st)
        return st;
    fpay_tensor *x0 = in_t(c, 0);
    if ((st = check_dims(c, x0, "input 0")))
        return st;
    int axis = c->n->attr.concat.axis;
    if (axis < 0 || axis >= x0->rank)
        FAIL(c, FPAY_MODEL_MALFORMED, "axis %d for rank %d", axis, x0->rank);
    if (c->n->act != FPAY_ACT_NONE)
        FAIL(c, FPAY_MODEL_UNSUPPORTED, "fused activation on concatenation");
    int64_t dims[FPAY_MAX_RANK];
    memcpy(dims, x0->dims, sizeof dims);
    dims[axis] = 0;
    for (int k = 0; k < c->n->n_inputs; k++) {
        fpay_tensor *x = in_t(c, k);
        if (!x)
            FAIL(c, FPAY_MODEL_MALFORMED, "input %d is missing", k);
        if ((st = check_dims(c, x, "input")))
            return st;
        if (x->rank != x0->rank || x->dtype != x0->dtype)
            FAIL(c, FPAY_SHAPE_MISMATCH, "input %d differs in rank or type", k);
        for (int i = 0; i < x->rank; i++)
            if (i != axis && x->dims[i] != x0->dims[i])
                FAIL(c, FPAY_SHAPE_MISMATCH, "input %d dim %d is %lld, expects %lld", k,
                     i, (long long)x->dims[i], (long long)x0->dims[i]);
        dims[axis] += x->dims[axis];
    }
    return set_out(c, 0, x0->dtype, x0->rank, dims);
}

static bool castable(fpay_dtype d)
{
    return d == FPAY_DT_F32 || d == FPAY_DT_I32 || d == FPAY_DT_BOOL ||
           d == FPAY_DT_I64 || d == FPAY_DT_U8 || d == FPAY_DT_I8;
}

static fpay_status infer_cast(ictx *c)
{
    fpay_status st = need_inputs(c, 1, 1);
    if (st)
        return st;
    fpay_tensor *x = in_t(c, 0);
    if ((st = check_dims(c, x, "input")))
        return st;
    if (!castable(x->dtype) || !castable(c->n->attr.cast.to))
        FAIL(c, FPAY_MODEL_UNSUPPORTED, "cast from %s to %s", fpay_dtype_str(x->dtype),
             fpay_dtype_str(c->n->attr.cast.to));
    return set_out(c, 0, c->n->attr.cast.to, x->rank, x->dims);
}

static fpay_status infer_node(ictx *c)
{
    switch (c->n->op) {
    case FPAY_OP_CONV_2D: return infer_conv(c, false);
    case FPAY_OP_DEPTHWISE_CONV_2D: return infer_conv(c, true);
    case FPAY_OP_FULLY_CONNECTED: return infer_fc(c);
    case FPAY_OP_ADD:
    case FPAY_OP_SUB:
    case FPAY_OP_MUL:
    case FPAY_OP_DIV: return infer_binary(c, FPAY_DT_F32);
    case FPAY_OP_GREATER_EQUAL:
    case FPAY_OP_LESS:
        if (c->n->act != FPAY_ACT_NONE)
            FAIL(c, FPAY_MODEL_MALFORMED, "activation on a comparison");
        return infer_binary(c, FPAY_DT_BOOL);
    case FPAY_OP_ABS:
    case FPAY_OP_NEG:
    case FPAY_OP_RELU:
    case FPAY_OP_RELU6:
    case FPAY_OP_LEAKY_RELU:
    case FPAY_OP_EXP:
    case FPAY_OP_SOFTMAX:
    case FPAY_OP_L2_NORMALIZE: return infer_unary(c, FPAY_DT_F32, FPAY_DT_F32);
    case FPAY_OP_DEQUANTIZE: return infer_unary(c, FPAY_DT_F16, FPAY_DT_F32);
    case FPAY_OP_PRELU: return infer_prelu(c);
    case FPAY_OP_MAX_POOL_2D:
    case FPAY_OP_AVERAGE_POOL_2D: return infer_pool(c);
    case FPAY_OP_REDUCE_MAX:
    case FPAY_OP_SUM: return infer_reduce(c);
    case FPAY_OP_RESHAPE: return infer_reshape(c);
    case FPAY_OP_STRIDED_SLICE: return infer_slice(c);
    case FPAY_OP_CONCATENATION: return infer_concat(c);
    case FPAY_OP_CAST: return infer_cast(c);
    case FPAY_OP_COUNT_: break;
    }
    FAIL(c, FPAY_MODEL_UNSUPPORTED, "no shape rule");
}

fpay_status fpay_graph_infer_shapes(fpay_graph *g, char *err, size_t err_len)
{
    fpay_status st = fpay_graph_validate(g, err, err_len);
    if (st)
        return st;
    for (int i = 0; i < g->n_inputs; i++) {
        const fpay_tensor *t = &g->tensors[g->inputs[i]];
        int64_t count = fpay_tensor_count(t);
        if (t->rank > FPAY_MAX_RANK || count < 1 || count > FPAY_MAX_ELEMS) {
            fpay_set_err(err, err_len, "graph input %d '%s' has an invalid shape", i,
                         t->name ? t->name : "");
            return FPAY_SHAPE_MISMATCH;
        }
        g->tensors[g->inputs[i]].nbytes = (size_t)count * fpay_dtype_size(t->dtype);
    }
    for (int i = 0; i < g->n_nodes; i++) {
        ictx c = {g, &g->nodes[i], i, err, err_len};
        if ((st = infer_node(&c)))
            return st;
    }
    return FPAY_OK;
}
