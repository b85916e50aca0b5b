/*
 * pipeline.c - the face pipeline's handle: configuration and profiles, model
 * loading, and the order of the stages (pipeline.h, docs/pipeline.md).
 */
#include "face_internal.h"
#include "model_pins.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct fpay_pipeline {
    fpay_pipeline_config cfg;
    char models_dir[1024];
    char backend[64];
    fpay_model *m_pnet, *m_rnet, *m_onet, *m_mfn, *m_as;
    fpay_session *pnet, *rnet, *onet, *mfn, *as;
    int mfn_batch;
    char mfn_sha[65];
    char err[512];
};

void fpay_pipeline_config_init(fpay_pipeline_config *c, fpay_camera_profile profile)
{
    if (!c)
        return;
    memset(c, 0, sizeof *c);
    c->struct_size = sizeof *c;
    c->models_dir = NULL;
    c->backend = NULL;
    c->threads = 0;
    fpay_image_limits_init(&c->limits);
    c->min_face_ratio = 0.2f;
    c->min_face_px = 0;
    c->pyramid_factor = 0.709f;
    c->pnet_threshold = 0.6f;
    c->rnet_threshold = 0.7f;
    c->onet_threshold = 0.7f;
    c->centre_weight = 0.5f;
    c->ambiguity_ratio = 0.5f;
    c->min_eye_distance = 28.0f;
    c->min_sharpness = 40.0f;
    c->min_brightness = 40.0f;
    c->max_brightness = 215.0f;
    c->max_yaw_deg = 35.0f;
    c->max_pitch_deg = 30.0f;
    c->max_roll_deg = 30.0f;
    c->edge_tolerance = 0.05f;
    c->liveness = 1;
    c->liveness_threshold = 0.2f;
    c->min_laplacian_count = 50;
    c->embed = 1;
    c->embed_rejected = 0;
    switch (profile) {
    case FPAY_CAMERA_KIOSK:
        c->min_eye_distance = 40.0f;
        c->min_sharpness = 60.0f;
        c->max_yaw_deg = 25.0f;
        c->max_pitch_deg = 20.0f;
        c->max_roll_deg = 20.0f;
        c->ambiguity_ratio = 0.4f;
        break;
    case FPAY_CAMERA_MOBILE:
        c->min_face_ratio = 0.15f;
        c->min_sharpness = 30.0f;
        c->max_yaw_deg = 40.0f;
        c->max_pitch_deg = 35.0f;
        c->max_roll_deg = 35.0f;
        c->min_laplacian_count = 30;
        break;
    case FPAY_CAMERA_DEFAULT:
    default:
        break;
    }
}

const char *fpay_face_result_str(fpay_face_result r)
{
    switch (r) {
    case FPAY_FACE_OK: return "ok";
    case FPAY_FACE_NO_FACE: return "no_face";
    case FPAY_FACE_AMBIGUOUS_MULTIPLE_FACES: return "ambiguous_multiple_faces";
    case FPAY_FACE_QUALITY_REJECTED: return "quality_rejected";
    case FPAY_FACE_SPOOF_SUSPECTED: return "spoof_suspected";
    case FPAY_FACE_LIVENESS_UNSURE: return "liveness_unsure";
    }
    return "unknown";
}

void fpay_quality_reasons_str(unsigned reasons, char *buf, size_t len)
{
    static const char *const names[] = {"too_small", "blurred", "too_dark",
                                        "too_bright", "pose", "cut_by_edge"};
    if (!buf || !len)
        return;
    buf[0] = 0;
    size_t used = 0;
    if (!reasons) {
        snprintf(buf, len, "ok");
        return;
    }
    for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++)
        if (reasons & (1u << i)) {
            int k = snprintf(buf + used, len - used, "%s%s", used ? "," : "", names[i]);
            if (k < 0 || (size_t)k >= len - used)
                return;
            used += (size_t)k;
        }
}

static fpay_status set_err(fpay_pipeline *p, fpay_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static fpay_status set_err(fpay_pipeline *p, fpay_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err, sizeof p->err, fmt, ap);
    va_end(ap);
    return st;
}

/* The model file must be the one pinned in tools/models.sha256 (compiled
 * in as model_pins.h): a modified, truncated or substituted file is refused,
 * so a detector or liveness model swapped on disk cannot change what the
 * pipeline lets through. The generic loader (fpay_model_load_file) pins
 * nothing: the importer's tests feed it broken files on purpose. */
