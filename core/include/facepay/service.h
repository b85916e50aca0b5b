/*
 * service.h - pay-by-face checkout: enrollment, 1:1 verification by account
 * number, an encrypted template store, throttling and an audit log.
 *
 * The rules of facepay.h hold here too, with one difference: an
 * fpay_service is safe to call from many threads at once (the HTTP server
 * does). It keeps `workers` face pipelines and hands each call one of them;
 * error details therefore come back in the call's own result
 * (fpay_service_result.message), never in the handle.
 *
 * A decision is not an error. fpay_service_verify returns FPAY_OK whenever
 * it reached a decision, APPROVE or DECLINE; it returns an error status only
 * for a bad call (NULL pointers, an invalid account number) or an internal
 * failure, and then the result still says DECLINE: nothing but a completed,
 * successful match ever approves.
 */
#ifndef FACEPAY_SERVICE_H
#define FACEPAY_SERVICE_H

#include <facepay/facepay.h>
#include <facepay/pipeline.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------ account numbers */

typedef enum fpay_id_kind {
    FPAY_ID_PHONE = 0,        /* phone number, normalised to E.164 */
    FPAY_ID_CN_RESIDENT = 1,  /* Chinese Resident Identity Card number: 18
                                 characters, ISO 7064 MOD 11-2 check digit
                                 (the ATM case) */
} fpay_id_kind;

#define FPAY_ACCOUNT_ID_MAX 32   /* normalised form, with its NUL */

/* Normalises an account number as typed at a terminal into out (caller-
 * owned, out_len >= FPAY_ACCOUNT_ID_MAX): "+<country><number>" for phones
 * (a number without '+' or '00' takes default_country_code, e.g. "86";
 * spaces, dashes, dots and brackets are dropped; anything else, or a length
 * outside E.164's, is FPAY_INVALID_ARGUMENT), upper-case 18-character form
 * for identity cards (birth date and check digit verified). err (optional,
 * caller-owned) gets one line saying what is wrong. Never stores or logs
 * the number. */
FPAY_API fpay_status fpay_account_id_normalize(fpay_id_kind kind,
                                               const char *typed,
                                               const char *default_country_code,
                                               char *out, size_t out_len,
                                               char *err, size_t err_len);

/* ------------------------------------------------------------- decisions */

typedef enum fpay_decision {
    FPAY_DECLINE = 0,
    FPAY_APPROVE = 1,
} fpay_decision;

/* Why a decision was taken. Stable codes, appended only. The text is what a
 * terminal may show the customer (docs/service.md lists the prompts); none
 * says a score. LIVENESS (2) is no longer returned: a liveness refusal is
 * SPOOF (the model saw an attack: the customer must present their own
 * face) or CAPTURE_UNSURE (the picture was too blurry for the model to
 * decide: ask once more to hold still), so that a terminal can prompt. */
#define FPAY_REASON_LIST(X)                                                   \
    X(NONE, 0, "approved")                                                    \
    X(NO_MATCH, 1, "face does not match the account")                         \
    X(LIVENESS, 2, "liveness check failed")                                   \
    X(QUALITY, 3, "capture quality too low")                                  \
    X(AMBIGUOUS_MULTIPLE_FACES, 4, "more than one face in the frame")         \
    X(NO_FACE, 5, "no face found")                                            \
    X(LOCKED, 6, "account locked after repeated failures")                    \
    X(RE_ENROLL_REQUIRED, 7, "template made by another model: re-enroll")     \
    X(BAD_IMAGE, 8, "image could not be decoded")                             \
    X(INVALID_ACCOUNT, 9, "invalid account number")                           \
    X(THROTTLED, 10, "too many failures: retry later")                        \
    X(DUPLICATE_CAPTURE, 11, "capture already used")                          \
    X(INTERNAL_ERROR, 12, "internal error")                                   \
    X(SPOOF, 13, "please present your own face to the camera")                \
    X(CAPTURE_UNSURE, 14, "please hold still and look at the camera")

typedef enum fpay_reason {
#define FPAY_REASON_ENUM_(name, code, text) FPAY_REASON_##name = code,
    FPAY_REASON_LIST(FPAY_REASON_ENUM_)
#undef FPAY_REASON_ENUM_
} fpay_reason;

