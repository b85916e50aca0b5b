/*
 * service.c - the checkout logic of facepay/service.h: enrollment under
 * stricter capture gates, 1:1 verification by account number with a decoy
 * for unknown accounts, throttling, the audit trail, terminal API keys and
 * key rotation. The data layer (keys, envelopes, store, throttle policy,
 * audit links) is service_internal.h's.
 *
 * Two rules shape the code:
 *   - fail closed: every verification starts as DECLINE INTERNAL_ERROR and
 *     `finish` is the only place that can write APPROVE, and only when the
 *     whole chain (capture, embed, template open, compare, counters, audit)
 *     succeeded and the score reached the threshold;
 *   - an unknown account and a known account with the wrong face take the
 *     same path (throttle counters, pipeline, template open, compare) and
 *     give the same public answer, so a terminal cannot enumerate accounts.
 */
#define _POSIX_C_SOURCE 200809L
#include "service_internal.h"

#include "status.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

/* Setting names written by calibrate.c and read at open. */
#define SET_THRESHOLD "threshold"
#define SET_THRESHOLD_FMR "threshold_fmr"
#define SET_THRESHOLD_SHA "threshold_model_sha256"
/* The long-lived data keys wrapped under a master key (see rotate_key). */
#define SET_KEYWRAP_PREFIX "keywrap:"
/* "<key_id>:<64 hex>": which master key this database belongs to. */
#define SET_KEY_CHECK "key_check"
#define KEY_CHECK_AD "facepay key check v1"

#define TERMINAL_ID_MAX 63
#define CROP_BYTES ((size_t)FPAY_ALIGNED_SIDE * FPAY_ALIGNED_SIDE * 3)

typedef struct slot {
    fpay_pipeline *pay;      /* payment gates, embed = 0 (batched later) */
    fpay_pipeline *enroll;   /* stricter gates, created on first enroll */
    int busy;
} slot;

struct fpay_service {
    fpay_service_config cfg;           /* strings point into the copies below */
    char db_path[4096];
    char key_file[4096];
    char models_dir[4096];
    char backend[64];
    char country[8];
    fpay_pipeline_config enroll_cfg;

    fpay_store *store;
    fpay_keys keys;                    /* guarded by keys_lock */
    pthread_rwlock_t keys_lock;        /* rotate_key writes, the rest read */
    char model_sha[65];
    float threshold;
    double fmr;

    slot *slots;
    int nslots;
    pthread_mutex_t pool_mu;
    pthread_cond_t pool_cv;

    pthread_mutex_t counters_mu;       /* read-modify-write of counters */

    /* The decoy: a random template sealed under a random hash, opened and
     * compared in place of an account that has none. */
    uint8_t decoy_hash[FPAY_HASH_BYTES];
    uint8_t *decoy_blob;
    size_t decoy_len;

    /* Hooks (service_internal.h). */
    int64_t (*clock)(void *ctx);
    void *clock_ctx;
    atomic_long template_opens;
    atomic_long compares;
};

/* Threads per session when the caller leaves pipeline.threads at 0. One
 * pipeline is a terminal serving one customer at a time: its sessions use
 * the cores that are otherwise idle, up to 4 (FaceAntiSpoofing, most of a
 * checkout, ran 1.6x faster on 2 cores than on 1). Several pipelines share
 * the cores between concurrent calls: one thread each. */
int fpay_service_auto_threads(int workers)
{
    if (workers != 1)
        return 1;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    return cores < 1 ? 1 : cores > 4 ? 4 : (int)cores;
}

int fpay_service_pipeline_threads(const fpay_service *svc)
{
    return svc ? svc->cfg.pipeline.threads : 0;
}

/* ------------------------------------------------------------- helpers */

static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int64_t now_s(const fpay_service *svc)
{
    if (svc->clock)
        return svc->clock(svc->clock_ctx);
    return (int64_t)time(NULL);
}

static int64_t now_unix_ms(const fpay_service *svc)
{
    if (svc->clock)
        return svc->clock(svc->clock_ctx) * 1000;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Terminal ids come from the HTTP layer or the command line: short,
 * printable, no separators that could confuse a log reader. */
static int terminal_ok(const char *t)
{
    size_t n = 0;
    for (; t[n]; n++) {
        char c = t[n];
        if (n >= TERMINAL_ID_MAX ||
            !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
              c == ':'))
            return 0;
    }
    return n > 0;
}

static void result_init(const fpay_service *svc, fpay_service_result *out)
{
    memset(out, 0, sizeof *out);
    out->decision = FPAY_DECLINE;
    out->reason = FPAY_REASON_INTERNAL_ERROR;
    out->operator_reason = FPAY_REASON_INTERNAL_ERROR;
    out->score = -2.0f;
    out->threshold = svc ? svc->threshold : 0.0f;
    out->fmr = svc ? svc->fmr : 0.0;
}

/* The one place that decides APPROVE: a call that succeeded, reached
 * reason NONE and, for a verification, matched. Everything else, including
 * any failure on the way, is DECLINE. */
static fpay_decision decide(fpay_status st, fpay_reason reason, int matched)
{
    return (st == FPAY_OK && reason == FPAY_REASON_NONE && matched) ? FPAY_APPROVE
                                                                    : FPAY_DECLINE;
}

/* Writes the decision and the person-facing message from public fields
 * only (never the score or the account number). */
static void finish(fpay_service_result *out, fpay_status st, fpay_reason reason,
                   int matched)
{
    if (st != FPAY_OK && reason == FPAY_REASON_NONE)
        reason = FPAY_REASON_INTERNAL_ERROR;
    out->reason = reason;
    out->operator_reason = reason;
    out->decision = decide(st, reason, matched);
    if (out->reason != FPAY_REASON_QUALITY)
        out->quality_reasons = 0;
    if (out->reason != FPAY_REASON_THROTTLED && out->reason != FPAY_REASON_LOCKED)
        out->retry_after_s = 0;
    if (out->reason == FPAY_REASON_QUALITY) {
        char q[96];
        fpay_quality_reasons_str(out->quality_reasons, q, sizeof q);
        snprintf(out->message, sizeof out->message, "%s: %s",
                 fpay_reason_str(reason), q);
    } else if (out->reason == FPAY_REASON_INVALID_ACCOUNT && out->message[0]) {
        char rule[96]; /* the normaliser's rules are shorter */
        snprintf(rule, sizeof rule, "%.95s", out->message);
        snprintf(out->message, sizeof out->message, "%.40s: %s", fpay_reason_str(reason),
                 rule);
    } else if (out->retry_after_s > 0) {
        snprintf(out->message, sizeof out->message, "%s (retry in %d s)",
                 fpay_reason_str(reason), out->retry_after_s);
    } else {
        snprintf(out->message, sizeof out->message, "%s",
                 fpay_reason_str(reason));
    }
}

/* The audit record of a call answering decide(st, reason of r, matched). */
static void audit_fill(fpay_service *svc, const char *terminal, const char *op,
                       const fpay_service_result *r, fpay_status st, int matched,
                       fpay_audit_record *rec)
{
    memset(rec, 0, sizeof *rec);
    rec->time_ms = now_unix_ms(svc);
    snprintf(rec->terminal_id, sizeof rec->terminal_id, "%s",
             terminal && terminal_ok(terminal) ? terminal : "local");
    snprintf(rec->account_prefix, sizeof rec->account_prefix, "%s",
             r->account_hash_prefix);
    snprintf(rec->op, sizeof rec->op, "%s", op);
    fpay_reason reason = st != FPAY_OK && r->reason == FPAY_REASON_NONE
                             ? FPAY_REASON_INTERNAL_ERROR
                             : r->reason;
    snprintf(rec->decision, sizeof rec->decision, "%s",
             fpay_decision_name(decide(st, reason, matched)));
    snprintf(rec->reason, sizeof rec->reason, "%s", fpay_reason_name(reason));
    rec->latency_ms = r->times.total;
}

/* The end of every call that leaves an audit record: the call's state
 * change (b's parts; it may hold none) and the record of its answer,
 * decide(*st, *reason, matched), go to the store in one transaction, so
 * neither is ever kept without the other. If that write fails, nothing of
 * it is kept (but see the store contract on a COMMIT that fails at the
 * sync: then it may be kept whole), the call becomes DECLINE
 * INTERNAL_ERROR, and a second, best-effort record says so; when that one
 * fails too, no record of the call exists. out->reason and
 * out->times.total are set here. */