static fpay_status check_pin(const fpay_model *m, const char *file, const char *path,
                             char *err, size_t err_len)
{
    const char *want = NULL;
    for (size_t i = 0; i < sizeof fpay_model_pins / sizeof fpay_model_pins[0]; i++)
        if (strcmp(fpay_model_pins[i].file, file) == 0)
            want = fpay_model_pins[i].sha256;
    fpay_model_stats ms = {.struct_size = sizeof ms};
    if (!want || fpay_model_stats_get(m, &ms) != FPAY_OK) {
        fpay_set_err(err, err_len, "pipeline: %s: no pinned sha256 for this model", file);
        return FPAY_MODEL_MALFORMED;
    }
    if (strcmp(ms.sha256, want) != 0) {
        fpay_set_err(err, err_len,
                     "pipeline: %s: sha256 %.16s... is not the pinned %.16s... "
                     "(tools/models.sha256): refusing a modified or unknown model file",
                     path, ms.sha256, want);
        return FPAY_MODEL_MALFORMED;
    }
    return FPAY_OK;
}

static fpay_status load_one(fpay_pipeline *p, const char *file, fpay_model **m,
                            fpay_session **s, char *err, size_t err_len)
{
    char path[1200], e[400];
    snprintf(path, sizeof path, "%s/%s", p->models_dir, file);
    fpay_status st = fpay_model_load_file(path, FPAY_LOAD_DEFAULT, m, e, sizeof e);
    if (st != FPAY_OK) {
        fpay_set_err(err, err_len, "pipeline: %s", e);
        return st;
    }
    if ((st = check_pin(*m, file, path, err, err_len)) != FPAY_OK) {
        fpay_model_free(*m);
        *m = NULL;
        return st;
    }
    fpay_session_options o;
    fpay_session_options_init(&o);
    o.backend = p->backend[0] ? p->backend : NULL;
    o.threads = p->cfg.threads;
    st = fpay_session_create(*m, &o, s, e, sizeof e);
    if (st != FPAY_OK)
        fpay_set_err(err, err_len, "pipeline: %s: %s", file, e);
    return st;
}

static fpay_status check_config(const fpay_pipeline_config *c, char *err, size_t err_len)
{
    if (c->struct_size != sizeof *c) {
        fpay_set_err(err, err_len, "pipeline: config struct_size %zu, expected %zu "
                     "(call fpay_pipeline_config_init)", c->struct_size, sizeof *c);
        return FPAY_INVALID_ARGUMENT;
    }
    const struct { float v, lo, hi; const char *name; } r[] = {
        {c->min_face_ratio, 0.0f, 1.0f, "min_face_ratio"},
        {c->pyramid_factor, 0.1f, 0.95f, "pyramid_factor"},
        {c->pnet_threshold, 0.0f, 1.0f, "pnet_threshold"},
        {c->rnet_threshold, 0.0f, 1.0f, "rnet_threshold"},
        {c->onet_threshold, 0.0f, 1.0f, "onet_threshold"},
        {c->centre_weight, 0.0f, 1.0f, "centre_weight"},
        {c->ambiguity_ratio, 0.0f, 1.0f, "ambiguity_ratio"},
        {c->min_eye_distance, 0.0f, 10000.0f, "min_eye_distance"},
        {c->min_sharpness, 0.0f, 1e9f, "min_sharpness"},
        {c->min_brightness, 0.0f, 255.0f, "min_brightness"},
        {c->max_brightness, 0.0f, 255.0f, "max_brightness"},
        {c->max_yaw_deg, 0.0f, 90.0f, "max_yaw_deg"},
        {c->max_pitch_deg, 0.0f, 90.0f, "max_pitch_deg"},
        {c->max_roll_deg, 0.0f, 180.0f, "max_roll_deg"},
        {c->edge_tolerance, 0.0f, 1.0f, "edge_tolerance"},
        {c->liveness_threshold, 0.0f, 1e9f, "liveness_threshold"},
    };
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++)
        if (!(r[i].v >= r[i].lo && r[i].v <= r[i].hi)) {
            fpay_set_err(err, err_len, "pipeline: %s = %g is outside [%g, %g]", r[i].name,
                         (double)r[i].v, (double)r[i].lo, (double)r[i].hi);
            return FPAY_INVALID_ARGUMENT;
        }
    if (c->min_face_px < 0 || c->min_face_px > 100000 || c->threads < 0 ||
        c->min_laplacian_count < 0 || c->min_laplacian_count > 256 * 256) {
        fpay_set_err(err, err_len, "pipeline: min_face_px, threads or min_laplacian_count out of range");
        return FPAY_INVALID_ARGUMENT;
    }
    return FPAY_OK;
}

