// fc.comp - FULLY_CONNECTED: y[r][u] = act(sum_k x[r][k] * w[u][k] + bias[u])
// with weights [units, K] in Wt, rows = elements(x) / K (TFLite flattens the
// input to [-1, K]); the sum runs from 0 over k in order, then the bias, then
// the activation (PReLU slope indexed by u), as the reference kernel.
#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(push_constant) uniform PC {
    uint w_off, b_off, s_off;
    uint K, units;
    uint flags; // 1: bias
    uint act;
    float alpha;
    uint total;
} pc;

void main()
{
    uint i = fpay_gid();
    if (i >= pc.total)
        return;
    uint u = i % pc.units, r = i / pc.units;
    uint xb = r * pc.K, wb = pc.w_off + u * pc.K;
    float acc = 0.0;
    for (uint k = 0u; k < pc.K; k++)
        acc += LX(xb + k) * LW(wb + k);
    if ((pc.flags & 1u) != 0u)
        acc += LW(pc.b_off + u);
    float slope = pc.act == FPAY_ACT_PRELU ? LW(pc.s_off + u) : 0.0;
    SY(i, fpay_act(acc, pc.act, pc.alpha, slope));
}