static void commit_call(fpay_service *svc, const char *terminal, const char *op,
                        fpay_service_result *out, fpay_status *st, fpay_reason *reason,
                        int matched, double t0, fpay_store_batch *b)
{
    char err[256];
    out->reason = *reason;
    out->times.total = mono_ms() - t0;
    fpay_audit_record rec;
    audit_fill(svc, terminal, op, out, *st, matched, &rec);
    b->audit = &rec;
    b->keys = &svc->keys;
    fpay_status ws = svc->store->ops->write_batch(svc->store, b, err, sizeof err);
    b->audit = NULL;
    if (ws == FPAY_OK)
        return;
    if (*st == FPAY_OK)
        *st = ws;
    *reason = FPAY_REASON_INTERNAL_ERROR;
    out->reason = *reason;
    fpay_audit_record fb;
    audit_fill(svc, terminal, op, out, *st, matched, &fb);
    /* The same record again would only be a retry of what just failed
     * (and a duplicate, if that failed COMMIT is kept after all). */
    if (strcmp(fb.decision, rec.decision) == 0 && strcmp(fb.reason, rec.reason) == 0)
        return;
    fpay_store_batch ab = {.audit = &fb, .keys = &svc->keys};
    (void)svc->store->ops->write_batch(svc->store, &ab, err, sizeof err);
}

/* Normalises and hashes req's account; fills the prefix. */
static fpay_status account_of(fpay_service *svc, const fpay_request *req,
                              uint8_t hash[FPAY_HASH_BYTES],
                              fpay_service_result *out)
{
    char norm[FPAY_ACCOUNT_ID_MAX];
    if (!req || !req->account ||
        (req->id_kind != FPAY_ID_PHONE && req->id_kind != FPAY_ID_CN_RESIDENT))
        return FPAY_INVALID_ARGUMENT;
    /* The rule the number broke goes into the message (finish() keeps it
     * for INVALID_ACCOUNT): the customer typed it and can correct it, and
     * no rule's text repeats the number. */
    fpay_status st = fpay_account_id_normalize(req->id_kind, req->account,
                                               svc->cfg.default_country_code,
                                               norm, sizeof norm, out->message,
                                               sizeof out->message);
    if (st != FPAY_OK)
        return FPAY_INVALID_ARGUMENT;
    out->message[0] = '\0';
    fpay_account_hash(&svc->keys, req->id_kind, norm, hash);
    sodium_memzero(norm, sizeof norm);
    char hex[2 * FPAY_HASH_BYTES + 1];
    fpay_hex(hash, FPAY_HASH_BYTES, hex);
    memcpy(out->account_hash_prefix, hex, 16);
    out->account_hash_prefix[16] = 0;
    return FPAY_OK;
}

/* --------------------------------------------------------------- pool */

static slot *pool_get(fpay_service *svc)
{
    pthread_mutex_lock(&svc->pool_mu);
    slot *s = NULL;
    for (;;) {
        for (int i = 0; i < svc->nslots; i++)
            if (!svc->slots[i].busy) {
                s = &svc->slots[i];
                break;
            }
        if (s)
            break;
        pthread_cond_wait(&svc->pool_cv, &svc->pool_mu);
    }
    s->busy = 1;
    pthread_mutex_unlock(&svc->pool_mu);
    return s;
}

static void pool_put(fpay_service *svc, slot *s)
{
    pthread_mutex_lock(&svc->pool_mu);
    s->busy = 0;
    pthread_cond_signal(&svc->pool_cv);
    pthread_mutex_unlock(&svc->pool_mu);
}

/* ------------------------------------------------------------ captures */

/* Runs one capture through p. FPAY_OK with *reason NONE: the aligned crop
 * is good to embed. FPAY_OK with another reason: a decision about the
 * capture. Any other status: an internal failure. */
static fpay_status run_capture(fpay_pipeline *p, const fpay_capture_source *src,
                               fpay_capture *cap, fpay_reason *reason,
                               unsigned *quality)
{
    *reason = FPAY_REASON_BAD_IMAGE;
    *quality = 0;
    fpay_status st;
    if (src->frame)
        st = fpay_pipeline_process_frame(p, src->frame, cap);
    else if (src->data && src->size > 0)
        st = fpay_pipeline_process_encoded(p, src->data, src->size, cap);
    else
        return FPAY_OK; /* empty capture: a bad image, not a bad call */
    if (st == FPAY_IMAGE_INVALID || st == FPAY_LIMIT_EXCEEDED)
        return FPAY_OK;
    if (st != FPAY_OK) {
        *reason = FPAY_REASON_INTERNAL_ERROR;
        return st;
    }
    switch (cap->result) {
    case FPAY_FACE_OK:
        *reason = cap->payer >= 0 ? FPAY_REASON_NONE : FPAY_REASON_INTERNAL_ERROR;
        return cap->payer >= 0 ? FPAY_OK : FPAY_INTERNAL;
    case FPAY_FACE_NO_FACE:
        *reason = FPAY_REASON_NO_FACE;
        break;
    case FPAY_FACE_AMBIGUOUS_MULTIPLE_FACES:
        *reason = FPAY_REASON_AMBIGUOUS_MULTIPLE_FACES;
        break;
    case FPAY_FACE_QUALITY_REJECTED:
        *reason = FPAY_REASON_QUALITY;
        *quality = cap->quality.reasons;
        break;
    case FPAY_FACE_SPOOF_SUSPECTED:
        *reason = FPAY_REASON_SPOOF;
        break;
    case FPAY_FACE_LIVENESS_UNSURE:
        *reason = FPAY_REASON_CAPTURE_UNSURE;
        break;
    default:
        *reason = FPAY_REASON_INTERNAL_ERROR;
        return FPAY_INTERNAL;
    }
    return FPAY_OK;
}

/* Keyed hash of a capture: the encoded bytes, or a raw frame's pixels
 * after conversion (so stride padding cannot make a replay look new). */
static fpay_status capture_hash(const fpay_service *svc,
                                const fpay_capture_source *src,
                                const fpay_image_limits *limits,
                                uint8_t out[FPAY_HASH_BYTES], int *decodable)
{
    *decodable = 1;
    if (!src->frame) {
        if (!src->data || src->size == 0) {
            *decodable = 0;
            return FPAY_OK;
        }
        fpay_secret_hash(&svc->keys, src->data, src->size, out);
        return FPAY_OK;
    }
    fpay_image img = {0};
    fpay_status st = fpay_frame_to_rgb(src->frame, limits, &img, NULL, 0);
    if (st == FPAY_IMAGE_INVALID || st == FPAY_LIMIT_EXCEEDED) {
        *decodable = 0;
        return FPAY_OK;
    }
    if (st != FPAY_OK)
        return st;
    /* Row by row: the converted image may have its own stride. */
    crypto_generichash_state h;
    crypto_generichash_init(&h, svc->keys.secret_key, FPAY_KEY_BYTES,
                            FPAY_HASH_BYTES);
    uint32_t dims[2] = {(uint32_t)img.width, (uint32_t)img.height};
    crypto_generichash_update(&h, (const unsigned char *)dims, sizeof dims);
    for (int y = 0; y < img.height; y++)
        crypto_generichash_update(&h, img.pixels + (size_t)y * (size_t)img.stride,
                                  (size_t)img.width * 3);
    crypto_generichash_final(&h, out, FPAY_HASH_BYTES);
    fpay_image_free(&img);
    return FPAY_OK;
}

/* -------------------------------------------------------------- config */

void fpay_service_config_init(fpay_service_config *cfg)
{
    if (!cfg)
        return;
    memset(cfg, 0, sizeof *cfg);
    cfg->struct_size = sizeof *cfg;
    fpay_pipeline_config_init(&cfg->pipeline, FPAY_CAMERA_DEFAULT);
    cfg->threshold = 0.0f;
    cfg->workers = 1;
    cfg->enroll_max_captures = 5;
    cfg->backoff_after = 5;
    cfg->backoff_base_s = 30;
    cfg->lock_after = 50;
    cfg->terminal_max_failures = 30;
    cfg->terminal_window_s = 300;
}

/* Enrollment gates: a template is compared with every later payment, so a
 * poor one costs on every checkout. Each limit is the payment value or the
 * one below, whichever is stricter:
 *   - inter-eye distance >= 40 px (payment default 28): enough pixels for
 *     MobileFaceNet's 112x112 crop not to be an up-scale;
 *   - sharpness >= 60 (40), brightness 50..205 (40..215);
 *   - |yaw| <= 25, |pitch| <= 20, |roll| <= 20 degrees (35/30/30): a frontal
 *     template matches more poses at payment time than an oblique one;
 *   - another face at >= 0.3 of the payer's area is ambiguous (0.5): the
 *     person enrolled must be beyond doubt;
 *   - liveness threshold 0.1 (0.2): a spoofed enrollment would let the
 *     impostor pay for ever, so the anti-spoofing model may block more.
 * Liveness on or off follows the payment config (off only in tests and on
 * photos too small for the model). */