/* Upper-case name ("NO_MATCH") and a sentence, static strings. */
FPAY_API const char *fpay_reason_name(fpay_reason r);
FPAY_API const char *fpay_reason_str(fpay_reason r);
FPAY_API const char *fpay_decision_name(fpay_decision d); /* "APPROVE" */

/* Per-stage wall-clock latency of one call, in milliseconds. */
typedef struct fpay_stage_times {
    double decode, detect, select, quality, align, liveness, embed;
    double match;      /* store lookup, decrypt and compare */
    double total;
} fpay_stage_times;

/* What an enroll, verify, delete or unlock call decided. The part above the
 * line is what a terminal may be told; the rest is for the operator's log
 * and metrics only (a terminal that learnt the score could climb it). */
typedef struct fpay_service_result {
    fpay_decision decision;
    fpay_reason reason;
    unsigned quality_reasons;    /* FPAY_QUALITY_* bits with REASON_QUALITY */
    int retry_after_s;           /* > 0 with LOCKED or THROTTLED backoff */
    char message[160];           /* one line for a person; never the score,
                                    never the account number */
    /* ---- operator only ---- */
    float score;                 /* cosine similarity; -2 when not compared */
    float threshold;             /* the threshold it was compared with */
    double fmr;                  /* false-match rate that threshold was
                                    calibrated for */
    int captures_used;           /* enroll: captures that made the template */
    char account_hash_prefix[17];/* first 16 hex digits of the keyed hash */
    fpay_stage_times times;
    fpay_reason operator_reason; /* the reason as the operator sees it: the
                                    same as reason, except that a template
                                    of another model or template version
                                    is RE_ENROLL_REQUIRED here while the
                                    terminal is told NO_MATCH (the answer
                                    of an unknown number) */
} fpay_service_result;

/* --------------------------------------------------------------- service */

typedef struct fpay_service fpay_service;

/* Default threshold, calibrated on LFW's development view (docs/service.md
 * says for which false-match rate and from how many impostor pairs). */
#define FPAY_DEFAULT_THRESHOLD_FMR 1e-4

typedef struct fpay_service_config {
    size_t struct_size;          /* sizeof(fpay_service_config) */
    const char *db_path;         /* SQLite file; created when missing */
    const char *key_file;        /* 32-byte master key (hex, 64 digits); the
                                    file must not be group- or world-
                                    readable. NULL: the environment variable
                                    FACEPAY_MASTER_KEY (64 hex digits) */
    fpay_pipeline_config pipeline;  /* payment-time capture settings; enroll
                                    uses a stricter copy of it */
    const char *default_country_code;  /* for phones without '+'; NULL = none
                                    (such numbers are refused) */
    float threshold;             /* 0 = the calibrated value stored in the
                                    database, else the built-in default;
                                    otherwise a cosine in (0, 1] (anything
                                    else is refused at open) */
    int workers;                 /* face pipelines for concurrent calls: 0 = 1.
                                    With one, pipeline.threads 0 means the
                                    online cores, at most 4 (a terminal's
                                    idle cores speed up liveness and
                                    detection); with several, 1 each */
    int enroll_max_captures;     /* 5 */
    /* Throttling (NIST SP 800-63B-4 style), counters kept in the store. */
    int backoff_after;           /* consecutive failures before backoff: 5 */
    int backoff_base_s;          /* first backoff, doubling after: 30 */
    int lock_after;              /* consecutive failures to a hard lock: 50 */
    int terminal_max_failures;   /* failed verifies per terminal per window
                                    before THROTTLED: 30 */
    int terminal_window_s;       /* 300 */
} fpay_service_config;

/* Fills cfg with the defaults above and the FPAY_CAMERA_DEFAULT pipeline. */
FPAY_API void fpay_service_config_init(fpay_service_config *cfg);

/* Opens (creating or migrating) the store, reads the key and loads the
 * models. cfg is copied. On failure *out is NULL and err says why. */
FPAY_API fpay_status fpay_service_open(const fpay_service_config *cfg,
                                       fpay_service **out, char *err,
                                       size_t err_len);
FPAY_API void fpay_service_close(fpay_service *svc);

