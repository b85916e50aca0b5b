// epilogue.glsl - the fused activation, as kernels/ref/ref_act.h applies it
// (values of fpay_act in facepay/backend.h). The comparisons are written the
// same way, so NaN passes through every clamp unchanged.
const uint FPAY_ACT_NONE = 0u;
const uint FPAY_ACT_RELU = 1u;
const uint FPAY_ACT_RELU_N1_TO_1 = 2u;
const uint FPAY_ACT_RELU6 = 3u;
const uint FPAY_ACT_PRELU = 4u;
const uint FPAY_ACT_LEAKY_RELU = 5u;

float fpay_act(float x, uint act, float alpha, float slope)
{
    if (act == FPAY_ACT_RELU)
        return x < 0.0 ? 0.0 : x;
    if (act == FPAY_ACT_RELU_N1_TO_1)
        return x < -1.0 ? -1.0 : (x > 1.0 ? 1.0 : x);
    if (act == FPAY_ACT_RELU6)
        return x < 0.0 ? 0.0 : (x > 6.0 ? 6.0 : x);
    if (act == FPAY_ACT_PRELU)
        return x >= 0.0 ? x : slope * x;
    if (act == FPAY_ACT_LEAKY_RELU)
        return x >= 0.0 ? x : alpha * x;
    return x;
}
