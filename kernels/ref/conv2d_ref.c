/*
 * conv2d_ref.c - reference full and depthwise 2-D convolution (NHWC).
 *
 * Every output is accumulated in float in one fixed order: from 0, the taps
 * ky, kx and, innermost, the input channels; then the bias is added; then the
 * activation. SIMD kernels are judged against this order, and the optimizer's
 * exact bias fusion relies on the bias coming last, so it must not change.
 * Taps that fall in the padding are skipped rather than multiplied by zero:
 * same result, less work.
 */
#include "fpay_kernels.h"
#include "ref_act.h"

/* Output channels computed together in the full convolution. Each one keeps
 * its own accumulator in the order above; interleaving four independent
 * chains only hides the latency of the float additions (the reference runs
 * multi-GMAC models in the tests, also under ASan). */
#define OC_BLOCK 4

void fpay_ref_conv2d_f32(const fpay_conv_params *p, const float *in,
                         const float *weights, const float *bias,
                         const fpay_epilogue *ep, float *out)
{
    const int in_h = p->in_h, in_w = p->in_w, in_c = p->in_c;
    const int out_c = p->out_c;
    const int kh = p->kernel_h, kw = p->kernel_w;
    const size_t in_row = (size_t)in_w * (size_t)in_c;
    const size_t in_img = (size_t)in_h * in_row;
    const size_t w_ky = (size_t)kw * (size_t)in_c;     /* one kernel row */
    const size_t w_oc = (size_t)kh * w_ky;             /* one output channel */
    float *o = out;

    for (int n = 0; n < p->batch; n++) {
        const float *img = in + (size_t)n * in_img;
        for (int oy = 0; oy < p->out_h; oy++) {
            const int iy0 = oy * p->stride_h - p->pad_top;
            for (int ox = 0; ox < p->out_w; ox++) {
                const int ix0 = ox * p->stride_w - p->pad_left;
                /* Range of kx whose column is inside the image, so the inner
                 * loops need no per-tap test on x. */
                int kx_lo = 0, kx_hi = kw;
                while (kx_lo < kw && ix0 + kx_lo * p->dilation_w < 0)
                    kx_lo++;
                while (kx_hi > kx_lo &&
                       ix0 + (kx_hi - 1) * p->dilation_w >= in_w)
                    kx_hi--;
                int oc = 0;
                for (; oc + OC_BLOCK <= out_c; oc += OC_BLOCK) {
                    const float *w0 = weights + (size_t)oc * w_oc;
                    const float *w1 = w0 + w_oc;
                    const float *w2 = w1 + w_oc;
                    const float *w3 = w2 + w_oc;
                    float a0 = 0.0f;
                    float a1 = 0.0f;
                    float a2 = 0.0f;
                    float a3 = 0.0f;
                    for (int ky = 0; ky < kh; ky++) {
                        const int iy = iy0 + ky * p->dilation_h;
                        if (iy < 0 || iy >= in_h || kx_lo >= kx_hi)
                            continue;
                        const float *row = img + (size_t)iy * in_row;
                        const size_t wrow = (size_t)ky * w_ky;
                        for (int kx = kx_lo; kx < kx_hi; kx++) {
                            const float *x =
                                row + (size_t)(ix0 + kx * p->dilation_w) *
                                          (size_t)in_c;
                            const size_t wo = wrow + (size_t)kx * (size_t)in_c;
                            const float *q0 = w0 + wo, *q1 = w1 + wo;
                            const float *q2 = w2 + wo, *q3 = w3 + wo;
                            for (int ci = 0; ci < in_c; ci++) {
                                const float v = x[ci];
                                a0 += v * q0[ci];
                                a1 += v * q1[ci];
                                a2 += v * q2[ci];
                                a3 += v * q3[ci];
                            }
                        }
                    }
                    if (bias) {
                        a0 += bias[oc];
                        a1 += bias[oc + 1];
                        a2 += bias[oc + 2];
                        a3 += bias[oc + 3];
                    }
                    o[oc] = fpay_ref_act(ep, a0, (size_t)oc);
                    o[oc + 1] = fpay_ref_act(ep, a1, (size_t)oc + 1);
                    o[oc + 2] = fpay_ref_act(ep, a2, (size_t)oc + 2);
                    o[oc + 3] = fpay_ref_act(ep, a3, (size_t)oc + 3);
                }
                /* The remaining (< OC_BLOCK) channels, one at a time. */
                for (; oc < out_c; oc++) {
                    const float *w0 = weights + (size_t)oc * w_oc;
                    float a0 = 0.0f;
                    for (int ky = 0; ky < kh; ky++) {
                        const int iy = iy0 + ky * p->dilation_h;
                        if (iy < 0 || iy >= in_h || kx_lo >= kx_hi)
                            continue;
                        const float *row = img + (size_t)iy * in_row;
                        const size_t wrow = (size_t)ky * w_ky;
                        for (int kx = kx_lo; kx < kx_hi; kx++) {
                            const float *x =
                                row + (size_t)(ix0 + kx * p->dilation_w) *
                                          (size_t)in_c;
                            const float *w =
                                w0 + wrow + (size_t)kx * (size_t)in_c;
                            for (int ci = 0; ci < in_c; ci++)
                                a0 += x[ci] * w[ci];
                        }
                    }
                    if (bias)
                        a0 += bias[oc];
                    o[oc] = fpay_ref_act(ep, a0, (size_t)oc);
                }
                o += out_c;
            }
        }
    }
}

