// conv2d.comp - CONV_2D (NHWC input, OHWI weights) and DEPTHWISE_CONV_2D
// ([1,KH,KW,C*mult] weights, DEPTHWISE defined), one invocation per output
// element: taps, then bias, then the residual (input 3, binding B), then the
// activation (the reference kernels' order). The sum is fp32 in both
// variants (fp16 loads are widened first).
//
// Kernel size and strides are specialization constants (0: take the push
// constant): a pipeline per (KH, KW, stride) the network uses lets the
// compiler unroll the tap loops and fold the index arithmetic, while one
// pipeline still serves every channel count and image size.
#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(constant_id = 0) const int SC_KH = 0;
layout(constant_id = 1) const int SC_KW = 0;
layout(constant_id = 2) const int SC_SH = 0;
layout(constant_id = 3) const int SC_SW = 0;

layout(push_constant) uniform PC {
    uint w_off, b_off, s_off;
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
    const int KH = SC_KH > 0 ? SC_KH : pc.KH;
    const int KW = SC_KW > 0 ? SC_KW : pc.KW;
    const int SH = SC_SH > 0 ? SC_SH : pc.sh;
    const int SW = SC_SW > 0 ? SC_SW : pc.sw;
    int oc = int(i % uint(pc.OC));
    uint r = i / uint(pc.OC);
    int ox = int(r % uint(pc.OW));
    r /= uint(pc.OW);
    int oy = int(r % uint(pc.OH));
    int n = int(r / uint(pc.OH));
    int iy0 = oy * SH - pc.pt, ix0 = ox * SW - pc.pl;
    float acc = 0.0;
#ifdef DEPTHWISE
    int ic = oc / pc.mult;
#endif
    for (int ky = 0; ky < KH; ky++) {
        int iy = iy0 + ky * pc.dh;
        if (iy < 0 || iy >= pc.H)
            continue;
        for (int kx = 0; kx < KW; kx++) {
            int ix = ix0 + kx * pc.dw;
            if (ix < 0 || ix >= pc.W)
                continue;
            uint xb = uint(((n * pc.H + iy) * pc.W + ix) * pc.C);
#ifdef DEPTHWISE
            acc += LX(xb + uint(ic)) * LW(pc.w_off + uint((ky * KW + kx) * pc.OC + oc));
#else
            uint wb = pc.w_off + uint(((oc * KH + ky) * KW + kx) * pc.C);
            for (int c = 0; c < pc.C; c++)
                acc += LX(xb + uint(c)) * LW(wb + uint(c));
#endif
        }
    }
    if ((pc.flags & 1u) != 0u)
        acc += LW(pc.b_off + uint(oc));
    if ((pc.flags & 2u) != 0u)
        acc += LB(i);
    float slope = pc.act == FPAY_ACT_PRELU ? LW(pc.s_off + uint(oc)) : 0.0;
    SY(i, fpay_act(acc, pc.act, pc.alpha, slope));
}
