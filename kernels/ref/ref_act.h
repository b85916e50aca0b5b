/*
 * ref_act.h - the fused-activation epilogue shared by the reference kernels.
 *
 * Private to kernels/ref. The comparisons are written so that NaN passes
 * through every clamp unchanged, as TFLite's std::max/std::min chain does.
 */
#ifndef FPAY_REF_ACT_H
#define FPAY_REF_ACT_H

#include "fpay_kernels.h"

/* x is the accumulator (taps, then bias, already summed); c is the output channel,
 * used only by PRELU. A NULL epilogue means no activation. */
static inline float fpay_ref_act(const fpay_epilogue *ep, float x, size_t c)
{
    if (!ep)
        return x;
    switch (ep->act) {
    case FPAY_KACT_NONE:
        return x;
    case FPAY_KACT_RELU:
        return x < 0.0f ? 0.0f : x;
    case FPAY_KACT_RELU_N1_TO_1:
        return x < -1.0f ? -1.0f : (x > 1.0f ? 1.0f : x);
    case FPAY_KACT_RELU6:
        return x < 0.0f ? 0.0f : (x > 6.0f ? 6.0f : x);
    case FPAY_KACT_PRELU:
        return x >= 0.0f ? x : ep->slope[c] * x;
    case FPAY_KACT_LEAKY_RELU:
        return x >= 0.0f ? x : ep->alpha * x;
    }
    return x;
}

#endif /* FPAY_REF_ACT_H */
