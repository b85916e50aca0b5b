/*
 * fully_connected_ref.c - reference fully connected layer.
 *
 * Each output accumulates in float from 0 over in_features in order, then
 * adds the bias, then applies the activation; other kernels are judged
 * against exactly this order (see fpay_kernels.h).
 */
#include "fpay_kernels.h"
#include "ref_act.h"

void fpay_ref_fully_connected_f32(int rows, int in_features, int units,
                                  const float *in, const float *weights,
                                  const float *bias, const fpay_epilogue *ep,
                                  float *out)
{
    const size_t k_n = (size_t)in_features;
    for (int r = 0; r < rows; r++) {
        const float *x = in + (size_t)r * k_n;
        float *o = out + (size_t)r * (size_t)units;
        for (int u = 0; u < units; u++) {
            const float *w = weights + (size_t)u * k_n;
            float acc = 0.0f;
            for (size_t k = 0; k < k_n; k++)
                acc += x[k] * w[k];
            if (bias)
                acc += bias[u];
            o[u] = fpay_ref_act(ep, acc, (size_t)u);
        }
    }
}
