/*
 * metrics.c - what GET /metrics reports, in the Prometheus text format
 * (version 0.0.4): requests by route and status, request latency by route,
 * decisions by route and reason, per-stage latency of the face pipeline
 * (fpay_service_result.times) and verify batch sizes. One mutex: an update
 * is a few additions, next to tens of milliseconds of face pipeline.
 */
#include "server_internal.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* Status codes the server sends, in label order; anything else counts as
 * the last ("other"). */
static const int status_codes[] = {200, 201, 400, 401, 404, 405, 409, 413, 415,
                                   422, 423, 429, 431, 500, 503, 0};
#define N_STATUS (sizeof status_codes / sizeof status_codes[0])

/* Latency buckets (seconds): 1 ms .. 10 s, about x2.5 apart. */
static const double lat_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                    0.1,   0.25,   0.5,   1,    2.5,   5, 10};
#define N_LAT (sizeof lat_bounds / sizeof lat_bounds[0])

static const double batch_bounds[] = {1, 2, 4, 8, 16, 32, 64};
#define N_BATCH (sizeof batch_bounds / sizeof batch_bounds[0])

#define N_REASON 13  /* FPAY_REASON_LIST's codes are 0..12 */
#define N_STAGE 9

static const char *const stage_names[N_STAGE] = {"decode",   "detect", "select",
                                                 "quality",  "align",  "liveness",
                                                 "embed",    "match",  "total"};

typedef struct histo {
    unsigned long long buckets[N_LAT + 1]; /* the last is +Inf */
    unsigned long long count;
    double sum;
} histo;

struct srv_metrics {
    pthread_mutex_t lock;
    unsigned long long requests[SRV_ROUTE_COUNT][N_STATUS];
    histo request_seconds[SRV_ROUTE_COUNT];
    unsigned long long decisions[SRV_ROUTE_COUNT][2][N_REASON];
    histo stage_seconds[N_STAGE];
    unsigned long long batch_buckets[N_BATCH + 1];
    unsigned long long batch_count, batch_sum;
};

srv_metrics *srv_metrics_new(void)
{
    srv_metrics *m = calloc(1, sizeof *m);
    if (m && pthread_mutex_init(&m->lock, NULL)) {
        free(m);
        return NULL;
    }
    return m;
}

void srv_metrics_free(srv_metrics *m)
{
    if (!m)
        return;
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static void histo_add(histo *h, double v)
{
    size_t i = 0;
    while (i < N_LAT && v > lat_bounds[i])
        i++;
    h->buckets[i]++;
    h->count++;
    h->sum += v;
}

void srv_metrics_request(srv_metrics *m, srv_route route, int http_status, double seconds)
{
    if (!m || (unsigned)route >= SRV_ROUTE_COUNT)
        return;
    size_t s = 0;
    while (s < N_STATUS - 1 && status_codes[s] != http_status)
        s++;
    pthread_mutex_lock(&m->lock);
    m->requests[route][s]++;
    histo_add(&m->request_seconds[route], seconds);
    pthread_mutex_unlock(&m->lock);
}

void srv_metrics_decision(srv_metrics *m, srv_route route, const fpay_service_result *r)
{
    if (!m || (unsigned)route >= SRV_ROUTE_COUNT)
        return;
    unsigned reason = (unsigned)r->reason < N_REASON ? (unsigned)r->reason
                                                     : (unsigned)FPAY_REASON_INTERNAL_ERROR;
    const double st[N_STAGE] = {r->times.decode,   r->times.detect, r->times.select,
                                r->times.quality,  r->times.align,  r->times.liveness,
                                r->times.embed,    r->times.match,  r->times.total};
    pthread_mutex_lock(&m->lock);
    m->decisions[route][r->decision == FPAY_APPROVE][reason]++;
    /* Stages that did not run (0 ms) are not observations: a declined
     * capture would otherwise pull the embed histogram to zero. */
    for (int i = 0; i < N_STAGE; i++)
        if (st[i] > 0)
            histo_add(&m->stage_seconds[i], st[i] / 1e3);
    pthread_mutex_unlock(&m->lock);
}

void srv_metrics_batch(srv_metrics *m, int size)
{
    if (!m || size < 1)
        return;
    size_t i = 0;
    while (i < N_BATCH && (double)size > batch_bounds[i])
        i++;
    pthread_mutex_lock(&m->lock);
    m->batch_buckets[i]++;
    m->batch_count++;
    m->batch_sum += (unsigned long long)size;
    pthread_mutex_unlock(&m->lock);
}

/* ------------------------------------------------------------ render */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    int failed;
} sbuf;

