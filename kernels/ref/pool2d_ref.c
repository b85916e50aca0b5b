/*
 * pool2d_ref.c - reference max and average pooling (NHWC).
 *
 * Windows are clipped to the image: padded cells take no part at all, so a
 * max never sees a padding zero and an average divides by the number of
 * cells actually inside the image (TFLite's AVERAGE_POOL_2D does the same).
 * A window with no cell inside the image cannot come out of shape inference
 * (SAME padding is always smaller than the filter); it yields 0 here rather
 * than -inf or 0/0.
 */
#include "fpay_kernels.h"

#include <math.h>

/* Clips the window starting at o * stride - pad to [0, size). */
static void clip_window(int o, int stride, int pad, int filter, int size,
                        int *lo, int *hi)
{
    const int start = o * stride - pad;
    int a = start, b = start + filter;
    if (a < 0)
        a = 0;
    if (b > size)
        b = size;
    *lo = a;
    *hi = b;
}

void fpay_ref_max_pool2d_f32(const fpay_pool_params *p, const float *in,
                             float *out)
{
    const int c_n = p->channels;
    const size_t in_row = (size_t)p->in_w * (size_t)c_n;
    const size_t in_img = (size_t)p->in_h * in_row;
    float *o = out;
    for (int n = 0; n < p->batch; n++) {
        const float *img = in + (size_t)n * in_img;
        for (int oy = 0; oy < p->out_h; oy++) {
            int y0, y1;
            clip_window(oy, p->stride_h, p->pad_top, p->filter_h, p->in_h,
                        &y0, &y1);
            for (int ox = 0; ox < p->out_w; ox++) {
                int x0, x1;
                clip_window(ox, p->stride_w, p->pad_left, p->filter_w,
                            p->in_w, &x0, &x1);
                if (y0 >= y1 || x0 >= x1) {
                    for (int c = 0; c < c_n; c++)
                        o[c] = 0.0f;
                    o += c_n;
                    continue;
                }
                /* Seeded with -inf and updated only on '>', so NaN inputs
                 * are skipped as in TFLite's std::max scan. */
                for (int c = 0; c < c_n; c++)
                    o[c] = -INFINITY;
                for (int y = y0; y < y1; y++) {
                    for (int x = x0; x < x1; x++) {
                        const float *v = img + (size_t)y * in_row +
                                         (size_t)x * (size_t)c_n;
                        for (int c = 0; c < c_n; c++)
                            if (v[c] > o[c])
                                o[c] = v[c];
                    }
                }
                o += c_n;
            }
        }
    }
}

void fpay_ref_avg_pool2d_f32(const fpay_pool_params *p, const float *in,
                             float *out)
{
    const int c_n = p->channels;
    const size_t in_row = (size_t)p->in_w * (size_t)c_n;
    const size_t in_img = (size_t)p->in_h * in_row;
    float *o = out;
    for (int n = 0; n < p->batch; n++) {
        const float *img = in + (size_t)n * in_img;
        for (int oy = 0; oy < p->out_h; oy++) {
            int y0, y1;
            clip_window(oy, p->stride_h, p->pad_top, p->filter_h, p->in_h,
                        &y0, &y1);
            for (int ox = 0; ox < p->out_w; ox++) {
                int x0, x1;
                clip_window(ox, p->stride_w, p->pad_left, p->filter_w,
                            p->in_w, &x0, &x1);
                const int count =
                    (y1 > y0 && x1 > x0) ? (y1 - y0) * (x1 - x0) : 0;
                /* Sum in float in window row-major order, then one divide
                 * (not a multiply by 1/count, which rounds twice). */
                for (int c = 0; c < c_n; c++)
                    o[c] = 0.0f;
                for (int y = y0; y < y1; y++) {
                    for (int x = x0; x < x1; x++) {
                        const float *v = img + (size_t)y * in_row +
                                         (size_t)x * (size_t)c_n;
                        for (int c = 0; c < c_n; c++)
                            o[c] += v[c];
                    }
                }
                if (count > 0)
                    for (int c = 0; c < c_n; c++)
                        o[c] /= (float)count;
                o += c_n;
            }
        }
    }
}