fpay_status fpay_pipeline_create(const fpay_pipeline_config *cfg, fpay_pipeline **out,
                                 char *err, size_t err_len)
{
    if (!out) {
        fpay_set_err(err, err_len, "pipeline: NULL out");
        return FPAY_INVALID_ARGUMENT;
    }
    *out = NULL;
    fpay_pipeline_config def;
    if (!cfg) {
        fpay_pipeline_config_init(&def, FPAY_CAMERA_DEFAULT);
        cfg = &def;
    }
    fpay_status st = check_config(cfg, err, err_len);
    if (st != FPAY_OK)
        return st;
    fpay_pipeline *p = calloc(1, sizeof *p);
    if (!p) {
        fpay_set_err(err, err_len, "pipeline: out of memory");
        return FPAY_OUT_OF_MEMORY;
    }
    p->cfg = *cfg;
    snprintf(p->models_dir, sizeof p->models_dir, "%s", cfg->models_dir ? cfg->models_dir : "models");
    snprintf(p->backend, sizeof p->backend, "%s", cfg->backend ? cfg->backend : "");
    /* The copy must not point at caller memory. */
    p->cfg.models_dir = p->models_dir;
    p->cfg.backend = p->backend[0] ? p->backend : NULL;
    if ((st = load_one(p, "pnet.tflite", &p->m_pnet, &p->pnet, err, err_len)) != FPAY_OK ||
        (st = load_one(p, "rnet.tflite", &p->m_rnet, &p->rnet, err, err_len)) != FPAY_OK ||
        (st = load_one(p, "onet.tflite", &p->m_onet, &p->onet, err, err_len)) != FPAY_OK ||
        (st = load_one(p, "MobileFaceNet.tflite", &p->m_mfn, &p->mfn, err, err_len)) != FPAY_OK ||
        (cfg->liveness &&
         (st = load_one(p, "FaceAntiSpoofing.tflite", &p->m_as, &p->as, err, err_len)) != FPAY_OK)) {
        fpay_pipeline_free(p);
        return st;
    }
    fpay_model_stats ms = {.struct_size = sizeof ms};
    if (fpay_model_stats_get(p->m_mfn, &ms) == FPAY_OK)
        memcpy(p->mfn_sha, ms.sha256, sizeof p->mfn_sha);
    p->mfn_batch = -1;
    *out = p;
    return FPAY_OK;
}

void fpay_pipeline_free(fpay_pipeline *p)
{
    if (!p)
        return;
    fpay_session_free(p->pnet);
    fpay_session_free(p->rnet);
    fpay_session_free(p->onet);
    fpay_session_free(p->mfn);
    fpay_session_free(p->as);
    fpay_model_free(p->m_pnet);
    fpay_model_free(p->m_rnet);
    fpay_model_free(p->m_onet);
    fpay_model_free(p->m_mfn);
    fpay_model_free(p->m_as);
    free(p);
}

const char *fpay_pipeline_errmsg(const fpay_pipeline *p) { return p ? p->err : ""; }

const fpay_pipeline_config *fpay_pipeline_get_config(const fpay_pipeline *p)
{
    return p ? &p->cfg : NULL;
}

const char *fpay_pipeline_model_sha256(const fpay_pipeline *p) { return p ? p->mfn_sha : ""; }

static int image_ok(const fpay_image *img)
{
    return img && img->pixels && img->width > 0 && img->height > 0 &&
           img->stride >= 3 * img->width;
}

