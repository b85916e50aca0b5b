/*
 * liveness.c - FaceAntiSpoofing.kt: a soft decision tree on a 256x256 crop.
 *
 * As FaceDetectionManager.checkLiveness: the face box is made square and kept
 * inside the image (Box.toSquareShape, Box.limitSquare), cropped as
 * MyUtil.crop does (right and bottom exclusive), scaled to 256x256 with
 * bilinear filtering, and first checked for sharpness with
 * FaceAntiSpoofing.laplacian (grey = (int)(0.3 R + 0.59 G + 0.11 B); count of
 * pixels whose 4-neighbour Laplacian exceeds 50). A crop below the count
 * gate is "too blurry" and the model does not run. Otherwise the model gets
 * RGB / 255 and score = sum_i |clss_pred[i]| * leaf_node_mask[i]; above the
 * threshold (0.2) the face is a suspected spoof.
 */
#include "face_internal.h"

#include "fpay_simd.h"

#include <math.h>
#include <stdlib.h>

#define AS_SIDE 256

int fpay_liveness_laplacian_count(const uint8_t *rgb)
{
    int *g = malloc(sizeof(int) * AS_SIDE * AS_SIDE);
    if (!g)
        return 0;
    for (int i = 0; i < AS_SIDE * AS_SIDE; i++) {
        const uint8_t *p = rgb + 3 * i;
        g[i] = (int)((float)p[0] * 0.3f + (float)p[1] * 0.59f + (float)p[2] * 0.11f) & 0xFF;
    }
    int score = 0;
    for (int x = 0; x < AS_SIDE - 2; x++)
        for (int y = 0; y < AS_SIDE - 2; y++) {
            int r = g[(x) * AS_SIDE + y + 1] + g[(x + 1) * AS_SIDE + y] -
                    4 * g[(x + 1) * AS_SIDE + y + 1] + g[(x + 1) * AS_SIDE + y + 2] +
                    g[(x + 2) * AS_SIDE + y + 1];
            if (r > 50)
                score++;
        }
    free(g);
    return score;
}

fpay_status fpay_liveness_run(fpay_session *s, const fpay_image *img, const fpay_face *face,
                              float threshold, int min_laplacian_count, fpay_liveness *out,
                              char *err, size_t err_len)
{
    out->state = FPAY_LIVENESS_NOT_RUN;
    out->score = 0.0f;
    out->laplacian_count = 0;
    int b[4] = {(int)face->x1, (int)face->y1, (int)face->x2, (int)face->y2};
    const int W = img->width, H = img->height;
    int bw = b[2] - b[0] + 1, bh = b[3] - b[1] + 1;
    if (bw > bh) {
        b[1] -= (bw - bh) / 2;
        b[3] += (bw - bh + 1) / 2;
    } else {
        b[0] -= (bh - bw) / 2;
        b[2] += (bh - bw + 1) / 2;
    }
    if (b[0] < 0 || b[1] < 0) {
        int len = -b[0] > -b[1] ? -b[0] : -b[1];
        b[0] += len;
        b[1] += len;
    }
    if (b[2] >= W || b[3] >= H) {
        int len = b[2] - W + 1 > b[3] - H + 1 ? b[2] - W + 1 : b[3] - H + 1;
        b[2] -= len;
        b[3] -= len;
    }
    /* MyUtil.crop: width = right - left. A box larger than the image stays
     * partly outside and is padded with black. */
    int cw = b[2] - b[0], ch = b[3] - b[1];
    if (cw < 1)
        cw = 1;
    if (ch < 1)
        ch = 1;
    uint8_t *crop = malloc((size_t)AS_SIDE * AS_SIDE * 3);
    float *in = malloc(sizeof(float) * AS_SIDE * AS_SIDE * 3);
    fpay_status st = FPAY_OK;
    if (!crop || !in) {
        fpay_set_err(err, err_len, "liveness: out of memory");
        st = FPAY_OUT_OF_MEMORY;
        goto done;
    }
    if ((st = fpay_crop_resize(img, b[0], b[1], cw, ch, AS_SIDE, AS_SIDE, crop)) != FPAY_OK) {
        fpay_set_err(err, err_len, "liveness: crop failed (%s)", fpay_status_str(st));
        goto done;
    }
    out->laplacian_count = fpay_liveness_laplacian_count(crop);
    if (out->laplacian_count < min_laplacian_count) {
        out->state = FPAY_LIVENESS_TOO_BLURRY;
        goto done;
    }
    fpay_u8_f32_normalize_run(fpay_image_isa(), crop, (size_t)AS_SIDE * AS_SIDE * 3, 0.0f,
                              255.0f, in);
    if ((st = fpay_session_set_input(s, 0, in, (size_t)AS_SIDE * AS_SIDE * 3)) != FPAY_OK ||
        (st = fpay_session_run(s)) != FPAY_OK) {
        fpay_set_err(err, err_len, "liveness: %s", fpay_session_errmsg(s));
        goto done;
    }
    int i_cls = fpay_face_output_index(s, "Identity");
    int i_leaf = fpay_face_output_index(s, "Identity_1");
    const float *cls, *leaf;
    size_t nc = 0, nl = 0;
    if (i_cls < 0 || i_leaf < 0 || fpay_session_output(s, i_cls, &cls, &nc) != FPAY_OK ||
        fpay_session_output(s, i_leaf, &leaf, &nl) != FPAY_OK || nc != 8 || nl != 8) {
        fpay_set_err(err, err_len, "liveness: model has no 8-wide outputs Identity, Identity_1");
        st = FPAY_MODEL_UNSUPPORTED;
        goto done;
    }
    float score = 0.0f;
    for (int i = 0; i < 8; i++)
        score += fabsf(cls[i]) * leaf[i];
    out->score = score;
    /* NaN counts as a spoof: liveness may only ever block. */
    out->state = score <= threshold ? FPAY_LIVENESS_PASSED : FPAY_LIVENESS_SPOOF;
done:
    free(crop);
    free(in);
    return st;
}