/* One capture: either an encoded JPEG/PNG (data, size) or a raw camera
 * frame (frame != NULL). Borrowed. */
typedef struct fpay_capture_source {
    const void *data;
    size_t size;
    const fpay_frame *frame;
} fpay_capture_source;

/* Who asks and for which account. Borrowed. */
typedef struct fpay_request {
    const char *terminal_id;     /* recorded in the audit log; NULL = "local" */
    fpay_id_kind id_kind;
    const char *account;         /* as typed; normalised here */
} fpay_request;

/* Enrolls (or replaces) the account's template from 1..enroll_max_captures
 * captures under the stricter enrollment gates; the template is the
 * normalised mean of their embeddings. */
FPAY_API fpay_status fpay_service_enroll(fpay_service *svc,
                                         const fpay_request *req,
                                         const fpay_capture_source *captures,
                                         int n, fpay_service_result *out);

/* 1:1 verification. An unknown account is compared against a decoy
 * template, so it answers exactly like a known one with the wrong face. */
FPAY_API fpay_status fpay_service_verify(fpay_service *svc,
                                         const fpay_request *req,
                                         const fpay_capture_source *capture,
                                         fpay_service_result *out);

/* n verifications whose embeddings run as one batch (worth it on a GPU
 * backend). outs[i] answers reqs[i]; the status is that of the call, each
 * result carries its own decision. */
FPAY_API fpay_status fpay_service_verify_batch(fpay_service *svc, int n,
                                               const fpay_request *reqs,
                                               const fpay_capture_source *caps,
                                               fpay_service_result *outs);

/* Erasure: removes the template and counters. Deleting an unknown account
 * is not an error (APPROVE with reason NONE means "done"). */
FPAY_API fpay_status fpay_service_delete(fpay_service *svc,
                                         const fpay_request *req,
                                         fpay_service_result *out);
/* Clears the failure counters and a hard lock. */
FPAY_API fpay_status fpay_service_unlock(fpay_service *svc,
                                         const fpay_request *req,
                                         fpay_service_result *out);

/* The threshold in use and the false-match rate it stands for. */
FPAY_API void fpay_service_threshold(const fpay_service *svc,
                                     float *threshold, double *fmr);

/* Per-terminal API keys for the HTTP server, stored as keyed hashes.
 * terminal_add writes a new random key (printable, NUL-terminated) into
 * key_out (key_len >= 48); terminal_check compares in constant time and
 * returns FPAY_OK or FPAY_NOT_FOUND. */
FPAY_API fpay_status fpay_service_terminal_add(fpay_service *svc,
                                               const char *terminal_id,
                                               char *key_out, size_t key_len);
FPAY_API fpay_status fpay_service_terminal_check(fpay_service *svc,
                                                 const char *terminal_id,
                                                 const char *key);

/* ------------------------------------------------- keys, audit, calibrate */

/* Writes a new random master key to path with mode 0600; refuses to
 * overwrite an existing file. */
FPAY_API fpay_status fpay_keygen(const char *path, char *err, size_t err_len);

/* Re-encrypts every template under the key in new_key_file, in one
 * transaction; no re-enrollment needed. The keys behind the account, capture
 * and API-key hashes and the audit chain cannot be re-derived (the store
 * holds no numbers to hash again): they are kept, sealed under the new
 * master key (docs/security.md, "Key rotation"). After rotation the old
 * master key opens no template. */
FPAY_API fpay_status fpay_service_rotate_key(fpay_service *svc,
                                             const char *new_key_file,
                                             char *err, size_t err_len);

/* Walks the hash-chained audit log. *entries gets the number of records,
 * *first_bad the 1-based index of the first record whose chain does not
 * verify (0 when the whole chain holds; then FPAY_OK). */
FPAY_API fpay_status fpay_service_audit_verify(fpay_service *svc,
                                               long *entries, long *first_bad,
                                               char *err, size_t err_len);

/* ----------------------------------------------------------- calibration */

