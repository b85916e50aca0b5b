/*
 * reduce_ref.c - reference reductions, softmax and L2 normalisation.
 *
 * Sums run in float in increasing input index order, the order a plain loop
 * over the tensor visits them.
 */
#include "fpay_kernels.h"

#include <math.h>

void fpay_ref_reduce_f32(fpay_kreduce op, int rank, const int64_t *dims,
                         unsigned axes_mask, const float *in, float *out)
{
    size_t in_n = 1, out_n = 1;
    for (int d = 0; d < rank; d++) {
        in_n *= (size_t)dims[d];
        if (!(axes_mask & (1u << d)))
            out_n *= (size_t)dims[d];
    }
    /* max seeds with -inf and updates only on '>', so NaN is skipped as in
     * TFLite's std::max scan; an empty reduction leaves the seed. */
    for (size_t j = 0; j < out_n; j++)
        out[j] = op == FPAY_KRED_MAX ? -INFINITY : 0.0f;

    /* Each input element's output position: its coordinates on the kept
     * axes, in row-major order. Decoding every index by division is slow but
     * leaves no room for an off-by-one, and the reductions in the models are
     * small. */
    for (size_t i = 0; i < in_n; i++) {
        size_t rem = i, o = 0, o_stride = 1;
        for (int d = rank - 1; d >= 0; d--) {
            const size_t extent = (size_t)dims[d];
            const size_t coord = rem % extent;
            rem /= extent;
            if (!(axes_mask & (1u << d))) {
                o += coord * o_stride;
                o_stride *= extent;
            }
        }
        if (op == FPAY_KRED_MAX) {
            if (in[i] > out[o])
                out[o] = in[i];
        } else {
            out[o] += in[i];
        }
    }
}

void fpay_ref_softmax_f32(size_t rows, int cols, const float *in, float *out)
{
    const size_t c_n = (size_t)cols;
    for (size_t r = 0; r < rows; r++) {
        const float *x = in + r * c_n;
        float *y = out + r * c_n;
        /* The decomposed graph: REDUCE_MAX, SUB, EXP, SUM, DIV, each a
         * separate float op, so this is reproducible bit for bit. */
        float m = -INFINITY;
        for (size_t c = 0; c < c_n; c++)
            if (x[c] > m)
                m = x[c];
        float sum = 0.0f;
        for (size_t c = 0; c < c_n; c++) {
            y[c] = expf(x[c] - m);
            sum += y[c];
        }
        for (size_t c = 0; c < c_n; c++)
            y[c] = y[c] / sum;
    }
}

void fpay_ref_l2_normalize_f32(size_t rows, int cols, float epsilon,
                               const float *in, float *out)
{
    const size_t c_n = (size_t)cols;
    for (size_t r = 0; r < rows; r++) {
        const float *x = in + r * c_n;
        float *y = out + r * c_n;
        float ss = 0.0f;
        for (size_t c = 0; c < c_n; c++)
            ss += x[c] * x[c];
        const float norm = sqrtf(ss > epsilon ? ss : epsilon);
        for (size_t c = 0; c < c_n; c++)
            y[c] = x[c] / norm;
    }
}
