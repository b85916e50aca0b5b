/*
 * json_io.c - the JSON bodies of `facepay serve`: parsing what a terminal
 * sends (every field checked for type and size before anything is
 * allocated for it) and writing what it is told (never the score).
 */
#include "server_internal.h"

#include <cjson/cJSON.h>
#include <sodium.h>

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void srv_error_set(srv_error *e, int http, const char *code, const char *fmt, ...)
{
    if (!e)
        return;
    e->http = http;
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------- names */

const char *srv_route_name(srv_route r)
{
    static const char *const names[SRV_ROUTE_COUNT] = {
        "enroll", "verify", "delete", "nonce", "healthz", "metrics", "other"};
    return (unsigned)r < SRV_ROUTE_COUNT ? names[r] : "other";
}

/* Our own tables from the header's X-macro list, so that this file needs
 * nothing of the service's code (the HTTP layer is tested without it). */
const char *srv_reason_name(fpay_reason r)
{
    switch (r) {
#define SRV_REASON_NAME_(name, code, text) case FPAY_REASON_##name: return #name;
        FPAY_REASON_LIST(SRV_REASON_NAME_)
#undef SRV_REASON_NAME_
    }
    return "INTERNAL_ERROR";
}

const char *srv_reason_text(fpay_reason r)
{
    switch (r) {
#define SRV_REASON_TEXT_(name, code, text) case FPAY_REASON_##name: return text;
        FPAY_REASON_LIST(SRV_REASON_TEXT_)
#undef SRV_REASON_TEXT_
    }
    return "internal error";
}

/* ---------------------------------------------------------- accounts */

int srv_account_set(srv_account *a, const char *field, const char *value,
                    size_t value_len, const char *country, srv_error *err)
{
    if (!strcmp(field, "phone"))
        a->kind = FPAY_ID_PHONE;
    else if (!strcmp(field, "id_card"))
        a->kind = FPAY_ID_CN_RESIDENT;
    else {
        srv_error_set(err, 400, "bad_request", "unknown account field '%.32s'", field);
        return -1;
    }
    if (value_len == 0 || value_len >= sizeof a->typed || memchr(value, 0, value_len)) {
        srv_error_set(err, 400, "invalid_account", "%s must be 1..%d characters", field,
                      (int)sizeof a->typed - 1);
        return -1;
    }
    memcpy(a->typed, value, value_len);
    a->typed[value_len] = 0;
    /* Checked here so that a typo is a 400 with its reason; the service
     * normalises again (and never sees an invalid number from us). */
    char norm[FPAY_ACCOUNT_ID_MAX], why[160] = "";
    if (fpay_account_id_normalize(a->kind, a->typed, country, norm, sizeof norm, why,
                                  sizeof why) != FPAY_OK) {
        srv_error_set(err, 400, "invalid_account", "invalid %s: %s", field,
                      why[0] ? why : "not a valid account number");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ base64 */

int srv_base64_decode(const char *b64, size_t len, size_t max_bytes, srv_blob *out,
                      srv_error *err)
{
    out->data = NULL;
    out->size = 0;
    if (len == 0) {
        srv_error_set(err, 400, "bad_image", "the image is empty");
        return -1;
    }
    /* Whitespace does not count, but an upper bound from the raw length is
     * enough to refuse before allocating: 3 bytes per 4 characters. */
    size_t bound = len / 4 * 3 + 3;
    size_t cap = bound;
    if (bound > max_bytes) {
        size_t nonspace = 0;
        for (size_t i = 0; i < len; i++)
            nonspace += !(b64[i] == ' ' || b64[i] == '\n' || b64[i] == '\r' || b64[i] == '\t');
        if (nonspace / 4 * 3 > max_bytes + 2) {
            srv_error_set(err, 413, "image_too_large",
                          "the image is over %zu bytes once decoded", max_bytes);
            return -1;
        }
        cap = max_bytes + 3;
    }
    out->data = malloc(cap);
    if (!out->data) {
        srv_error_set(err, 503, "out_of_memory", "out of memory: retry later");
        return -1;
    }
    const char *end = NULL;
    size_t n = 0;
    if (sodium_base642bin(out->data, cap, b64, len, " \r\n\t", &n, &end,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        (end && end != b64 + len)) {
        free(out->data);
        out->data = NULL;
        size_t at = end ? (size_t)(end - b64) : 0;
        srv_error_set(err, 400, "bad_base64",
                      "the image is not valid base64 (standard alphabet, with "
                      "padding) near character %zu",
                      at);
        return -1;
    }
    if (n == 0 || n > max_bytes) {
        free(out->data);
        out->data = NULL;
        if (n == 0)
            srv_error_set(err, 400, "bad_image", "the image is empty");
        else
            srv_error_set(err, 413, "image_too_large",
                          "the image is over %zu bytes once decoded", max_bytes);
        return -1;
    }
    out->size = n;
    return 0;
}

/* ------------------------------------------------------------ parsing */

static cJSON *parse_object(const char *body, size_t len, srv_error *err)
{
    if (len == 0) {
        srv_error_set(err, 400, "empty_body", "the request body is empty: a JSON object is expected");
        return NULL;
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (!root) {
        size_t at = end && end >= body && end <= body + len ? (size_t)(end - body) : 0;
        srv_error_set(err, 400, "bad_json", "the body is not valid JSON (error near byte %zu)", at);
        return NULL;
    }
    /* Only whitespace may follow the object. */
    for (const char *p = end; p && p < body + len; p++)
        if (!(*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) {
            cJSON_Delete(root);
            srv_error_set(err, 400, "bad_json", "unexpected data after the JSON object");
            return NULL;
        }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        srv_error_set(err, 400, "bad_json", "the body must be a JSON object");
        return NULL;
    }
    return root;
}

/* Exactly one of "phone" and "id_card", a string. */
static int parse_account(const cJSON *root, const char *country, srv_account *a,
                         srv_error *err)
{
    const cJSON *phone = cJSON_GetObjectItemCaseSensitive(root, "phone");
    const cJSON *card = cJSON_GetObjectItemCaseSensitive(root, "id_card");
    if (!!phone == !!card) {
        srv_error_set(err, 400, "invalid_account",
                      phone ? "give either \"phone\" or \"id_card\", not both"
                            : "\"phone\" or \"id_card\" is required");
        return -1;
    }
    const cJSON *v = phone ? phone : card;
    const char *field = phone ? "phone" : "id_card";
    if (!cJSON_IsString(v) || !v->valuestring) {
        srv_error_set(err, 400, "invalid_account", "\"%s\" must be a string", field);
        return -1;
    }
    return srv_account_set(a, field, v->valuestring, strlen(v->valuestring), country, err);
}

static int known_fields(const cJSON *root, const char *const *names, srv_error *err)
{
    for (const cJSON *it = root->child; it; it = it->next) {
        int ok = 0;
        for (int i = 0; names[i] && !ok; i++)
            ok = it->string && !strcmp(it->string, names[i]);
        if (!ok) {
            srv_error_set(err, 400, "bad_request", "unknown field \"%.40s\"",
                          it->string ? it->string : "");
            return -1;
        }
        /* A repeated field is refused, not resolved: a proxy that reads the
         * last copy and us the first would disagree on the account. */
        for (const cJSON *prev = root->child; prev != it; prev = prev->next)
            if (!strcmp(prev->string, it->string)) {
                srv_error_set(err, 400, "bad_request", "field \"%.40s\" appears twice",
                              it->string);
                return -1;
            }
    }
    return 0;
}

static int decode_image(const cJSON *v, const char *what, size_t max, srv_blob *out,
                        srv_error *err)
{
    if (!cJSON_IsString(v) || !v->valuestring) {
        srv_error_set(err, 400, "bad_request", "%s must be a base64 string", what);
        return -1;
    }
    return srv_base64_decode(v->valuestring, strlen(v->valuestring), max, out, err);
}

int srv_parse_enroll_json(const char *body, size_t len, const srv_limits *lim,
                          const char *country, srv_enroll_body *out, srv_error *err)
{
    memset(out, 0, sizeof *out);
    cJSON *root = parse_object(body, len, err);
    if (!root)
        return -1;
    static const char *const fields[] = {"phone", "id_card", "images", NULL};
    int rc = -1;
    if (known_fields(root, fields, err) || parse_account(root, country, &out->account, err))
        goto done;
    const cJSON *imgs = cJSON_GetObjectItemCaseSensitive(root, "images");
    int n = cJSON_IsArray(imgs) ? cJSON_GetArraySize(imgs) : -1;
    if (n < 1 || n > lim->max_images) {
        srv_error_set(err, 400, "bad_request",
                      "\"images\" must be an array of 1..%d base64 images", lim->max_images);
        goto done;
    }
    int i = 0;
    for (const cJSON *it = imgs->child; it; it = it->next, i++) {
        char what[32];
        snprintf(what, sizeof what, "images[%d]", i);
        if (decode_image(it, what, lim->max_image, &out->images[i], err)) {
            /* Say which image was bad. */
            char msg[sizeof err->message];
            snprintf(msg, sizeof msg, "%.20s: %.170s", what, err->message);
            memcpy(err->message, msg, sizeof msg);
            goto done;
        }
        out->n_images = i + 1;
    }
    rc = 0;
done:
    cJSON_Delete(root);
    if (rc)
        srv_enroll_body_free(out);
    return rc;
}

int srv_parse_verify_json(const char *body, size_t len, const srv_limits *lim,
                          const char *country, srv_verify_body *out, srv_error *err)
{
    memset(out, 0, sizeof *out);
    cJSON *root = parse_object(body, len, err);
    if (!root)
        return -1;
    static const char *const fields[] = {"phone", "id_card", "image", "nonce", NULL};
    int rc = -1;
    if (known_fields(root, fields, err) || parse_account(root, country, &out->account, err))
        goto done;
    const cJSON *nonce = cJSON_GetObjectItemCaseSensitive(root, "nonce");
    if (nonce) {
        if (!cJSON_IsString(nonce) || !nonce->valuestring ||
            strlen(nonce->valuestring) >= sizeof out->nonce) {
            srv_error_set(err, 400, "bad_request", "\"nonce\" must be the string GET /v1/nonce gave");
            goto done;
        }
        strcpy(out->nonce, nonce->valuestring);
        out->has_nonce = 1;
    }
    const cJSON *img = cJSON_GetObjectItemCaseSensitive(root, "image");
    if (!img) {
        srv_error_set(err, 400, "bad_request", "\"image\" (base64 JPEG or PNG) is required");
        goto done;
    }
    if (decode_image(img, "\"image\"", lim->max_image, &out->image, err))
        goto done;
    rc = 0;
done:
    cJSON_Delete(root);
    if (rc)
        srv_verify_body_free(out);
    return rc;
}

void srv_enroll_body_free(srv_enroll_body *b)
{
    for (int i = 0; i < SRV_MAX_ENROLL_IMAGES; i++) {
        free(b->images[i].data);
        b->images[i].data = NULL;
    }
    b->n_images = 0;
}

void srv_verify_body_free(srv_verify_body *b)
{
    free(b->image.data);
    b->image.data = NULL;
}

/* ---------------------------------------------------------- answers */

int srv_result_http_status(srv_route route, fpay_status st, const fpay_service_result *r)
{
    /* An error status never approves, whatever the result says. */
    if (st != FPAY_OK && r->decision == FPAY_APPROVE)
        return 500;
    switch (r->reason) {
    case FPAY_REASON_NONE:
        if (st != FPAY_OK)
            return 500;
        return route == SRV_ROUTE_ENROLL ? 201 : 200;
    case FPAY_REASON_NO_MATCH:
    case FPAY_REASON_LIVENESS:
    case FPAY_REASON_SPOOF:
        /* A verify reached its decision: declined. An enrollment that
         * declines enrolled nothing: the capture is refused. */
        return route == SRV_ROUTE_VERIFY ? 200 : 422;
    case FPAY_REASON_QUALITY:
    case FPAY_REASON_CAPTURE_UNSURE:
    case FPAY_REASON_AMBIGUOUS_MULTIPLE_FACES:
    case FPAY_REASON_NO_FACE:
    case FPAY_REASON_BAD_IMAGE:
        return 422;  /* the capture cannot be used: take another */
    case FPAY_REASON_LOCKED:
        return 423;
    case FPAY_REASON_THROTTLED:
        return 429;
    case FPAY_REASON_RE_ENROLL_REQUIRED:
    case FPAY_REASON_DUPLICATE_CAPTURE:
        return 409;
    case FPAY_REASON_INVALID_ACCOUNT:
        return 400;
    case FPAY_REASON_INTERNAL_ERROR:
        return 500;
    }
    return 500;
}

static char *print_and_free(cJSON *o)
{
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return s;
}

char *srv_result_json(const fpay_service_result *r)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    fpay_decision d = r->decision == FPAY_APPROVE ? FPAY_APPROVE : FPAY_DECLINE;
    char msg[sizeof r->message + 1];
    memcpy(msg, r->message, sizeof r->message);
    msg[sizeof r->message] = 0;  /* whatever the service left, it ends */
    cJSON_AddStringToObject(o, "decision", d == FPAY_APPROVE ? "APPROVE" : "DECLINE");
    cJSON_AddStringToObject(o, "reason", srv_reason_name(r->reason));
    cJSON_AddStringToObject(o, "message", msg[0] ? msg : srv_reason_text(r->reason));
    cJSON_AddNumberToObject(o, "retry_after", r->retry_after_s > 0 ? r->retry_after_s : 0);
    if (r->reason == FPAY_REASON_QUALITY && r->quality_reasons) {
        static const struct {
            unsigned bit;
            const char *name;
        } q[] = {{FPAY_QUALITY_TOO_SMALL, "TOO_SMALL"},   {FPAY_QUALITY_BLURRED, "BLURRED"},
                 {FPAY_QUALITY_TOO_DARK, "TOO_DARK"},     {FPAY_QUALITY_TOO_BRIGHT, "TOO_BRIGHT"},
                 {FPAY_QUALITY_POSE, "POSE"},             {FPAY_QUALITY_CUT_BY_EDGE, "CUT_BY_EDGE"}};
        cJSON *arr = cJSON_AddArrayToObject(o, "quality");
        for (size_t i = 0; arr && i < sizeof q / sizeof q[0]; i++)
            if (r->quality_reasons & q[i].bit)
                cJSON_AddItemToArray(arr, cJSON_CreateString(q[i].name));
    }
    return print_and_free(o);
}

char *srv_error_json(const srv_error *e)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "error", e->code ? e->code : "error");
    cJSON_AddStringToObject(o, "message", e->message);
    return print_and_free(o);
}