/* The built-in threshold (cosine), used when the store holds no
 * calibration for the loaded model and config.threshold is 0. From
 * `facepay calibrate --fmr 1e-4` on LFW's development view (../shared/
 * lfw-dev: the 4,992 images of pairsDevTrain.txt and pairsDevTest.txt, 1
 * without a face, 3,095 people; MobileFaceNet sha256 d8ba40c0...): of
 * 12,449,354 impostor pairs (every pair of images of two different people)
 * 1,244 score >= it, FMR 9.99e-5; of the 1,599 listed same-person pairs 64
 * score below it, FNMR 4.0%. docs/service.md has the method. */
#define FPAY_DEFAULT_THRESHOLD 0.528928757f

/* What a calibration measured. Counting method: the threshold is the
 * smallest float t with (impostor pairs scoring >= t) <= floor(target_fmr *
 * impostor_pairs); fmr and fnmr are measured at t (a pair matches when its
 * score >= t, as in verification). */
typedef struct fpay_calibration {
    float threshold;
    double target_fmr;
    double fmr;                  /* impostor_accepts / impostor_pairs */
    double fnmr;                 /* genuine_rejects / genuine_pairs */
    long long impostor_pairs;    /* every pair of usable images of two
                                    different people */
    long long impostor_accepts;
    long genuine_pairs;          /* the listed same-person pairs, both usable */
    long genuine_rejects;
    int images;                  /* distinct images listed */
    int images_unusable;         /* unreadable or no face: left out */
    int identities;              /* people among the usable images */
    char model_sha256[65];
    long long genuine_pairs_all; /* every pair of usable images of the same
                                    person, listed or not */
    long long genuine_rejects_all;
    double fnmr_all;             /* genuine_rejects_all / genuine_pairs_all */
} fpay_calibration;

/* Progress of a long call: done of total units (calibrate: images
 * embedded). Called from worker threads, one call at a time, after each
 * unit; ctx is the caller's. */
typedef void (*fpay_progress_fn)(void *ctx, int done, int total);

/* Embeds every image listed in the LFW-style pairs files (View 1: "N",
 * then N same-person lines "name i j" and N different-person lines "name1 i
 * name2 j"; View 2: "FOLDS N"; images at root/name/name_NNNN.jpg) once with
 * the payment pipeline (detect, align, embed; the quality gate and liveness
 * are not applied, so every detectable face is scored), scores every
 * cross-identity pair of those images as impostors and the listed same
 * pairs as genuines, and picks the threshold for target_fmr (0 < fmr < 1;
 * it needs at least 1/fmr impostor pairs, else FPAY_INVALID_ARGUMENT).
 * threads: pipelines run in parallel (0 = 1). err (caller-owned) says what
 * is wrong. */
FPAY_API fpay_status fpay_calibrate(const fpay_pipeline_config *pipeline,
                                    int threads,
                                    const char *const *pairs_files, int n_files,
                                    const char *root, double target_fmr,
                                    fpay_calibration *out, char *err,
                                    size_t err_len);
/* Same, calling progress (may be NULL) after each image is embedded. */
FPAY_API fpay_status fpay_calibrate_progress(const fpay_pipeline_config *pipeline,
                                             int threads,
                                             const char *const *pairs_files,
                                             int n_files, const char *root,
                                             double target_fmr,
                                             fpay_progress_fn progress,
                                             void *progress_ctx,
                                             fpay_calibration *out, char *err,
                                             size_t err_len);

/* fpay_calibrate with the service's payment pipeline settings, then stores
 * the threshold, its FMR, the counts and the model's sha256 in the
 * database (read by every later fpay_service_open with threshold 0) and
 * uses it from now on. */
FPAY_API fpay_status fpay_service_calibrate(fpay_service *svc, int threads,
                                            const char *const *pairs_files,
                                            int n_files, const char *root,
                                            double target_fmr,
                                            fpay_calibration *out, char *err,
                                            size_t err_len);
/* Same, with progress as in fpay_calibrate_progress. */
FPAY_API fpay_status fpay_service_calibrate_progress(
    fpay_service *svc, int threads, const char *const *pairs_files, int n_files,
    const char *root, double target_fmr, fpay_progress_fn progress,
    void *progress_ctx, fpay_calibration *out, char *err, size_t err_len);

#ifdef __cplusplus
}
#endif
#endif /* FACEPAY_SERVICE_H */
