/*
 * image_ref.c - reference image operations of the face pipeline: bilinear
 * resize (MTCNN's pyramid and box crops, the liveness crop), affine warp
 * (alignment onto the ArcFace template) and normalisation of bytes to
 * float (every net's input). Moved here from core/src/image.c and
 * core/src/face/{align,mtcnn,embed,liveness}.c without changing a single
 * operation, so the pipeline's outputs did not move by a bit.
 *
 * Compiled with -ffp-contract=off (kernels/CMakeLists.txt): the SIMD
 * versions (kernels/x86/image_*.inc) reproduce these bit for bit, which
 * holds only if neither side fuses a multiply into an add.
 */
#include "fpay_kernels.h"

#include <math.h>

void fpay_bilinear_tap(int i, int in_n, int out_n, int *i0, int *i1, double *frac)
{
    const double scale = (double)in_n / (double)out_n;
    double s = ((double)i + 0.5) * scale - 0.5;
    if (s < 0.0)
        s = 0.0;
    if (s > (double)(in_n - 1))
        s = (double)(in_n - 1);
    int b = (int)s; /* s >= 0, so truncation is floor */
    *i0 = b;
    *i1 = b + 1 < in_n ? b + 1 : b;
    *frac = s - (double)b;
}

void fpay_ref_u8_resize_bilinear(const uint8_t *in, int in_w, int in_h, size_t in_stride,
                                 uint8_t *out, int out_w, int out_h, size_t out_stride,
                                 int row_begin, int row_end)
{
    for (int y = row_begin; y < row_end; y++) {
        int y0, y1;
        double fy;
        fpay_bilinear_tap(y, in_h, out_h, &y0, &y1, &fy);
        const uint8_t *r0 = in + (size_t)y0 * in_stride;
        const uint8_t *r1 = in + (size_t)y1 * in_stride;
        uint8_t *d = out + (size_t)y * out_stride;
        for (int x = 0; x < out_w; x++) {
            int x0, x1;
            double fx;
            fpay_bilinear_tap(x, in_w, out_w, &x0, &x1, &fx);
            for (int ch = 0; ch < 3; ch++) {
                double top = (1.0 - fx) * r0[x0 * 3 + ch] + fx * r0[x1 * 3 + ch];
                double bot = (1.0 - fx) * r1[x0 * 3 + ch] + fx * r1[x1 * 3 + ch];
                double v = (1.0 - fy) * top + fy * bot;
                /* A convex combination of bytes stays in [0, 255] (within
                 * an ulp): round half up, clamped for that ulp. */
                v = floor(v + 0.5);
                d[x * 3 + ch] = (uint8_t)(v > 255.0 ? 255.0 : v);
            }
        }
    }
}

void fpay_ref_u8_warp_affine(const uint8_t *in, int in_w, int in_h, size_t in_stride,
                             const double m[6], uint8_t *out, int out_w, int out_h,
                             size_t out_stride, int row_begin, int row_end)
{
    (void)out_h;
    const int W = in_w, H = in_h;
    for (int v = row_begin; v < row_end; v++) {
        for (int u = 0; u < out_w; u++) {
            double x = m[0] * u + m[1] * v + m[2];
            double y = m[3] * u + m[4] * v + m[5];
            uint8_t *d = out + (size_t)v * out_stride + (size_t)u * 3;
            double fx0 = floor(x), fy0 = floor(y);
            if (!(fx0 >= -1.0 && fx0 < W && fy0 >= -1.0 && fy0 < H)) {
                d[0] = d[1] = d[2] = 0;
                continue;
            }
            int x0 = (int)fx0, y0 = (int)fy0;
            double fx = x - fx0, fy = y - fy0;
            double acc[3] = {0, 0, 0};
            for (int j = 0; j < 2; j++) {
                int yy = y0 + j;
                double wy = j ? fy : 1.0 - fy;
                if (yy < 0 || yy >= H || wy == 0.0)
                    continue;
                const uint8_t *r = in + (size_t)yy * in_stride;
                for (int i = 0; i < 2; i++) {
                    int xx = x0 + i;
                    double wx = i ? fx : 1.0 - fx;
                    if (xx < 0 || xx >= W || wx == 0.0)
                        continue;
                    for (int ch = 0; ch < 3; ch++)
                        acc[ch] += wx * wy * r[xx * 3 + ch];
                }
            }
            for (int ch = 0; ch < 3; ch++) {
                double q = floor(acc[ch] + 0.5);
                d[ch] = (uint8_t)(q > 255.0 ? 255.0 : q < 0.0 ? 0.0 : q);
            }
        }
    }
}

void fpay_ref_u8_f32_normalize(const uint8_t *in, float sub, float div, float *out,
                               size_t begin, size_t end)
{
    for (size_t i = begin; i < end; i++)
        out[i] = ((float)in[i] - sub) / div;
}
