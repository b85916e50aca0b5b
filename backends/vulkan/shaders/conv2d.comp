// conv2d.comp - CONV_2D (NHWC input, OHWI weights) and DEPTHWISE_CONV_2D
// ([1,KH,KW,C*mult] weights, DEPTHWISE defined), one invocation per output
// element: taps, then bias, then the residual (input 3), then the activation
// (the reference kernels' order).
#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(push_constant) uniform PC {
    uint x_off, y_off, r_off, w_off, b_off, s_off;
    int N, H, W, C, OH, OW, OC;
    int KH, KW, sh, sw, dh, dw, pt, pl, mult;
    uint flags; // 1: bias, 2: residual
    uint act;
    float alpha;
    uint total;
} pc;

void main()
{
    uint i = fpay_gid();
    if (i >= pc.total)
        return;
    int oc = int(i % uint(pc.OC));
    uint r = i / uint(pc.OC);
    int ox = int(r % uint(pc.OW));
    r /= uint(pc.OW);
    int oy = int(r % uint(pc.OH));
    int n = int(r / uint(pc.OH));
    int iy0 = oy * pc.sh - pc.pt, ix0 = ox * pc.sw - pc.pl;
    float acc = 0.0;
#ifdef DEPTHWISE
    int ic = oc / pc.mult;
#endif
    for (int ky = 0; ky < pc.KH; ky++) {
        int iy = iy0 + ky * pc.dh;
        if (iy < 0 || iy >= pc.H)
            continue;
        for (int kx = 0; kx < pc.KW; kx++) {
            int ix = ix0 + kx * pc.dw;
            if (ix < 0 || ix >= pc.W)
                continue;
            uint xb = pc.x_off + uint(((n * pc.H + iy) * pc.W + ix) * pc.C);
#ifdef DEPTHWISE
            acc += A[xb + uint(ic)] * Wt[pc.w_off + uint((ky * pc.KW + kx) * pc.OC + oc)];
#else
            uint wb = pc.w_off + uint(((oc * pc.KH + ky) * pc.KW + kx) * pc.C);
            for (int c = 0; c < pc.C; c++)
                acc += A[xb + uint(c)] * Wt[wb + uint(c)];
#endif
        }
    }
    if ((pc.flags & 1u) != 0u)
        acc += Wt[pc.b_off + uint(oc)];
    if ((pc.flags & 2u) != 0u)
        acc += A[pc.r_off + i];
    float slope = pc.act == FPAY_ACT_PRELU ? Wt[pc.s_off + uint(oc)] : 0.0;
    A[pc.y_off + i] = fpay_act(acc, pc.act, pc.alpha, slope);
}
