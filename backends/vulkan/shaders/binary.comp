// binary.comp - ADD / SUB / MUL with numpy broadcasting up to 4-D (operand
// strides are 0 along broadcast dims) and the fused activation; the PReLU
// slope is indexed by the position along the last output dim, as the
// reference kernel does. a is binding X, b binding B.
#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(push_constant) uniform PC {
    uint s_off;
    uint d0, d1, d2, d3;     // output dims, right-aligned to 4-D
    uint sa0, sa1, sa2, sa3; // operand strides in elements
    uint sb0, sb1, sb2, sb3;
    uint op;                 // 0 add, 1 sub, 2 mul
    uint act;
    float alpha;
    uint total;
} pc;

void main()
{
    uint i = fpay_gid();
    if (i >= pc.total)
        return;
    uint i3 = i % pc.d3, r = i / pc.d3;
    uint i2 = r % pc.d2;
    r /= pc.d2;
    uint i1 = r % pc.d1, i0 = r / pc.d1;
    float a = LX(i0 * pc.sa0 + i1 * pc.sa1 + i2 * pc.sa2 + i3 * pc.sa3);
    float b = LB(i0 * pc.sb0 + i1 * pc.sb1 + i2 * pc.sb2 + i3 * pc.sb3);
    float v = pc.op == 0u ? a + b : (pc.op == 1u ? a - b : a * b);
    float slope = pc.act == FPAY_ACT_PRELU ? LW(pc.s_off + i3) : 0.0;
    SY(i, fpay_act(v, pc.act, pc.alpha, slope));
}