static void put(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(sbuf *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = 1;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = (b->cap + (size_t)n + 1) * 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

static void put_histo(sbuf *b, const char *name, const char *label, const char *value,
                      const histo *h, const double *bounds, size_t n_bounds,
                      const unsigned long long *buckets, unsigned long long count, double sum)
{
    unsigned long long cum = 0;
    char sep[96];
    snprintf(sep, sizeof sep, "%s=\"%s\",", label, value);
    for (size_t i = 0; i <= n_bounds; i++) {
        cum += h ? h->buckets[i] : buckets[i];
        if (i < n_bounds)
            put(b, "%s_bucket{%sle=\"%g\"} %llu\n", name, label[0] ? sep : "", bounds[i], cum);
        else
            put(b, "%s_bucket{%sle=\"+Inf\"} %llu\n", name, label[0] ? sep : "", cum);
    }
    if (label[0]) {
        put(b, "%s_sum{%s=\"%s\"} %.6f\n", name, label, value, h ? h->sum : sum);
        put(b, "%s_count{%s=\"%s\"} %llu\n", name, label, value, h ? h->count : count);
    } else {
        put(b, "%s_sum %.6f\n", name, h ? h->sum : sum);
        put(b, "%s_count %llu\n", name, h ? h->count : count);
    }
}

char *srv_metrics_render(srv_metrics *m, int nonces_live)
{
    sbuf b = {malloc(16384), 0, 16384, 0};
    if (!b.p)
        return NULL;
    b.p[0] = 0;
    /* Render from a copy: the lock is not held while formatting. */
    srv_metrics *c = malloc(sizeof *c);
    if (!c) {
        free(b.p);
        return NULL;
    }
    pthread_mutex_lock(&m->lock);
    memcpy(c, m, sizeof *c);
    pthread_mutex_unlock(&m->lock);

    put(&b, "# HELP facepay_http_requests_total HTTP requests answered, by route and status.\n"
            "# TYPE facepay_http_requests_total counter\n");
    for (int r = 0; r < SRV_ROUTE_COUNT; r++)
        for (size_t s = 0; s < N_STATUS; s++) {
            char code[16];
            if (status_codes[s])
                snprintf(code, sizeof code, "%d", status_codes[s]);
            else
                strcpy(code, "other");
            put(&b, "facepay_http_requests_total{route=\"%s\",status=\"%s\"} %llu\n",
                srv_route_name((srv_route)r), code, c->requests[r][s]);
        }

    put(&b, "# HELP facepay_http_request_duration_seconds Time from the request's "
            "headers to its answer, by route.\n"
            "# TYPE facepay_http_request_duration_seconds histogram\n");
    for (int r = 0; r < SRV_ROUTE_COUNT; r++)
        put_histo(&b, "facepay_http_request_duration_seconds", "route",
                  srv_route_name((srv_route)r), &c->request_seconds[r], lat_bounds, N_LAT,
                  NULL, 0, 0);

    put(&b, "# HELP facepay_decisions_total Decisions of the service, by route, "
            "decision and reason.\n"
            "# TYPE facepay_decisions_total counter\n");
    const srv_route dr[] = {SRV_ROUTE_ENROLL, SRV_ROUTE_VERIFY, SRV_ROUTE_DELETE};
    for (size_t r = 0; r < sizeof dr / sizeof dr[0]; r++)
        for (int d = 0; d < 2; d++)
            for (int k = 0; k < N_REASON; k++) {
                /* APPROVE only ever goes with NONE: skip impossible rows. */
                if (d == 1 && k != FPAY_REASON_NONE)
                    continue;
                put(&b, "facepay_decisions_total{route=\"%s\",decision=\"%s\",reason=\"%s\"} %llu\n",
                    srv_route_name(dr[r]), d ? "APPROVE" : "DECLINE",
                    srv_reason_name((fpay_reason)k), c->decisions[dr[r]][d][k]);
            }

    put(&b, "# HELP facepay_stage_duration_seconds Per-stage latency of the face "
            "pipeline and the match (stages that ran).\n"
            "# TYPE facepay_stage_duration_seconds histogram\n");
    for (int s = 0; s < N_STAGE; s++)
        put_histo(&b, "facepay_stage_duration_seconds", "stage", stage_names[s],
                  &c->stage_seconds[s], lat_bounds, N_LAT, NULL, 0, 0);

    put(&b, "# HELP facepay_verify_batch_size Verifies per fpay_service_verify_batch call.\n"
            "# TYPE facepay_verify_batch_size histogram\n");
    put_histo(&b, "facepay_verify_batch_size", "", "", NULL, batch_bounds, N_BATCH,
              c->batch_buckets, c->batch_count, (double)c->batch_sum);

    put(&b, "# HELP facepay_nonces_live Nonces issued and not yet used or expired.\n"
            "# TYPE facepay_nonces_live gauge\n"
            "facepay_nonces_live %d\n",
        nonces_live);
    free(c);
    if (b.failed) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
