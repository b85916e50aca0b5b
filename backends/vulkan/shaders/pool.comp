// pool.comp - MAX_POOL_2D and AVERAGE_POOL_2D (NHWC), one invocation per
// output element, as kernels/ref/pool2d_ref.c: the window is clipped to the
// image (padded cells take no part: a max never sees a padding zero, an
// average divides by the cells inside the image), max seeded with -inf and
// updated only on '>' (NaN skipped), the average summed in window row-major
// order then divided once; an empty window gives 0. Then the clamp
// activation (pools carry only RELU/RELU6/RELU_N1_TO_1).
#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(push_constant) uniform PC {
    int N, H, W, C, OH, OW;
    int FH, FW, sh, sw, pt, pl;
    uint avg;
    uint act;
    uint total;
} pc;

void main()
{
    uint i = fpay_gid();
    if (i >= pc.total)
        return;
    int c = int(i % uint(pc.C));
    uint r = i / uint(pc.C);
    int ox = int(r % uint(pc.OW));
    r /= uint(pc.OW);
    int oy = int(r % uint(pc.OH));
    int n = int(r / uint(pc.OH));
    int y0 = oy * pc.sh - pc.pt, x0 = ox * pc.sw - pc.pl;
    int y1 = min(y0 + pc.FH, pc.H), x1 = min(x0 + pc.FW, pc.W);
    y0 = max(y0, 0);
    x0 = max(x0, 0);
    float v = 0.0;
    if (y0 < y1 && x0 < x1) {
        if (pc.avg != 0u) {
            for (int y = y0; y < y1; y++)
                for (int x = x0; x < x1; x++)
                    v += LX(uint(((n * pc.H + y) * pc.W + x) * pc.C + c));
            v = v / float((y1 - y0) * (x1 - x0));
        } else {
            v = uintBitsToFloat(0xff800000u); // -inf
            for (int y = y0; y < y1; y++)
                for (int x = x0; x < x1; x++) {
                    float e = LX(uint(((n * pc.H + y) * pc.W + x) * pc.C + c));
                    if (e > v)
                        v = e;
                }
        }
    }
    SY(i, fpay_act(v, pc.act, 0.0, 0.0));
}