static void enroll_config(const fpay_pipeline_config *pay, fpay_pipeline_config *e)
{
    *e = *pay;
    e->min_eye_distance = fmaxf(pay->min_eye_distance, 40.0f);
    e->min_sharpness = fmaxf(pay->min_sharpness, 60.0f);
    e->min_brightness = fmaxf(pay->min_brightness, 50.0f);
    e->max_brightness = fminf(pay->max_brightness, 205.0f);
    e->max_yaw_deg = fminf(pay->max_yaw_deg, 25.0f);
    e->max_pitch_deg = fminf(pay->max_pitch_deg, 20.0f);
    e->max_roll_deg = fminf(pay->max_roll_deg, 20.0f);
    e->ambiguity_ratio = fminf(pay->ambiguity_ratio, 0.3f);
    e->liveness_threshold = fminf(pay->liveness_threshold, 0.1f);
    e->embed = 0;
    e->embed_rejected = 0;
}

static fpay_status seal_decoy(fpay_service *svc, char *err, size_t el)
{
    float t[FPAY_EMBED_DIM];
    double norm = 0;
    for (int i = 0; i < FPAY_EMBED_DIM; i++) {
        t[i] = (float)((double)randombytes_uniform(2000001) / 1e6 - 1.0);
        norm += (double)t[i] * t[i];
    }
    norm = sqrt(norm);
    for (int i = 0; i < FPAY_EMBED_DIM; i++)
        t[i] = (float)(t[i] / (norm > 0 ? norm : 1.0));
    randombytes_buf(svc->decoy_hash, sizeof svc->decoy_hash);
    free(svc->decoy_blob);
    svc->decoy_blob = NULL;
    fpay_status st = fpay_template_seal(&svc->keys, svc->decoy_hash, svc->model_sha,
                                        FPAY_TEMPLATE_VERSION, t, FPAY_EMBED_DIM,
                                        &svc->decoy_blob, &svc->decoy_len);
    sodium_memzero(t, sizeof t);
    if (st != FPAY_OK)
        fpay_set_err(err, el, "service: sealing the decoy template failed");
    return st;
}

/* The data keys (account hashes, capture and API-key hashes, audit chain)
 * cannot be re-derived after a key rotation: the store holds no account
 * number, capture or API key to hash again. They are kept and wrapped
 * (XChaCha20-Poly1305) under each new master key's template key; open
 * unwraps them when a wrap exists for the master key it was given. */
#define WRAP_AD "facepay keywrap v1"
#define WRAP_PLAIN (3 * FPAY_KEY_BYTES)

static fpay_status keywrap_load(fpay_service *svc, char *err, size_t el)
{
    char name[64], hex[2 * (crypto_aead_xchacha20poly1305_ietf_NPUBBYTES +
                            WRAP_PLAIN + crypto_aead_xchacha20poly1305_ietf_ABYTES) + 8];
    snprintf(name, sizeof name, SET_KEYWRAP_PREFIX "%s", svc->keys.key_id);
    fpay_status st = svc->store->ops->setting_get(svc->store, name, hex, sizeof hex,
                                                  err, el);
    if (st == FPAY_NOT_FOUND)
        return FPAY_OK; /* never rotated to this key: the derived keys hold */
    if (st != FPAY_OK)
        return st;
    uint8_t bin[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES + WRAP_PLAIN +
                crypto_aead_xchacha20poly1305_ietf_ABYTES];
    size_t blen = 0;
    uint8_t plain[WRAP_PLAIN];
    unsigned long long plen = 0;
    if (sodium_hex2bin(bin, sizeof bin, hex, strlen(hex), NULL, &blen, NULL) != 0 ||
        blen != sizeof bin ||
        crypto_aead_xchacha20poly1305_ietf_decrypt(
            plain, &plen, NULL, bin + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
            blen - crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
            (const unsigned char *)WRAP_AD, strlen(WRAP_AD), bin,
            svc->keys.template_key) != 0 ||
        plen != WRAP_PLAIN) {
        fpay_set_err(err, el, "service: the wrapped data keys of this master key "
                              "do not authenticate");
        return FPAY_INVALID_ARGUMENT;
    }
    memcpy(svc->keys.id_key, plain, FPAY_KEY_BYTES);
    memcpy(svc->keys.secret_key, plain + FPAY_KEY_BYTES, FPAY_KEY_BYTES);
    memcpy(svc->keys.audit_key, plain + 2 * FPAY_KEY_BYTES, FPAY_KEY_BYTES);
    sodium_memzero(plain, sizeof plain);
    return FPAY_OK;
}

/* The key check value of a master key: its name and a BLAKE2b MAC under its
 * template_key (derived from the master key itself, never wrapped), so it
 * names the key without revealing anything of it. */
static void key_check_value(const fpay_keys *k, char out[17 + 1 + 64 + 1])
{
    uint8_t mac[32];
    crypto_generichash(mac, sizeof mac, (const unsigned char *)KEY_CHECK_AD,
                       strlen(KEY_CHECK_AD), k->template_key, FPAY_KEY_BYTES);
    char hex[65];
    fpay_hex(mac, sizeof mac, hex);
    snprintf(out, 17 + 1 + 64 + 1, "%s:%s", k->key_id, hex);
}

static int first_audit(const fpay_audit_record *rec, void *ctx)
{
    *(fpay_audit_record *)ctx = *rec;
    return 1; /* the first record is enough */
}

/* Refuses, before anything is written, a master key that is not the one
 * this database belongs to. A database holds its key check value from its
 * first open (and from every rotation); one made before check values is
 * accepted only when the first record of its audit chain verifies under the
 * key, and then gets its check value. */
static fpay_status key_check(fpay_service *svc, char *err, size_t el)
{
    const fpay_store_ops *o = svc->store->ops;
    char want[17 + 1 + 64 + 1], have[160];
    key_check_value(&svc->keys, want);
    fpay_status st = o->setting_get(svc->store, SET_KEY_CHECK, have, sizeof have, err, el);
    if (st == FPAY_OK) {
        if (strlen(have) != strlen(want) || sodium_memcmp(have, want, strlen(want)) != 0) {
            fpay_set_err(err, el, "service: this master key (%s) is not the key of this "
                                  "database (key check value differs): a wrong key file, "
                                  "or a key retired by rotate-key; nothing was changed",
                         svc->keys.key_id);
            return FPAY_INVALID_ARGUMENT;
        }
        return FPAY_OK;
    }
    if (st != FPAY_NOT_FOUND)
        return st;
    long accounts = 0, records = 0;
    if ((st = o->check(svc->store, &accounts, &records, err, el)) != FPAY_OK)
        return st;
    if (records > 0) {
        fpay_audit_record rec;
        memset(&rec, 0, sizeof rec);
        if ((st = o->audit_each(svc->store, first_audit, &rec, err, el)) != FPAY_OK)
            return st;
        uint8_t link[FPAY_HASH_BYTES];
        fpay_audit_link(&svc->keys, &rec, link);
        if (sodium_memcmp(link, rec.hash, sizeof link) != 0) {
            fpay_set_err(err, el, "service: this master key (%s) is not the key of this "
                                  "database (its audit chain does not verify under it); "
                                  "nothing was changed", svc->keys.key_id);
            return FPAY_INVALID_ARGUMENT;
        }
    } else if (accounts > 0) {
        fpay_set_err(err, el, "service: the database has accounts but no audit record "
                              "to check the master key against; refusing it");
        return FPAY_INVALID_ARGUMENT;
    }
    return o->setting_put(svc->store, SET_KEY_CHECK, want, err, el);
}

