/*
 * align.c - image geometry of the pipeline: box crops resized as Android's
 * Bitmap.createBitmap(..., filter=true) (MTCNN's 24/48 crops, the 256x256
 * liveness crop), and the similarity warp of a face onto the ArcFace 112x112
 * template.
 *
 * Alignment: the similarity transform (scale, rotation, translation; no
 * reflection) that maps the 5 detected landmarks onto the template in the
 * least-squares sense. For a similarity in 2-D, Umeyama's SVD solution has a
 * closed form: with centred points s_i (image) and d_i (template),
 *   a = sum(s_i . d_i), b = sum(s_i x d_i), v = sum |s_i|^2,
 *   scale*cos = a / v, scale*sin = b / v,
 * which is what skimage's SimilarityTransform.estimate (used by insightface's
 * norm_crop) returns. Pixel centres are at integer coordinates, as
 * cv2.warpAffine, and pixels that fall outside the image are black (the
 * warp itself: fpay_u8_warp_affine_* in kernels/, fpay_kernels.h).
 */
#include "face_internal.h"

#include "fpay_simd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const float arcface_template[10] = {
    38.2946f, 51.6963f, 73.5318f, 51.5014f, 56.0252f,
    71.7366f, 41.5493f, 92.3655f, 70.7299f, 92.2041f,
};

fpay_status fpay_crop_resize(const fpay_image *img, int x0, int y0, int bw,
                             int bh, int out_w, int out_h, uint8_t *out)
{
    if (!img || !img->pixels || img->width <= 0 || img->height <= 0 || bw <= 0 ||
        bh <= 0 || out_w <= 0 || out_h <= 0 || !out)
        return FPAY_INVALID_ARGUMENT;
    if (x0 >= 0 && y0 >= 0 && (int64_t)x0 + bw <= img->width &&
        (int64_t)y0 + bh <= img->height) {
        fpay_image view = {bw, bh, img->stride,
                           img->pixels + (size_t)y0 * (size_t)img->stride + (size_t)x0 * 3};
        return fpay_image_resize_bilinear(&view, out_w, out_h, out);
    }
    /* The box leaves the image: copy it with black padding first. */
    if ((int64_t)bw * bh > (int64_t)1 << 26)
        return FPAY_LIMIT_EXCEEDED;
    uint8_t *tmp = calloc((size_t)bw * (size_t)bh, 3);
    if (!tmp)
        return FPAY_OUT_OF_MEMORY;
    for (int y = 0; y < bh; y++) {
        int64_t sy = (int64_t)y0 + y;
        if (sy < 0 || sy >= img->height)
            continue;
        int64_t xa = x0 < 0 ? -(int64_t)x0 : 0;
        int64_t xb = (int64_t)img->width - x0;
        if (xb > bw)
            xb = bw;
        if (xa >= xb)
            continue;
        memcpy(tmp + ((size_t)y * (size_t)bw + (size_t)xa) * 3,
               img->pixels + (size_t)sy * (size_t)img->stride + (size_t)(x0 + xa) * 3,
               (size_t)(xb - xa) * 3);
    }
    fpay_image view = {bw, bh, bw * 3, tmp};
    fpay_status st = fpay_image_resize_bilinear(&view, out_w, out_h, out);
    free(tmp);
    return st;
}

/* Least-squares similarity src -> dst over n points: dst = [c -s; s c] src + t. */
static int similarity_estimate(const float *src, const float *dst, int n, double *c,
                               double *s, double *tx, double *ty)
{
    double msx = 0, msy = 0, mdx = 0, mdy = 0;
    for (int i = 0; i < n; i++) {
        msx += src[2 * i];
        msy += src[2 * i + 1];
        mdx += dst[2 * i];
        mdy += dst[2 * i + 1];
    }
    msx /= n;
    msy /= n;
    mdx /= n;
    mdy /= n;
    double a = 0, b = 0, v = 0;
    for (int i = 0; i < n; i++) {
        double sx = src[2 * i] - msx, sy = src[2 * i + 1] - msy;
        double dx = dst[2 * i] - mdx, dy = dst[2 * i + 1] - mdy;
        a += sx * dx + sy * dy;
        b += sx * dy - sy * dx;
        v += sx * sx + sy * sy;
    }
    if (!(v > 1e-9))
        return -1;
    *c = a / v;
    *s = b / v;
    *tx = mdx - (*c * msx - *s * msy);
    *ty = mdy - (*s * msx + *c * msy);
    return 0;
}

fpay_status fpay_face_align(const fpay_image *img, const float landmarks[10],
                            uint8_t *out, float m[6])
{
    if (!img || !img->pixels || img->width <= 0 || img->height <= 0 ||
        img->stride < 3 * img->width || !landmarks || !out)
        return FPAY_INVALID_ARGUMENT;
    for (int i = 0; i < 10; i++)
        if (!isfinite(landmarks[i]))
            return FPAY_INVALID_ARGUMENT;
    double c, s, tx, ty;
    if (similarity_estimate(landmarks, arcface_template, 5, &c, &s, &tx, &ty))
        return FPAY_INVALID_ARGUMENT; /* all landmarks on one point */
    /* Inverse: template -> image. */
    double k = c * c + s * s;
    if (!(k > 1e-12))
        return FPAY_INVALID_ARGUMENT;
    double ic = c / k, is = -s / k;
    double itx = -(ic * tx - is * ty), ity = -(is * tx + ic * ty);
    if (m) {
        m[0] = (float)ic;
        m[1] = (float)-is;
        m[2] = (float)itx;
        m[3] = (float)is;
        m[4] = (float)ic;
        m[5] = (float)ity;
    }
    /* The warp kernel (fpay_ref_u8_warp_affine and its SIMD versions,
     * bit-exact with it): x = (ic u + (-is) v) + itx is the same double as
     * ic u - is v + itx, so the bytes are those of the loop it replaced. */
    const int S = FPAY_ALIGNED_SIDE;
    const fpay_warp_args wa = {img->pixels, img->width, img->height, (size_t)img->stride,
                               {ic, -is, itx, is, ic, ity}, out, S, S, (size_t)S * 3};
    fpay_u8_warp_affine_run(fpay_image_isa(), &wa);
    return FPAY_OK;
}