static fpay_status detect_all(fpay_pipeline *p, const fpay_image *img, fpay_face **faces, int *n)
{
    fpay_mtcnn_params prm;
    prm.min_face = p->cfg.min_face_px > 0 ? (float)p->cfg.min_face_px
                                          : (float)(int)((float)img->width * p->cfg.min_face_ratio);
    if (prm.min_face < 12.0f)
        prm.min_face = 12.0f;
    prm.factor = p->cfg.pyramid_factor;
    prm.pnet_threshold = p->cfg.pnet_threshold;
    prm.rnet_threshold = p->cfg.rnet_threshold;
    prm.onet_threshold = p->cfg.onet_threshold;
    fpay_status st = fpay_mtcnn_detect(p->pnet, p->rnet, p->onet, img, &prm, faces, n, p->err,
                                       sizeof p->err);
    if (st == FPAY_OK)
        fpay_select_rank(*faces, *n, img->width, img->height, p->cfg.centre_weight);
    return st;
}

fpay_status fpay_pipeline_detect(fpay_pipeline *p, const fpay_image *img, fpay_face *faces,
                                 int max, int *count)
{
    if (!p)
        return FPAY_INVALID_ARGUMENT;
    p->err[0] = 0;
    if (!image_ok(img) || max < 0 || (max > 0 && !faces) || !count)
        return set_err(p, FPAY_INVALID_ARGUMENT, "detect: invalid image or arguments");
    fpay_face *all = NULL;
    int n = 0;
    fpay_status st = detect_all(p, img, &all, &n);
    if (st == FPAY_OK) {
        for (int i = 0; i < n && i < max; i++)
            faces[i] = all[i];
        *count = n;
    }
    free(all);
    return st;
}

fpay_status fpay_pipeline_embed_aligned(fpay_pipeline *p, const uint8_t *crops, int n,
                                        float *out, float *raw_norms)
{
    if (!p)
        return FPAY_INVALID_ARGUMENT;
    p->err[0] = 0;
    return fpay_embed_run(p->mfn, &p->mfn_batch, crops, n, out, raw_norms, p->err, sizeof p->err);
}

fpay_status fpay_pipeline_liveness(fpay_pipeline *p, const fpay_image *img,
                                   const fpay_face *face, fpay_liveness *out)
{
    if (!p)
        return FPAY_INVALID_ARGUMENT;
    p->err[0] = 0;
    if (!image_ok(img) || !face || !out)
        return set_err(p, FPAY_INVALID_ARGUMENT, "liveness: invalid image or arguments");
    if (!p->as) {
        fpay_status st = load_one(p, "FaceAntiSpoofing.tflite", &p->m_as, &p->as, p->err,
                                  sizeof p->err);
        if (st != FPAY_OK)
            return st;
    }
    return fpay_liveness_run(p->as, img, face, p->cfg.liveness_threshold,
                             p->cfg.min_laplacian_count, out, p->err, sizeof p->err);
}

static fpay_status process(fpay_pipeline *p, const fpay_image *img, fpay_capture *out,
                           double decode_ms)
{
    p->err[0] = 0;
    if (!out)
        return set_err(p, FPAY_INVALID_ARGUMENT, "process: NULL capture");
    memset(out, 0, sizeof *out);
    out->timings.decode = decode_ms;
    out->payer = -1;
    if (!image_ok(img))
        return set_err(p, FPAY_INVALID_ARGUMENT, "process: invalid image (NULL, zero size or bad stride)");
    out->width = img->width;
    out->height = img->height;
    double t0 = fpay_face_now_ms();
    fpay_face *all = NULL;
    int n = 0;
    fpay_status st = detect_all(p, img, &all, &n);
    double t1 = fpay_face_now_ms();
    out->timings.detect = t1 - t0;
    if (st != FPAY_OK)
        goto done;
    out->face_count = n;
    out->faces_stored = n < FPAY_MAX_FACES ? n : FPAY_MAX_FACES;
    for (int i = 0; i < out->faces_stored; i++)
        out->faces[i] = all[i];
    if (n == 0) {
        out->result = FPAY_FACE_NO_FACE;
        goto done;
    }
    const int ambiguous = fpay_select_ambiguous(all, n, p->cfg.ambiguity_ratio);
    out->payer = 0;
    double t2 = fpay_face_now_ms();
    out->timings.select = t2 - t1;
    const fpay_face *f = &out->faces[0];
    if ((st = fpay_face_align(img, f->landmarks, out->aligned, NULL)) != FPAY_OK) {
        set_err(p, st, "align: degenerate landmarks");
        goto done;
    }
    double t3 = fpay_face_now_ms();
    out->timings.align = t3 - t2;
    fpay_quality_measure(f, out->aligned, img->width, img->height, &p->cfg, &out->quality);
    double t4 = fpay_face_now_ms();
    out->timings.quality = t4 - t3;
    out->result = ambiguous ? FPAY_FACE_AMBIGUOUS_MULTIPLE_FACES
                  : out->quality.reasons ? FPAY_FACE_QUALITY_REJECTED
                                         : FPAY_FACE_OK;
    /* Liveness runs only on a capture that would otherwise pass, and can only
     * refuse it. */
    if (out->result == FPAY_FACE_OK && p->cfg.liveness) {
        st = fpay_pipeline_liveness(p, img, f, &out->liveness);
        if (st != FPAY_OK) {
            out->result = FPAY_FACE_LIVENESS_UNSURE;
            goto done;
        }
        if (out->liveness.state == FPAY_LIVENESS_SPOOF)
            out->result = FPAY_FACE_SPOOF_SUSPECTED;
        else if (out->liveness.state != FPAY_LIVENESS_PASSED)
            out->result = FPAY_FACE_LIVENESS_UNSURE;
    }
    double t5 = fpay_face_now_ms();
    out->timings.liveness = t5 - t4;
    if (p->cfg.embed && (out->result == FPAY_FACE_OK || p->cfg.embed_rejected)) {
        st = fpay_embed_run(p->mfn, &p->mfn_batch, out->aligned, 1, out->embedding,
                            &out->embedding_raw_norm, p->err, sizeof p->err);
        if (st != FPAY_OK)
            goto done;
        out->has_embedding = 1;
        memcpy(out->model_sha256, p->mfn_sha, sizeof out->model_sha256);
    }
    out->timings.embed = fpay_face_now_ms() - t5;
done:
    out->timings.total = out->timings.decode + (fpay_face_now_ms() - t0);
    free(all);
    return st;
}

