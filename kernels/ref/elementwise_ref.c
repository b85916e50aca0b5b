/*
 * elementwise_ref.c - reference broadcast arithmetic, comparisons and the
 * unary activations.
 *
 * Every result is one float operation on the two operands (then the
 * epilogue), so any correct kernel must match these bit for bit.
 */
#include "fpay_kernels.h"
#include "ref_act.h"

#include <math.h>

static inline float binop(fpay_kbinary op, float x, float y)
{
    switch (op) {
    case FPAY_KBIN_ADD:
        return x + y;
    case FPAY_KBIN_SUB:
        return x - y;
    case FPAY_KBIN_MUL:
        return x * y;
    case FPAY_KBIN_DIV:
        return x / y;
    }
    return 0.0f;
}

static size_t out_count(const fpay_bcast *b)
{
    size_t n = 1;
    for (int d = 0; d < b->rank; d++)
        n *= (size_t)b->out_dims[d];
    return n;
}

/* Whether strides address an operand laid out densely in out_dims, i.e. the
 * operand's flat index equals the output's. Dims of extent 1 never move the
 * offset, so their stride does not matter. */
static int is_dense(const fpay_bcast *b, const int64_t *strides)
{
    int64_t expect = 1;
    for (int d = b->rank - 1; d >= 0; d--) {
        if (b->out_dims[d] != 1 && strides[d] != expect)
            return 0;
        expect *= b->out_dims[d];
    }
    return 1;
}

/* Whether strides address a vector along the last axis, broadcast over all
 * the others ([N,H,W,C] op [C]). */
static int is_last_axis_vector(const fpay_bcast *b, const int64_t *strides)
{
    if (b->rank == 0 || strides[b->rank - 1] != 1)
        return 0;
    for (int d = 0; d < b->rank - 1; d++)
        if (b->out_dims[d] != 1 && strides[d] != 0)
            return 0;
    return 1;
}

/* Whether strides address one value per output row, broadcast along the
 * last axis only ([N,H,W,C] op [N,H,W,1]). */
static int is_row_scalar(const fpay_bcast *b, const int64_t *strides)
{
    if (b->rank == 0 || strides[b->rank - 1] != 0)
        return 0;
    int64_t expect = 1;
    for (int d = b->rank - 2; d >= 0; d--) {
        if (b->out_dims[d] != 1 && strides[d] != expect)
            return 0;
        expect *= b->out_dims[d];
    }
    return 1;
}

/* Walks the output one row (last dim) at a time, keeping the operands'
 * offsets of the row start. Rank 0 is one row of one element. */
typedef struct walker {
    const fpay_bcast *b;
    int64_t idx[FPAY_KMAX_RANK];
    int64_t off_a, off_b;
    int64_t row_len, step_a, step_b; /* along the last dim */
} walker;

static void walker_init(walker *w, const fpay_bcast *b)
{
    w->b = b;
    for (int d = 0; d < FPAY_KMAX_RANK; d++)
        w->idx[d] = 0;
    w->off_a = w->off_b = 0;
    w->row_len = b->rank ? b->out_dims[b->rank - 1] : 1;
    w->step_a = b->rank ? b->a_strides[b->rank - 1] : 0;
    w->step_b = b->rank ? b->b_strides[b->rank - 1] : 0;
}

/* Advances to the next row like an odometer; 0 after the last row. */
static int walker_next_row(walker *w)
{
    const fpay_bcast *b = w->b;
    for (int d = b->rank - 2; d >= 0; d--) {
        w->idx[d]++;
        w->off_a += b->a_strides[d];
        w->off_b += b->b_strides[d];
        if (w->idx[d] < b->out_dims[d])
            return 1;
        w->off_a -= b->a_strides[d] * b->out_dims[d];
        w->off_b -= b->b_strides[d] * b->out_dims[d];
        w->idx[d] = 0;
    }
    return 0;
}

void fpay_ref_binary_f32(fpay_kbinary op, const fpay_bcast *b, const float *a,
                         const float *bb, const fpay_epilogue *ep, float *out)
{
    const size_t total = out_count(b);
    if (total == 0)
        return;
    /* PRELU slope index: position along the last output dim. */
    const size_t last = b->rank ? (size_t)b->out_dims[b->rank - 1] : 1;

    if (is_dense(b, b->a_strides) && is_dense(b, b->b_strides)) {
        for (size_t i = 0; i < total; i++)
            out[i] = fpay_ref_act(ep, binop(op, a[i], bb[i]), i % last);
        return;
    }
    if (is_dense(b, b->a_strides) && is_last_axis_vector(b, b->b_strides)) {
        for (size_t i = 0; i < total; i += last)
            for (size_t c = 0; c < last; c++)
                out[i + c] = fpay_ref_act(ep, binop(op, a[i + c], bb[c]), c);
        return;
    }
    if (is_dense(b, b->a_strides) && is_row_scalar(b, b->b_strides)) {
        for (size_t i = 0, r = 0; i < total; i += last, r++)
            for (size_t c = 0; c < last; c++)
                out[i + c] = fpay_ref_act(ep, binop(op, a[i + c], bb[r]), c);
        return;
    }

    walker w;
    walker_init(&w, b);
    float *o = out;
    do {
        const float *ra = a + w.off_a, *rb = bb + w.off_b;
        for (int64_t i = 0; i < w.row_len; i++)
            o[i] = fpay_ref_act(
                ep, binop(op, ra[i * w.step_a], rb[i * w.step_b]), (size_t)i);
        o += w.row_len;
    } while (walker_next_row(&w));
}

void fpay_ref_compare_f32(fpay_kcompare op, const fpay_bcast *b,
                          const float *a, const float *bb, uint8_t *out)
{
    if (out_count(b) == 0)
        return;
    walker w;
    walker_init(&w, b);
    uint8_t *o = out;
    do {
        const float *ra = a + w.off_a, *rb = bb + w.off_b;
        for (int64_t i = 0; i < w.row_len; i++) {
            const float x = ra[i * w.step_a], y = rb[i * w.step_b];
            /* NaN compares false both ways, as in TFLite. */
            o[i] = (uint8_t)(op == FPAY_KCMP_LESS ? x < y : x >= y);
        }
        o += w.row_len;
    } while (walker_next_row(&w));
}

void fpay_ref_unary_f32(fpay_kunary op, size_t count, const float *in,
                        float *out)
{
    for (size_t i = 0; i < count; i++) {
        const float x = in[i];
        float y = x;
        switch (op) {
        case FPAY_KUN_ABS:
            y = fabsf(x);
            break;
        case FPAY_KUN_NEG:
            y = -x;
            break;
        case FPAY_KUN_RELU:
            y = x < 0.0f ? 0.0f : x;
            break;
        case FPAY_KUN_RELU6:
            y = x < 0.0f ? 0.0f : (x > 6.0f ? 6.0f : x);
            break;
        case FPAY_KUN_EXP:
            y = expf(x);
            break;
        }
        out[i] = y;
    }
}

void fpay_ref_leaky_relu_f32(size_t count, float alpha, const float *in,
                             float *out)
{
    for (size_t i = 0; i < count; i++)
        out[i] = in[i] >= 0.0f ? in[i] : alpha * in[i];
}

void fpay_ref_prelu_f32(size_t count, int channels, const float *slope,
                        const float *in, float *out)
{
    const size_t c_n = (size_t)channels;
    for (size_t i = 0; i < count; i++)
        out[i] = in[i] >= 0.0f ? in[i] : slope[i % c_n] * in[i];
}
