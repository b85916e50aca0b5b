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
        if (X[b + c] > m)
            m = X[b + c];
    float sum = 0.0;
    for (uint c = 0u; c < pc.cols; c++) {
        float e = exp(X[b + c] - m);
        Y[b + c] = e;
        sum += e;
    }
    for (uint c = 0u; c < pc.cols; c++)
        Y[b + c] = Y[b + c] / sum;
}