fpay_status fpay_pipeline_process_image(fpay_pipeline *p, const fpay_image *img,
                                        fpay_capture *out)
{
    if (!p)
        return FPAY_INVALID_ARGUMENT;
    return process(p, img, out, 0.0);
}

/* The common end of the encoded/file/frame entry points: a failed decode
 * leaves a blank capture (no payer); otherwise the image is processed with
 * its decode time and freed. */
static fpay_status process_decoded(fpay_pipeline *p, fpay_status decoded, fpay_image *img,
                                   fpay_capture *out, double t0)
{
    if (decoded != FPAY_OK) {
        memset(out, 0, sizeof *out);
        out->payer = -1;
        return decoded;
    }
    fpay_status st = process(p, img, out, fpay_face_now_ms() - t0);
    fpay_image_free(img);
    return st;
}

fpay_status fpay_pipeline_process_encoded(fpay_pipeline *p, const void *data, size_t size,
                                          fpay_capture *out)
{
    if (!p)
        return FPAY_INVALID_ARGUMENT;
    if (!out)
        return set_err(p, FPAY_INVALID_ARGUMENT, "process: NULL capture");
    double t0 = fpay_face_now_ms();
    fpay_image img = {0};
    fpay_status st = fpay_image_decode(data, size, &p->cfg.limits, &img, p->err, sizeof p->err);
    return process_decoded(p, st, &img, out, t0);
}

fpay_status fpay_pipeline_process_file(fpay_pipeline *p, const char *path, fpay_capture *out)
{
    if (!p)
        return FPAY_INVALID_ARGUMENT;
    if (!out || !path)
        return set_err(p, FPAY_INVALID_ARGUMENT, "process: NULL path or capture");
    double t0 = fpay_face_now_ms();
    fpay_image img = {0};
    fpay_status st = fpay_image_load_file(path, &p->cfg.limits, &img, p->err, sizeof p->err);
    return process_decoded(p, st, &img, out, t0);
}

fpay_status fpay_pipeline_process_frame(fpay_pipeline *p, const fpay_frame *frame,
                                        fpay_capture *out)
{
    if (!p)
        return FPAY_INVALID_ARGUMENT;
    if (!out)
        return set_err(p, FPAY_INVALID_ARGUMENT, "process: NULL capture");
    double t0 = fpay_face_now_ms();
    fpay_image img = {0};
    fpay_status st = fpay_frame_to_rgb(frame, &p->cfg.limits, &img, p->err, sizeof p->err);
    return process_decoded(p, st, &img, out, t0);
}
