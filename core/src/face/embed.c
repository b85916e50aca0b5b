/*
 * embed.c - MobileFaceNet embeddings of aligned 112x112 crops, in one batch:
 * (p - 127.5) / 128 in RGB order (MobileFaceNet.kt via MyUtil.normalizeImage),
 * then L2-normalised with epsilon 1e-10 as MyUtil.l2Normalize.
 */
#include "face_internal.h"

#include "fpay_simd.h"

#include <math.h>
#include <stdlib.h>

fpay_status fpay_embed_run(fpay_session *s, int *batch, const uint8_t *crops, int n,
                           float *out, float *raw_norms, char *err, size_t err_len)
{
    const size_t per = (size_t)FPAY_ALIGNED_SIDE * FPAY_ALIGNED_SIDE * 3;
    if (!s || !crops || !out || n < 1 || n > 4096) {
        fpay_set_err(err, err_len, "embed: invalid arguments (n = %d)", n);
        return FPAY_INVALID_ARGUMENT;
    }
    fpay_status st;
    if (*batch != n) {
        if ((st = fpay_session_set_batch(s, n)) != FPAY_OK) {
            fpay_set_err(err, err_len, "embed: %s", fpay_session_errmsg(s));
            return st;
        }
        *batch = n;
    }
    float *in = malloc(per * (size_t)n * sizeof(float));
    if (!in) {
        fpay_set_err(err, err_len, "embed: out of memory for %d crops", n);
        return FPAY_OUT_OF_MEMORY;
    }
    fpay_u8_f32_normalize_run(fpay_image_isa(), crops, per * (size_t)n, 127.5f, 128.0f, in);
    st = fpay_session_set_input(s, 0, in, per * (size_t)n);
    if (st == FPAY_OK)
        st = fpay_session_run(s);
    free(in);
    if (st != FPAY_OK) {
        fpay_set_err(err, err_len, "embed: %s", fpay_session_errmsg(s));
        return st;
    }
    const float *e;
    size_t count;
    if ((st = fpay_session_output(s, 0, &e, &count)) != FPAY_OK ||
        count != (size_t)n * FPAY_EMBED_DIM) {
        fpay_set_err(err, err_len, "embed: model output is not %d x %d floats", n, FPAY_EMBED_DIM);
        return st != FPAY_OK ? st : FPAY_MODEL_UNSUPPORTED;
    }
    for (int i = 0; i < n; i++) {
        const float *r = e + (size_t)i * FPAY_EMBED_DIM;
        double ss = 0;
        for (int k = 0; k < FPAY_EMBED_DIM; k++)
            ss += (double)r[k] * r[k];
        double norm = sqrt(ss > 1e-10 ? ss : 1e-10);
        for (int k = 0; k < FPAY_EMBED_DIM; k++)
            out[(size_t)i * FPAY_EMBED_DIM + k] = (float)(r[k] / norm);
        if (raw_norms)
            raw_norms[i] = (float)sqrt(ss);
    }
    return FPAY_OK;
}

float fpay_embedding_cosine(const float *a, const float *b, int dim)
{
    if (!a || !b || dim <= 0)
        return 0.0f;
    double dot = 0, na = 0, nb = 0;
    for (int i = 0; i < dim; i++) {
        dot += (double)a[i] * b[i];
        na += (double)a[i] * a[i];
        nb += (double)b[i] * b[i];
    }
    if (!(na > 0) || !(nb > 0))
        return 0.0f;
    return (float)(dot / sqrt(na * nb));
}