void fpay_ref_dwconv2d_f32(const fpay_conv_params *p, const float *in,
                           const float *weights, const float *bias,
                           const fpay_epilogue *ep, float *out)
{
    const int in_h = p->in_h, in_w = p->in_w, in_c = p->in_c;
    const int mult = p->depth_multiplier;
    const int out_c = p->out_c; /* == in_c * mult */
    const size_t in_row = (size_t)in_w * (size_t)in_c;
    const size_t in_img = (size_t)in_h * in_row;
    float *o = out;

    for (int n = 0; n < p->batch; n++) {
        const float *img = in + (size_t)n * in_img;
        for (int oy = 0; oy < p->out_h; oy++) {
            const int iy0 = oy * p->stride_h - p->pad_top;
            for (int ox = 0; ox < p->out_w; ox++) {
                const int ix0 = ox * p->stride_w - p->pad_left;
                /* The output row doubles as the accumulators: no scratch
                 * memory, and each channel still sums its taps in ky, kx
                 * order before the bias. */
                for (int oc = 0; oc < out_c; oc++)
                    o[oc] = 0.0f;
                for (int ky = 0; ky < p->kernel_h; ky++) {
                    const int iy = iy0 + ky * p->dilation_h;
                    if (iy < 0 || iy >= in_h)
                        continue;
                    for (int kx = 0; kx < p->kernel_w; kx++) {
                        const int ix = ix0 + kx * p->dilation_w;
                        if (ix < 0 || ix >= in_w)
                            continue;
                        const float *x = img + (size_t)iy * in_row +
                                         (size_t)ix * (size_t)in_c;
                        const float *w =
                            weights +
                            ((size_t)ky * (size_t)p->kernel_w + (size_t)kx) *
                                (size_t)out_c;
                        if (mult == 1) {
                            for (int c = 0; c < out_c; c++)
                                o[c] += x[c] * w[c];
                        } else {
                            /* Output channel ic * mult + m reads input ic. */
                            for (int ic = 0; ic < in_c; ic++) {
                                float *oo = o + (size_t)ic * (size_t)mult;
                                const float *ww = w + (size_t)ic * (size_t)mult;
                                for (int m = 0; m < mult; m++)
                                    oo[m] += x[ic] * ww[m];
                            }
                        }
                    }
                }
                for (int oc = 0; oc < out_c; oc++)
                    o[oc] = fpay_ref_act(ep, bias ? o[oc] + bias[oc] : o[oc],
                                         (size_t)oc);
                o += out_c;
            }
        }
    }
}
