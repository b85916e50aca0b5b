// softmax.comp - SOFTMAX over the last axis, one invocation per row, as the
// decomposed TFLite graph (and kernels/ref/reduce_ref.c): max (updated only
// on '>'), exp(x - max) summed in order, then one divide per element. exp is
// the device's (a few ulp from libm's expf): tolerance 1e-5 (docs/vulkan.md).
#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(push_constant) uniform PC {
    uint rows, cols;
} pc;

void main()
{
    uint r = fpay_gid();
    if (r >= pc.rows)
        return;
    uint b = r * pc.cols;
    float m = uintBitsToFloat(0xff800000u); // -inf
    for (uint c = 0u; c < pc.cols; c++)
        if (LX(b + c) > m)
            m = LX(b + c);
    float sum = 0.0;
    for (uint c = 0u; c < pc.cols; c++) {
        float e = exp(LX(b + c) - m);
#ifndef FP16
        Y[b + c] = e;
#endif
        sum += e;
    }
    // fp16: exp is recomputed rather than read back from Y, which would
    // round each term to fp16 once more before the divide.
    for (uint c = 0u; c < pc.cols; c++)
#ifdef FP16
        SY(b + c, exp(LX(b + c) - m) / sum);
#else
        Y[b + c] = Y[b + c] / sum;
#endif
}