static fpay_status keywrap_store(fpay_service *svc, const fpay_keys *data,
                                 const fpay_keys *master, char *err, size_t el)
{
    uint8_t plain[WRAP_PLAIN];
    uint8_t bin[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES + WRAP_PLAIN +
                crypto_aead_xchacha20poly1305_ietf_ABYTES];
    memcpy(plain, data->id_key, FPAY_KEY_BYTES);
    memcpy(plain + FPAY_KEY_BYTES, data->secret_key, FPAY_KEY_BYTES);
    memcpy(plain + 2 * FPAY_KEY_BYTES, data->audit_key, FPAY_KEY_BYTES);
    randombytes_buf(bin, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
    unsigned long long clen = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(
        bin + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, &clen, plain, sizeof plain,
        (const unsigned char *)WRAP_AD, strlen(WRAP_AD), NULL, bin,
        master->template_key);
    sodium_memzero(plain, sizeof plain);
    char hex[2 * sizeof bin + 1];
    fpay_hex(bin, sizeof bin, hex);
    char name[64];
    snprintf(name, sizeof name, SET_KEYWRAP_PREFIX "%s", master->key_id);
    return svc->store->ops->setting_put(svc->store, name, hex, err, el);
}

static fpay_status load_threshold(fpay_service *svc, char *err, size_t err_len)
{
    svc->threshold = FPAY_DEFAULT_THRESHOLD;
    svc->fmr = FPAY_DEFAULT_THRESHOLD_FMR;
    if (svc->cfg.threshold != 0.0f) {
        /* An explicit threshold: its false-match rate is not known here. */
        svc->threshold = svc->cfg.threshold;
        svc->fmr = 0.0;
        return FPAY_OK;
    }
    char v[128], sha[128], fmr[128];
    const fpay_store_ops *o = svc->store->ops;
    if (o->setting_get(svc->store, SET_THRESHOLD, v, sizeof v, NULL, 0) != FPAY_OK ||
        o->setting_get(svc->store, SET_THRESHOLD_FMR, fmr, sizeof fmr, NULL, 0) != FPAY_OK ||
        o->setting_get(svc->store, SET_THRESHOLD_SHA, sha, sizeof sha, NULL, 0) != FPAY_OK)
        return FPAY_OK;
    /* A calibration of another model says nothing about this one. */
    if (strcmp(sha, svc->model_sha) != 0)
        return FPAY_OK;
    char *end;
    /* The same rule as an explicit threshold: a stored one at or below 0
     * would approve strangers, so the service does not start on it. */
    float t = strtof(v, &end);
    if (*end || !(t > 0.0f && t <= 1.0f)) {
        fpay_set_err(err, err_len, "service: the stored calibrated threshold is not a "
                                   "cosine in (0, 1]: run calibrate again");
        return FPAY_INVALID_ARGUMENT;
    }
    double f = strtod(fmr, &end);
    if (*end || !isfinite(f) || f < 0 || f > 1)
        return FPAY_OK;
    svc->threshold = t;
    svc->fmr = f;
    return FPAY_OK;
}

fpay_status fpay_service_open(const fpay_service_config *cfg, fpay_service **out,
                              char *err, size_t err_len)
{
    if (!out) {
        fpay_set_err(err, err_len, "service: NULL out");
        return FPAY_INVALID_ARGUMENT;
    }
    *out = NULL;
    if (!cfg || cfg->struct_size != sizeof *cfg || !cfg->db_path || !cfg->db_path[0]) {
        fpay_set_err(err, err_len, "service: config missing, of another version "
                                   "or without db_path");
        return FPAY_INVALID_ARGUMENT;
    }
    if (cfg->workers < 0 || cfg->workers > 256 || cfg->enroll_max_captures < 0 ||
        cfg->enroll_max_captures > 64) {
        fpay_set_err(err, err_len, "service: workers 0..256 and enroll_max_captures "
                                   "0..64 please");
        return FPAY_INVALID_ARGUMENT;
    }
    /* A cosine threshold at or below 0 approves faces of strangers (two
     * unrelated faces often score above 0, and -1 approves anyone): 0 means
     * "the calibrated one", anything else must be in (0, 1]. */
    if (!(cfg->threshold == 0.0f || (cfg->threshold > 0.0f && cfg->threshold <= 1.0f))) {
        fpay_set_err(err, err_len, "service: threshold %g refused: a cosine in (0, 1] "
                                   "please, or 0 for the calibrated one",
                     (double)cfg->threshold);
        return FPAY_INVALID_ARGUMENT;
    }
    if (sodium_init() < 0) {
        fpay_set_err(err, err_len, "service: libsodium failed to initialise");
        return FPAY_INTERNAL;
    }
    fpay_service *svc = calloc(1, sizeof *svc);
    if (!svc) {
        fpay_set_err(err, err_len, "service: out of memory");
        return FPAY_OUT_OF_MEMORY;
    }
    svc->cfg = *cfg;
    if (svc->cfg.workers == 0)
        svc->cfg.workers = 1;
    if (svc->cfg.pipeline.threads == 0)
        svc->cfg.pipeline.threads = fpay_service_auto_threads(svc->cfg.workers);
    if (svc->cfg.enroll_max_captures == 0)
        svc->cfg.enroll_max_captures = 5;
    snprintf(svc->db_path, sizeof svc->db_path, "%s", cfg->db_path);
    svc->cfg.db_path = svc->db_path;
    if (cfg->key_file) {
        snprintf(svc->key_file, sizeof svc->key_file, "%s", cfg->key_file);
        svc->cfg.key_file = svc->key_file;
    }
    snprintf(svc->models_dir, sizeof svc->models_dir, "%s",
             cfg->pipeline.models_dir ? cfg->pipeline.models_dir : "models");
    svc->cfg.pipeline.models_dir = svc->models_dir;
    if (cfg->pipeline.backend) {
        snprintf(svc->backend, sizeof svc->backend, "%s", cfg->pipeline.backend);
        svc->cfg.pipeline.backend = svc->backend;
    }
    if (cfg->default_country_code) {
        if (strlen(cfg->default_country_code) >= sizeof svc->country) {
            fpay_set_err(err, err_len, "service: default country code too long");
            free(svc);
            return FPAY_INVALID_ARGUMENT;
        }
        snprintf(svc->country, sizeof svc->country, "%s", cfg->default_country_code);
        svc->cfg.default_country_code = svc->country;
    }
    /* Verification embeds in batches (fpay_pipeline_embed_aligned). */
    svc->cfg.pipeline.embed = 0;
    svc->cfg.pipeline.embed_rejected = 0;
    enroll_config(&svc->cfg.pipeline, &svc->enroll_cfg);
    pthread_rwlock_init(&svc->keys_lock, NULL);
    pthread_mutex_init(&svc->pool_mu, NULL);
    pthread_cond_init(&svc->pool_cv, NULL);
    pthread_mutex_init(&svc->counters_mu, NULL);
    atomic_init(&svc->template_opens, 0);
    atomic_init(&svc->compares, 0);

    fpay_status st = fpay_keys_load(svc->cfg.key_file, &svc->keys, err, err_len);
    if (st != FPAY_OK)
        goto fail;
    fpay_store_options so = {.path = svc->db_path, .vfs = NULL, .busy_timeout_ms = 5000};
    st = fpay_store_sqlite_open(&so, &svc->store, err, err_len);
    if (st != FPAY_OK)
        goto fail;
    st = keywrap_load(svc, err, err_len);
    if (st != FPAY_OK)
        goto fail;
    st = key_check(svc, err, err_len);
    if (st != FPAY_OK)
        goto fail;
    svc->slots = calloc((size_t)svc->cfg.workers, sizeof *svc->slots);
    if (!svc->slots) {
        st = FPAY_OUT_OF_MEMORY;
        fpay_set_err(err, err_len, "service: out of memory");
        goto fail;
    }
    svc->nslots = svc->cfg.workers;
    for (int i = 0; i < svc->nslots; i++) {
        st = fpay_pipeline_create(&svc->cfg.pipeline, &svc->slots[i].pay, err, err_len);
        if (st != FPAY_OK)
            goto fail;
    }
    snprintf(svc->model_sha, sizeof svc->model_sha, "%s",
             fpay_pipeline_model_sha256(svc->slots[0].pay));
    st = seal_decoy(svc, err, err_len);
    if (st != FPAY_OK)
        goto fail;
    st = load_threshold(svc, err, err_len);
    if (st != FPAY_OK)
        goto fail;
    *out = svc;
    return FPAY_OK;
fail:
    fpay_service_close(svc);
    return st;
}

void fpay_service_close(fpay_service *svc)
{
    if (!svc)
        return;
    for (int i = 0; i < svc->nslots; i++) {
        fpay_pipeline_free(svc->slots[i].pay);
        fpay_pipeline_free(svc->slots[i].enroll);
    }
    free(svc->slots);
    if (svc->store)
        svc->store->ops->close(svc->store);
    free(svc->decoy_blob);
    fpay_keys_wipe(&svc->keys);
    pthread_rwlock_destroy(&svc->keys_lock);
    pthread_mutex_destroy(&svc->pool_mu);
    pthread_cond_destroy(&svc->pool_cv);
    pthread_mutex_destroy(&svc->counters_mu);
    free(svc);
}

void fpay_service_threshold(const fpay_service *svc, float *threshold, double *fmr)
{
    float t = 0.0f;
    double f = 0.0;
    if (svc) {
        /* The lock is not part of the service's logical state. */
        pthread_rwlock_t *lock = (pthread_rwlock_t *)&svc->keys_lock;
        pthread_rwlock_rdlock(lock);
        t = svc->threshold;
        f = svc->fmr;
        pthread_rwlock_unlock(lock);
    }
    if (threshold)
        *threshold = t;
    if (fmr)
        *fmr = f;
}

/* ---------------------------------------------------------- verification */

/* Where one request of a batch stands between the stages. */
typedef struct vstate {
    fpay_status st;
    fpay_reason reason;
    int needs_match;          /* capture good, embedding pending */
    int matched;
    int counts;               /* outcome updates the failure counters */
    int stale;                /* the account's template is of another model
                                 or version: compared with the decoy */
    uint8_t hash[FPAY_HASH_BYTES];
    double t0;
} vstate;

/* Compares emb with the account's template (or the decoy). */
static void match_one(fpay_service *svc, vstate *v, const float *emb,
                      fpay_service_result *out)
{
    double t = mono_ms();
    char err[256];
    fpay_account_row row;
    memset(&row, 0, sizeof row);
    const uint8_t *hash = v->hash;
    const uint8_t *blob;
    size_t blob_len;
    int version;
    const char *sha;
    fpay_status st = svc->store->ops->get_account(svc->store, v->hash, &row, err, sizeof err);
    if (st == FPAY_NOT_FOUND) {
        /* Unknown account: the decoy goes through the same open and
         * compare, and can only fail to match. */
        hash = svc->decoy_hash;
        blob = svc->decoy_blob;
        blob_len = svc->decoy_len;
        version = FPAY_TEMPLATE_VERSION;
        sha = svc->model_sha;
        st = FPAY_OK;
    } else if (st == FPAY_OK && (strcmp(row.model_sha256, svc->model_sha) != 0 ||
                                 row.template_version != FPAY_TEMPLATE_VERSION)) {
        /* A template of another model cannot be compared: the account needs
         * re-enrolling. The terminal must not learn that the number is
         * enrolled, so this runs the unknown account's path (the decoy, the
         * same counters) and answers NO_MATCH; RE_ENROLL_REQUIRED goes to
         * the operator (operator_reason, the audit record). */
        v->stale = 1;
        hash = svc->decoy_hash;
        blob = svc->decoy_blob;
        blob_len = svc->decoy_len;
        version = FPAY_TEMPLATE_VERSION;
        sha = svc->model_sha;
    } else {
        blob = row.blob;
        blob_len = row.blob_len;
        version = row.template_version;
        sha = row.model_sha256;
    }
    if (st != FPAY_OK) {
        v->st = st;
        v->reason = FPAY_REASON_INTERNAL_ERROR;
    } else {
        float tmpl[FPAY_EMBED_DIM];
        atomic_fetch_add(&svc->template_opens, 1);
        st = fpay_template_open(&svc->keys, hash, sha, version, blob, blob_len, tmpl,
                                FPAY_EMBED_DIM);
        if (st != FPAY_OK) {
            /* Tampered, swapped or sealed under another key: never a match. */
            v->st = FPAY_INTERNAL;
            v->reason = FPAY_REASON_INTERNAL_ERROR;
        } else {
            atomic_fetch_add(&svc->compares, 1);
            float s = fpay_embedding_cosine(emb, tmpl, FPAY_EMBED_DIM);
            out->score = isfinite(s) ? s : -2.0f;
            v->matched = !v->stale && isfinite(s) && s >= svc->threshold;
            v->reason = v->matched ? FPAY_REASON_NONE : FPAY_REASON_NO_MATCH;
            v->counts = 1;
        }
        sodium_memzero(tmpl, sizeof tmpl);
    }
    fpay_account_row_clear(&row);
    out->times.match = mono_ms() - t;
}

/* Counters, terminal failure and the audit record of one finished
 * verification, in one store transaction, then its decision. */
static void record_verify(fpay_service *svc, const fpay_request *req, vstate *v,
                          fpay_service_result *out)
{
    char err[256];
    const char *terminal = req && req->terminal_id ? req->terminal_id : "local";
    int64_t now = now_s(svc);
    fpay_store_batch b;
    memset(&b, 0, sizeof b);
    fpay_counters c = {0};
    int locked = 0;
    if (v->st == FPAY_OK && v->counts) {
        /* The read-modify-write of the counters holds counters_mu until
         * the new value is committed (or not). */
        pthread_mutex_lock(&svc->counters_mu);
        locked = 1;
        fpay_status st = svc->store->ops->get_counters(svc->store, v->hash, &c, err,
                                                      sizeof err);
        if (st == FPAY_OK) {
            fpay_throttle_record(&svc->cfg, &c, v->matched, now);
            b.counters_hash = v->hash;
            b.counters = &c;
            if (!v->matched) {
                b.failure_terminal = terminal_ok(terminal) ? terminal : "local";
                b.failure_at = now;
            }
        } else {
            v->st = st;
            v->reason = FPAY_REASON_INTERNAL_ERROR;
        }
    }
    /* The record holds what the operator must know; the terminal gets the
     * answer of an unknown number. */
    int stale = v->stale && v->st == FPAY_OK && v->reason == FPAY_REASON_NO_MATCH;
    if (stale)
        v->reason = FPAY_REASON_RE_ENROLL_REQUIRED;
    commit_call(svc, terminal, "verify", out, &v->st, &v->reason, v->matched, v->t0, &b);
    if (locked)
        pthread_mutex_unlock(&svc->counters_mu);
    stale = stale && v->reason == FPAY_REASON_RE_ENROLL_REQUIRED;
    finish(out, v->st, stale ? FPAY_REASON_NO_MATCH : v->reason, v->matched);
    if (stale)
        out->operator_reason = FPAY_REASON_RE_ENROLL_REQUIRED;
}

/* Account and terminal throttling before any face work. */
static void throttle_check(fpay_service *svc, const fpay_request *req, vstate *v,
                           fpay_service_result *out)
{
    char err[256];
    const fpay_store_ops *o = svc->store->ops;
    int64_t now = now_s(svc);
    fpay_counters c = {0};
    fpay_status st = o->get_counters(svc->store, v->hash, &c, err, sizeof err);
    if (st != FPAY_OK) {
        v->st = st;
        return;
    }
    long wait = fpay_throttle_wait(&svc->cfg, &c, now);
    if (wait < 0) {
        v->reason = FPAY_REASON_LOCKED;
        return;
    }
    if (wait > 0) {
        v->reason = FPAY_REASON_THROTTLED;
        out->retry_after_s = wait > 86400 ? 86400 : (int)wait;
        return;
    }
    if (svc->cfg.terminal_max_failures > 0 && svc->cfg.terminal_window_s > 0) {
        int n = 0;
        const char *terminal = req->terminal_id ? req->terminal_id : "local";
        st = o->terminal_failure_count(svc->store, terminal,
                                       now - svc->cfg.terminal_window_s, &n, err,
                                       sizeof err);
        if (st != FPAY_OK) {
            v->st = st;
            return;
        }
        if (n >= svc->cfg.terminal_max_failures) {
            v->reason = FPAY_REASON_THROTTLED;
            out->retry_after_s = svc->cfg.terminal_window_s;
            return;
        }
    }
    v->reason = FPAY_REASON_NONE;
}

static fpay_status verify_many(fpay_service *svc, int n, const fpay_request *reqs,
                               const fpay_capture_source *caps,
                               fpay_service_result *outs)
{
    vstate *vs = calloc((size_t)n, sizeof *vs);
    fpay_capture *cap = malloc(sizeof *cap);
    uint8_t *crops = malloc((size_t)n * CROP_BYTES);
    float *embs = malloc((size_t)n * FPAY_EMBED_DIM * sizeof(float));
    int *idx = malloc((size_t)n * sizeof *idx);
    fpay_status call = FPAY_OK;
    if (!vs || !cap || !crops || !embs || !idx) {
        for (int i = 0; i < n; i++) {
            result_init(NULL, &outs[i]);
            finish(&outs[i], FPAY_OUT_OF_MEMORY, FPAY_REASON_INTERNAL_ERROR, 0);
        }
        call = FPAY_OUT_OF_MEMORY;
        goto out;
    }
    pthread_rwlock_rdlock(&svc->keys_lock);
    /* Stage 1: account, throttles, capture (no embedding yet). */
    int nemb = 0;
    slot *sl = pool_get(svc);
    for (int i = 0; i < n; i++) {
        vstate *v = &vs[i];
        fpay_service_result *out = &outs[i];
        result_init(svc, out);
        v->t0 = mono_ms();
        v->st = FPAY_OK;
        v->reason = FPAY_REASON_INTERNAL_ERROR;
        const fpay_request *req = &reqs[i];
        if (req->terminal_id && !terminal_ok(req->terminal_id)) {
            v->st = FPAY_INVALID_ARGUMENT;
            continue;
        }
        if (account_of(svc, req, v->hash, out) != FPAY_OK) {
            v->st = FPAY_INVALID_ARGUMENT;
            v->reason = FPAY_REASON_INVALID_ACCOUNT;
            continue;
        }
        throttle_check(svc, req, v, out);
        if (v->st != FPAY_OK || v->reason != FPAY_REASON_NONE)
            continue;
        unsigned q = 0;
        v->st = run_capture(sl->pay, &caps[i], cap, &v->reason, &q);
        out->quality_reasons = q;
        const fpay_timings *tm = &cap->timings;
        out->times.decode = tm->decode;
        out->times.detect = tm->detect;
        out->times.select = tm->select;
        out->times.quality = tm->quality;
        out->times.align = tm->align;
        out->times.liveness = tm->liveness;
        /* A spoof is an attack on this account: it counts as a failure. */
        if (v->st == FPAY_OK && v->reason == FPAY_REASON_SPOOF)
            v->counts = 1;
        if (v->st == FPAY_OK && v->reason == FPAY_REASON_NONE) {
            memcpy(crops + (size_t)nemb * CROP_BYTES, cap->aligned, CROP_BYTES);
            idx[nemb++] = i;
            v->needs_match = 1;
        }
    }
    /* Stage 2: every good crop in one batch. */
    if (nemb > 0) {
        double t = mono_ms();
        fpay_status st = fpay_pipeline_embed_aligned(sl->pay, crops, nemb, embs, NULL);
        double dt = mono_ms() - t;
        for (int k = 0; k < nemb; k++) {
            vstate *v = &vs[idx[k]];
            outs[idx[k]].times.embed = dt / nemb;
            if (st != FPAY_OK) {
                v->st = st;
                v->reason = FPAY_REASON_INTERNAL_ERROR;
                v->needs_match = 0;
            }
        }
    }
    pool_put(svc, sl);
    /* Stage 3: match and record each. */
    for (int k = 0; k < nemb; k++) {
        vstate *v = &vs[idx[k]];
        if (v->needs_match)
            match_one(svc, v, embs + (size_t)k * FPAY_EMBED_DIM, &outs[idx[k]]);
    }
    for (int i = 0; i < n; i++) {
        record_verify(svc, &reqs[i], &vs[i], &outs[i]);
        if (vs[i].st != FPAY_OK && call == FPAY_OK)
            call = vs[i].st;
    }
    pthread_rwlock_unlock(&svc->keys_lock);
out:
    if (embs)
        sodium_memzero(embs, (size_t)n * FPAY_EMBED_DIM * sizeof(float));
    free(vs);
    free(cap);
    free(crops);
    free(embs);
    free(idx);
    return call;
}

fpay_status fpay_service_verify(fpay_service *svc, const fpay_request *req,
                                const fpay_capture_source *capture,
                                fpay_service_result *out)
{
    if (!out)
        return FPAY_INVALID_ARGUMENT;
    if (!svc || !req || !capture) {
        result_init(NULL, out);
        finish(out, FPAY_INVALID_ARGUMENT,
               req && !req->account ? FPAY_REASON_INVALID_ACCOUNT
                                    : FPAY_REASON_INTERNAL_ERROR, 0);
        return FPAY_INVALID_ARGUMENT;
    }
    return verify_many(svc, 1, req, capture, out);
}

fpay_status fpay_service_verify_batch(fpay_service *svc, int n, const fpay_request *reqs,
                                      const fpay_capture_source *caps,
                                      fpay_service_result *outs)
{
    if (!outs || n < 0 || n > 1024)
        return FPAY_INVALID_ARGUMENT;
    if (!svc || !reqs || !caps) {
        for (int i = 0; i < n; i++) {
            result_init(NULL, &outs[i]);
            finish(&outs[i], FPAY_INVALID_ARGUMENT, FPAY_REASON_INTERNAL_ERROR, 0);
        }
        return FPAY_INVALID_ARGUMENT;
    }
    if (n == 0)
        return FPAY_OK;
    return verify_many(svc, n, reqs, caps, outs);
}

/* ------------------------------------------------------------ enrollment */

/* Enrolls and writes the call's audit record: the template, its capture
 * hashes, the counters' reset and the APPROVE record in one store
 * transaction (commit_call), or, when the call declines before that, the
 * DECLINE record alone. */
static fpay_status enroll_locked(fpay_service *svc, const fpay_request *req,
                                 const fpay_capture_source *caps, int n,
                                 fpay_service_result *out, fpay_reason *reason,
                                 double t0)
{
    char err[256];
    uint8_t hash[FPAY_HASH_BYTES];
    uint8_t (*chash)[FPAY_HASH_BYTES] = NULL;
    uint8_t *crops = NULL;
    float *embs = NULL;
    fpay_capture *cap = NULL;
    uint8_t *blob = NULL;
    size_t blob_len = 0;
    fpay_status st = FPAY_INVALID_ARGUMENT;
    slot *sl = NULL;
    fpay_account_row row;
    memset(&row, 0, sizeof row);
    fpay_store_batch b;
    memset(&b, 0, sizeof b);
    int checked = 0; /* the request's arguments passed */
    *reason = FPAY_REASON_INTERNAL_ERROR;
    if (req->terminal_id && !terminal_ok(req->terminal_id))
        goto out;
    if (account_of(svc, req, hash, out) != FPAY_OK) {
        *reason = FPAY_REASON_INVALID_ACCOUNT;
        goto out;
    }
    if (!caps || n < 1 || n > svc->cfg.enroll_max_captures) {
        *reason = FPAY_REASON_BAD_IMAGE;
        goto out;
    }
    st = FPAY_OK;
    checked = 1;
    chash = calloc((size_t)n, sizeof *chash);
    crops = malloc((size_t)n * CROP_BYTES);
    embs = malloc((size_t)n * FPAY_EMBED_DIM * sizeof(float));
    cap = malloc(sizeof *cap);
    if (!chash || !crops || !embs || !cap) {
        st = FPAY_OUT_OF_MEMORY;
        goto out;
    }
    /* Replays: the same bytes twice in this call, or any capture that
     * enrolled before (any account). */
    for (int i = 0; i < n; i++) {
        int decodable = 1;
        st = capture_hash(svc, &caps[i], &svc->cfg.pipeline.limits, chash[i], &decodable);
        if (st != FPAY_OK)
            goto out;
        if (!decodable) {
            *reason = FPAY_REASON_BAD_IMAGE;
            goto out;
        }
        for (int j = 0; j < i; j++)
            if (sodium_memcmp(chash[i], chash[j], FPAY_HASH_BYTES) == 0) {
                *reason = FPAY_REASON_DUPLICATE_CAPTURE;
                goto out;
            }
        int seen = 0;
        st = svc->store->ops->capture_seen(svc->store, chash[i], &seen, err, sizeof err);
        if (st != FPAY_OK)
            goto out;
        if (seen) {
            *reason = FPAY_REASON_DUPLICATE_CAPTURE;
            goto out;
        }
    }
    sl = pool_get(svc);
    if (!sl->enroll) {
        st = fpay_pipeline_create(&svc->enroll_cfg, &sl->enroll, err, sizeof err);
        if (st != FPAY_OK)
            goto out;
    }
    for (int i = 0; i < n; i++) {
        unsigned q = 0;
        st = run_capture(sl->enroll, &caps[i], cap, reason, &q);
        if (i == 0) {
            out->times.decode = cap->timings.decode;
            out->times.detect = cap->timings.detect;
            out->times.select = cap->timings.select;
            out->times.quality = cap->timings.quality;
            out->times.align = cap->timings.align;
            out->times.liveness = cap->timings.liveness;
        }
        if (st != FPAY_OK || *reason != FPAY_REASON_NONE) {
            out->quality_reasons = q;
            goto out;
        }
        memcpy(crops + (size_t)i * CROP_BYTES, cap->aligned, CROP_BYTES);
    }
    *reason = FPAY_REASON_INTERNAL_ERROR;
    double t = mono_ms();
    st = fpay_pipeline_embed_aligned(sl->enroll, crops, n, embs, NULL);
    out->times.embed = mono_ms() - t;
    if (st != FPAY_OK)
        goto out;
    /* Template: normalised mean of the captures' (normalised) embeddings. */
    float mean[FPAY_EMBED_DIM];
    double norm = 0;
    for (int d = 0; d < FPAY_EMBED_DIM; d++) {
        double s = 0;
        for (int i = 0; i < n; i++)
            s += embs[(size_t)i * FPAY_EMBED_DIM + (size_t)d];
        mean[d] = (float)(s / n);
        norm += (double)mean[d] * mean[d];
    }
    norm = sqrt(norm);
    if (!(norm > 1e-6)) {
        st = FPAY_INTERNAL;
        goto out;
    }
    for (int d = 0; d < FPAY_EMBED_DIM; d++)
        mean[d] = (float)(mean[d] / norm);
    t = mono_ms();
    st = fpay_template_seal(&svc->keys, hash, svc->model_sha, FPAY_TEMPLATE_VERSION, mean,
                            FPAY_EMBED_DIM, &blob, &blob_len);
    sodium_memzero(mean, sizeof mean);
    if (st != FPAY_OK)
        goto out;
    memcpy(row.account_hash, hash, FPAY_HASH_BYTES);
    snprintf(row.model_sha256, sizeof row.model_sha256, "%s", svc->model_sha);
    row.template_version = FPAY_TEMPLATE_VERSION;
    snprintf(row.key_id, sizeof row.key_id, "%s", svc->keys.key_id);
    row.blob = blob;
    row.blob_len = blob_len;
    row.enrolled_at = now_s(svc);
    out->times.match = mono_ms() - t;
    b.account = &row;
    b.captures = (const uint8_t(*)[FPAY_HASH_BYTES])chash;
    b.n_captures = n;
    out->captures_used = n;
    *reason = FPAY_REASON_NONE;
out:
    if (sl)
        pool_put(svc, sl);
    if (st != FPAY_OK && checked)
        *reason = FPAY_REASON_INTERNAL_ERROR;
    /* The record says what the call answers: APPROVE with the template, or
     * the decline reached above. */
    double tw = mono_ms();
    if (b.account) /* the counters' reset against a verify's update */
        pthread_mutex_lock(&svc->counters_mu);
    commit_call(svc, req->terminal_id, "enroll", out, &st, reason, 1, t0, &b);
    if (b.account) {
        pthread_mutex_unlock(&svc->counters_mu);
        out->times.match += mono_ms() - tw;
    }
    if (*reason != FPAY_REASON_NONE)
        out->captures_used = 0;
    if (embs)
        sodium_memzero(embs, (size_t)n * FPAY_EMBED_DIM * sizeof(float));
    free(chash);
    free(crops);
    free(embs);
    free(cap);
    free(blob);
    return st;
}

fpay_status fpay_service_enroll(fpay_service *svc, const fpay_request *req,
                                const fpay_capture_source *captures, int n,
                                fpay_service_result *out)
{
    if (!out)
        return FPAY_INVALID_ARGUMENT;
    result_init(NULL, out);
    if (!svc || !req) {
        finish(out, FPAY_INVALID_ARGUMENT, FPAY_REASON_INTERNAL_ERROR, 0);
        return FPAY_INVALID_ARGUMENT;
    }
    double t0 = mono_ms();
    fpay_reason reason;
    pthread_rwlock_rdlock(&svc->keys_lock);
    out->threshold = svc->threshold; /* calibrate changes it under the lock */
    out->fmr = svc->fmr;
    fpay_status st = enroll_locked(svc, req, captures, n, out, &reason, t0);
    pthread_rwlock_unlock(&svc->keys_lock);
    finish(out, st, reason, 1);
    if (out->decision == FPAY_APPROVE)
        snprintf(out->message, sizeof out->message, "enrolled from %d capture%s",
                 out->captures_used, out->captures_used == 1 ? "" : "s");
    return st;
}

/* ------------------------------------------------------- delete, unlock */

static fpay_status account_op(fpay_service *svc, const fpay_request *req,
                              fpay_service_result *out, int del)
{
    if (!out)
        return FPAY_INVALID_ARGUMENT;
    result_init(NULL, out);
    if (!svc || !req) {
        finish(out, FPAY_INVALID_ARGUMENT, FPAY_REASON_INTERNAL_ERROR, 0);
        return FPAY_INVALID_ARGUMENT;
    }
    double t0 = mono_ms();
    uint8_t hash[FPAY_HASH_BYTES];
    fpay_counters zero = {0};
    fpay_reason reason = FPAY_REASON_INTERNAL_ERROR;
    fpay_status st = FPAY_OK;
    fpay_store_batch b;
    memset(&b, 0, sizeof b);
    pthread_rwlock_rdlock(&svc->keys_lock);
    if (req->terminal_id && !terminal_ok(req->terminal_id)) {
        st = FPAY_INVALID_ARGUMENT;
    } else if (account_of(svc, req, hash, out) != FPAY_OK) {
        st = FPAY_INVALID_ARGUMENT;
        reason = FPAY_REASON_INVALID_ACCOUNT;
    } else {
        /* The erasure or the reset, and its APPROVE record, together. */
        if (del) {
            b.delete_hash = hash;
        } else {
            b.counters_hash = hash;
            b.counters = &zero;
        }
        reason = FPAY_REASON_NONE;
    }
    int state = b.delete_hash || b.counters_hash;
    if (state)
        pthread_mutex_lock(&svc->counters_mu);
    commit_call(svc, req->terminal_id, del ? "delete" : "unlock", out, &st, &reason, 1,
                t0, &b);
    if (state)
        pthread_mutex_unlock(&svc->counters_mu);
    pthread_rwlock_unlock(&svc->keys_lock);
    finish(out, st, reason, 1);
    if (out->decision == FPAY_APPROVE)
        snprintf(out->message, sizeof out->message, "%s",
                 del ? "account erased" : "account unlocked");
    return st;
}

fpay_status fpay_service_delete(fpay_service *svc, const fpay_request *req,
                                fpay_service_result *out)
{
    return account_op(svc, req, out, 1);
}

fpay_status fpay_service_unlock(fpay_service *svc, const fpay_request *req,
                                fpay_service_result *out)
{
    return account_op(svc, req, out, 0);
}

/* -------------------------------------------------------------- terminals */

fpay_status fpay_service_terminal_add(fpay_service *svc, const char *terminal_id,
                                      char *key_out, size_t key_len)
{
    if (!svc || !terminal_id || !terminal_ok(terminal_id) || !key_out || key_len < 48)
        return FPAY_INVALID_ARGUMENT;
    uint8_t raw[32], h[FPAY_HASH_BYTES];
    char key[64];
    randombytes_buf(raw, sizeof raw);
    sodium_bin2base64(key, sizeof key, raw, sizeof raw,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(raw, sizeof raw);
    pthread_rwlock_rdlock(&svc->keys_lock);
    fpay_secret_hash(&svc->keys, key, strlen(key), h);
    fpay_status st = svc->store->ops->terminal_put(svc->store, terminal_id, h, NULL, 0);
    pthread_rwlock_unlock(&svc->keys_lock);
    if (st == FPAY_OK)
        snprintf(key_out, key_len, "%s", key);
    sodium_memzero(key, sizeof key);
    return st;
}

fpay_status fpay_service_terminal_check(fpay_service *svc, const char *terminal_id,
                                        const char *key)
{
    if (!svc || !terminal_id || !key || !terminal_ok(terminal_id))
        return FPAY_NOT_FOUND;
    uint8_t want[FPAY_HASH_BYTES], got[FPAY_HASH_BYTES];
    pthread_rwlock_rdlock(&svc->keys_lock);
    fpay_status st = svc->store->ops->terminal_get(svc->store, terminal_id, want, NULL, 0);
    /* Hash whatever came, so an unknown terminal costs the same. */
    fpay_secret_hash(&svc->keys, key, strnlen(key, 256), got);
    pthread_rwlock_unlock(&svc->keys_lock);
    if (st != FPAY_OK && st != FPAY_NOT_FOUND)
        return st;
    int same = sodium_memcmp(want, got, FPAY_HASH_BYTES) == 0;
    return st == FPAY_OK && same ? FPAY_OK : FPAY_NOT_FOUND;
}

/* ---------------------------------------------------------- key rotation */

typedef struct rekey_ctx {
    const fpay_keys *old_keys, *new_keys;
    int failed;
} rekey_ctx;

static int rekey_row(fpay_account_row *row, void *vctx)
{
    rekey_ctx *ctx = vctx;
    float t[FPAY_EMBED_DIM];
    uint8_t *blob = NULL;
    size_t len = 0;
    /* A row that does not open (tampered, another model's dimension) stops
     * the rotation: silently dropping or copying it would hide the fault. */
    if (fpay_template_open(ctx->old_keys, row->account_hash, row->model_sha256,
                           row->template_version, row->blob, row->blob_len, t,
                           FPAY_EMBED_DIM) != FPAY_OK ||
        fpay_template_seal(ctx->new_keys, row->account_hash, row->model_sha256,
                           row->template_version, t, FPAY_EMBED_DIM, &blob,
                           &len) != FPAY_OK) {
        sodium_memzero(t, sizeof t);
        ctx->failed = 1;
        return 1;
    }
    sodium_memzero(t, sizeof t);
    free(row->blob);
    row->blob = blob;
    row->blob_len = len;
    snprintf(row->key_id, sizeof row->key_id, "%s", ctx->new_keys->key_id);
    return 0;
}

fpay_status fpay_service_rotate_key(fpay_service *svc, const char *new_key_file,
                                    char *err, size_t err_len)
{
    if (!svc || !new_key_file) {
        fpay_set_err(err, err_len, "rotate-key: NULL argument");
        return FPAY_INVALID_ARGUMENT;
    }
    fpay_keys nk;
    fpay_status st = fpay_keys_load(new_key_file, &nk, err, err_len);
    if (st != FPAY_OK)
        return st;
    pthread_rwlock_wrlock(&svc->keys_lock);
    if (strcmp(nk.key_id, svc->keys.key_id) == 0) {
        pthread_rwlock_unlock(&svc->keys_lock);
        fpay_keys_wipe(&nk);
        fpay_set_err(err, err_len, "rotate-key: that is the key in use");
        return FPAY_INVALID_ARGUMENT;
    }
    /* The data keys stay (see keywrap_load); only the template key and the
     * master key's name change. */
    memcpy(nk.id_key, svc->keys.id_key, FPAY_KEY_BYTES);
    memcpy(nk.secret_key, svc->keys.secret_key, FPAY_KEY_BYTES);
    memcpy(nk.audit_key, svc->keys.audit_key, FPAY_KEY_BYTES);
    /* The wrap first: if the rotation then fails, the old key still opens
     * everything and the new one's wrap is unused. */
    st = keywrap_store(svc, &nk, &nk, err, err_len);
    rekey_ctx ctx = {.old_keys = &svc->keys, .new_keys = &nk, .failed = 0};
    if (st == FPAY_OK)
        st = svc->store->ops->rekey_all(svc->store, rekey_row, &ctx, err, err_len);
    if (st == FPAY_OK && ctx.failed)
        st = FPAY_INTERNAL;
    if (st == FPAY_OK) {
        /* From now on the database belongs to the new key: the old one is
         * refused at open. The templates are already under the new key, so
         * a failure to write the check value leaves a database that refuses
         * both keys at open (fail closed), which the operator is told. */
        char kcv[17 + 1 + 64 + 1], e3[256] = "";
        key_check_value(&nk, kcv);
        fpay_status kst = svc->store->ops->setting_put(svc->store, SET_KEY_CHECK, kcv, e3,
                                                       sizeof e3);
        fpay_keys old = svc->keys;
        svc->keys = nk;
        char e2[128];
        st = seal_decoy(svc, e2, sizeof e2);
        if (st != FPAY_OK) {
            svc->keys = old; /* templates already moved: report, keep serving */
            fpay_set_err(err, err_len, "%s", e2);
        }
        if (kst != FPAY_OK) {
            st = kst;
            fpay_set_err(err, err_len, "rotate-key: the templates moved to the new key, but "
                                       "its key check value could not be written (%s): the "
                                       "database will refuse both keys at open; restore it "
                                       "from a backup and rotate again", e3);
        }
        fpay_keys_wipe(&old);
    } else if (ctx.failed) {
        fpay_set_err(err, err_len, "rotate-key: a stored template does not open "
                                   "under the current key; nothing was changed");
    }
    /* The rotation committed in rekey_all (whose callback may not call the
     * store); its record follows in a transaction of its own. */
    fpay_service_result r;
    result_init(svc, &r);
    fpay_reason rreason = st == FPAY_OK ? FPAY_REASON_NONE : FPAY_REASON_INTERNAL_ERROR;
    fpay_status ast = FPAY_OK;
    fpay_store_batch ab;
    memset(&ab, 0, sizeof ab);
    /* Terminal API keys were accepted under the old key: a rotation revokes
     * them with its record, in one transaction (add them again with
     * terminal add). */
    ab.revoke_terminals = st == FPAY_OK;
    commit_call(svc, "local", "rotate_key", &r, &ast, &rreason, 1, mono_ms(), &ab);
    pthread_rwlock_unlock(&svc->keys_lock);
    fpay_keys_wipe(&nk);
    if (st == FPAY_OK && ast != FPAY_OK) {
        fpay_set_err(err, err_len, "rotate-key: rotated, but the audit record failed and "
                                   "the terminal keys were not revoked: run terminal add "
                                   "for each terminal to replace its key");
        st = ast;
    }
    return st;
}

/* ------------------------------------------------------------------ audit */

typedef struct audit_walk {
    const fpay_keys *keys;
    uint8_t prev[FPAY_HASH_BYTES];
    long n, first_bad;
} audit_walk;

static int audit_step(const fpay_audit_record *rec, void *vctx)
{
    audit_walk *w = vctx;
    w->n++;
    uint8_t h[FPAY_HASH_BYTES];
    fpay_audit_link(w->keys, rec, h);
    if (rec->seq != w->n || sodium_memcmp(rec->prev, w->prev, FPAY_HASH_BYTES) != 0 ||
        sodium_memcmp(rec->hash, h, FPAY_HASH_BYTES) != 0) {
        w->first_bad = w->n;
        return 1;
    }
    memcpy(w->prev, rec->hash, FPAY_HASH_BYTES);
    return 0;
}

fpay_status fpay_service_audit_verify(fpay_service *svc, long *entries, long *first_bad,
                                      char *err, size_t err_len)
{
    if (!svc || !entries || !first_bad) {
        fpay_set_err(err, err_len, "audit: NULL argument");
        return FPAY_INVALID_ARGUMENT;
    }
    audit_walk w;
    memset(&w, 0, sizeof w);
    pthread_rwlock_rdlock(&svc->keys_lock);
    w.keys = &svc->keys;
    fpay_status st = svc->store->ops->audit_each(svc->store, audit_step, &w, err, err_len);
    pthread_rwlock_unlock(&svc->keys_lock);
    *entries = w.n;
    *first_bad = w.first_bad;
    if (st != FPAY_OK)
        return st;
    if (w.first_bad) {
        fpay_set_err(err, err_len, "audit: record %ld of the chain does not verify",
                     w.first_bad);
        return FPAY_INVALID_ARGUMENT;
    }
    return FPAY_OK;
}

/* ------------------------------------------------------------------ hooks */

void fpay_service_set_clock(fpay_service *svc, int64_t (*now)(void *ctx), void *ctx)
{
    if (!svc)
        return;
    svc->clock = now;
    svc->clock_ctx = ctx;
}

void fpay_service_counts_get(fpay_service *svc, fpay_service_counts *out)
{
    if (!svc || !out)
        return;
    out->template_opens = atomic_load(&svc->template_opens);
    out->compares = atomic_load(&svc->compares);
}

fpay_store *fpay_service_store(fpay_service *svc) { return svc ? svc->store : NULL; }

const fpay_keys *fpay_service_keys(fpay_service *svc) { return svc ? &svc->keys : NULL; }

void fpay_service_set_threshold(fpay_service *svc, float threshold, double fmr)
{
    if (!svc)
        return;
    pthread_rwlock_wrlock(&svc->keys_lock);
    svc->threshold = threshold;
    svc->fmr = fmr;
    pthread_rwlock_unlock(&svc->keys_lock);
}

/* ------------------------------------------------------------ calibration */

fpay_status fpay_service_calibrate(fpay_service *svc, int threads,
                                   const char *const *pairs_files, int n_files,
                                   const char *root, double target_fmr,
                                   fpay_calibration *out, char *err, size_t err_len)
{
    return fpay_service_calibrate_progress(svc, threads, pairs_files, n_files, root, target_fmr,
                                           NULL, NULL, out, err, err_len);
}

fpay_status fpay_service_calibrate_progress(fpay_service *svc, int threads,
                                            const char *const *pairs_files, int n_files,
                                            const char *root, double target_fmr,
                                            fpay_progress_fn progress, void *progress_ctx,
                                            fpay_calibration *out, char *err, size_t err_len)
{
    if (!svc || !out) {
        fpay_set_err(err, err_len, "calibrate: NULL argument");
        return FPAY_INVALID_ARGUMENT;
    }
    fpay_status st = fpay_calibrate_progress(&svc->cfg.pipeline, threads, pairs_files, n_files,
                                             root, target_fmr, progress, progress_ctx, out, err,
                                             err_len);
    if (st != FPAY_OK)
        return st;
    if (strcmp(out->model_sha256, svc->model_sha) != 0) {
        fpay_set_err(err, err_len, "calibrate: the pipeline's model changed under the service");
        return FPAY_INTERNAL;
    }
    /* The model sha is cleared first and written last: a half-written
     * calibration is ignored by load_threshold, never half-used. */
    char v[7][80];
    snprintf(v[0], sizeof v[0], "%.9g", (double)out->threshold);
    snprintf(v[1], sizeof v[1], "%.9g", out->fmr);
    snprintf(v[2], sizeof v[2], "%.9g", out->target_fmr);
    snprintf(v[3], sizeof v[3], "%lld", out->impostor_pairs);
    snprintf(v[4], sizeof v[4], "%ld", out->genuine_pairs);
    snprintf(v[5], sizeof v[5], "%.9g", out->fnmr);
    snprintf(v[6], sizeof v[6], "%lld", out->impostor_accepts);
    const char *names[7] = {SET_THRESHOLD,         SET_THRESHOLD_FMR,
                            "threshold_target_fmr", "threshold_impostor_pairs",
                            "threshold_genuine_pairs", "threshold_fnmr",
                            "threshold_impostor_accepts"};
    const fpay_store_ops *o = svc->store->ops;
    st = o->setting_put(svc->store, SET_THRESHOLD_SHA, "", err, err_len);
    for (int i = 0; i < 7 && st == FPAY_OK; i++)
        st = o->setting_put(svc->store, names[i], v[i], err, err_len);
    if (st == FPAY_OK)
        st = o->setting_put(svc->store, SET_THRESHOLD_SHA, out->model_sha256, err, err_len);
    if (st != FPAY_OK)
        return st;
    /* fmr as measured, not the target: that is the rate the threshold
     * stands for on this data. */
    pthread_rwlock_wrlock(&svc->keys_lock);
    svc->threshold = out->threshold;
    svc->fmr = out->fmr;
    pthread_rwlock_unlock(&svc->keys_lock);
    return FPAY_OK;
}
