/*
 * test_server_http.c - the HTTP layer of `facepay serve` (tools/server)
 * against a fake service: body parsing, nonces, metrics, the batcher, and
 * the routes over a real loopback socket (status codes, messages, limits,
 * auth, replay, multipart, the score never leaving the server).
 *
 * The fake decides from the image bytes: "FACE-<account>" approves, "NOFACE"
 * finds no face, "LOCK" is a locked account, "ERR" an internal failure,
 * anything else does not match. It always sets score 0.8765 so that the
 * tests can check no answer carries it.
 */
#include "server_internal.h"

#include <criterion/criterion.h>
#include <sodium.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <time.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PHONE "+8613800138000"
#define SCORE_TEXT "0.8765"

/* ------------------------------------------------------------ the fake */

static atomic_int fake_batches, fake_batched, fake_max_batch;

static void fake_one(const fpay_request *req, const fpay_capture_source *cap,
                     fpay_service_result *out)
{
    memset(out, 0, sizeof *out);
    out->score = 0.8765f;
    out->threshold = 0.5f;
    out->times.total = 12.5;
    out->times.detect = 3;
    snprintf(out->account_hash_prefix, sizeof out->account_hash_prefix, "0123456789abcdef");
    char want[96];
    snprintf(want, sizeof want, "FACE-%s", req->account);
    const char *img = cap->data;
    size_t n = cap->size;
    out->decision = FPAY_DECLINE;
    if (n == strlen(want) && !memcmp(img, want, n)) {
        out->decision = FPAY_APPROVE;
        out->reason = FPAY_REASON_NONE;
    } else if (n == 6 && !memcmp(img, "NOFACE", 6)) {
        out->reason = FPAY_REASON_NO_FACE;
    } else if (n == 4 && !memcmp(img, "LOCK", 4)) {
        out->reason = FPAY_REASON_LOCKED;
        out->retry_after_s = 30;
    } else if (n == 5 && !memcmp(img, "STALE", 5)) {
        /* A template of another model, as a service that tells it. */
        out->reason = FPAY_REASON_RE_ENROLL_REQUIRED;
    } else if (n == 6 && !memcmp(img, "STALE2", 6)) {
        /* The same, as fpay_service answers it: operator reason only. */
        out->reason = FPAY_REASON_NO_MATCH;
        out->operator_reason = FPAY_REASON_RE_ENROLL_REQUIRED;
    } else if (n == 4 && !memcmp(img, "QUAL", 4)) {
        out->reason = FPAY_REASON_QUALITY;
        out->quality_reasons = FPAY_QUALITY_TOO_SMALL | FPAY_QUALITY_BLURRED;
    } else {
        out->reason = FPAY_REASON_NO_MATCH;
    }
    if (out->operator_reason == FPAY_REASON_NONE)
        out->operator_reason = out->reason;
    snprintf(out->message, sizeof out->message, "%s", srv_reason_text(out->reason));
}

static int is_err(const fpay_capture_source *cap)
{
    return cap->size == 3 && !memcmp(cap->data, "ERR", 3);
}

static fpay_status fake_verify(void *ctx, const fpay_request *req,
                               const fpay_capture_source *cap, fpay_service_result *out)
{
    (void)ctx;
    fake_one(req, cap, out);
    if (is_err(cap)) {
        /* A broken service that wrongly says APPROVE with an error: the
         * server must still refuse. */
        out->decision = FPAY_APPROVE;
        out->reason = FPAY_REASON_NONE;
        return FPAY_INTERNAL;
    }
    return FPAY_OK;
}

static fpay_status fake_verify_batch(void *ctx, int n, const fpay_request *reqs,
                                     const fpay_capture_source *caps,
                                     fpay_service_result *outs)
{
    atomic_fetch_add(&fake_batches, 1);
    atomic_fetch_add(&fake_batched, n);
    int m = atomic_load(&fake_max_batch);
    while (n > m && !atomic_compare_exchange_weak(&fake_max_batch, &m, n))
        ;
    for (int i = 0; i < n; i++)
        fake_verify(ctx, &reqs[i], &caps[i], &outs[i]);
    return FPAY_OK;
}

static fpay_status fake_enroll(void *ctx, const fpay_request *req,
                               const fpay_capture_source *caps, int n,
                               fpay_service_result *out)
{
    (void)ctx, (void)req;
    memset(out, 0, sizeof *out);
    out->score = 0.8765f;
    out->decision = FPAY_APPROVE;
    out->captures_used = n;
    for (int i = 0; i < n; i++)
        if (caps[i].size == 6 && !memcmp(caps[i].data, "NOFACE", 6)) {
            out->decision = FPAY_DECLINE;
            out->reason = FPAY_REASON_NO_FACE;
        }
    return FPAY_OK;
}

static fpay_status fake_remove(void *ctx, const fpay_request *req, fpay_service_result *out)
{
    (void)ctx;
    memset(out, 0, sizeof *out);
    out->decision = strcmp(req->account, PHONE) ? FPAY_DECLINE : FPAY_APPROVE;
    out->reason = out->decision == FPAY_APPROVE ? FPAY_REASON_NONE : FPAY_REASON_INVALID_ACCOUNT;
    return FPAY_OK;
}

static fpay_status fake_check(void *ctx, const char *terminal, const char *key)
{
    (void)ctx;
    return (!strcmp(terminal, "t1") && !strcmp(key, "k1")) ||
                   (!strcmp(terminal, "t2") && !strcmp(key, "k2"))
               ? FPAY_OK
               : FPAY_NOT_FOUND;
}

/* ------------------------------------------------------ json and base64 */

static const srv_limits lim = {4096, 1024, 5};

Test(json_io, verify_body_good_and_bad)
{
    srv_verify_body b;
    srv_error e;
    const char *good = "{\"phone\":\"" PHONE "\",\"image\":\"RkFDRQ==\",\"nonce\":\"abc\"}";
    cr_assert_eq(srv_parse_verify_json(good, strlen(good), &lim, NULL, &b, &e), 0, "%s",
                 e.message);
    cr_expect_eq(b.image.size, 4);
    cr_expect(!memcmp(b.image.data, "FACE", 4));
    cr_expect_str_eq(b.nonce, "abc");
    cr_expect_eq(b.account.kind, FPAY_ID_PHONE);
    srv_verify_body_free(&b);

    static const struct {
        const char *body, *code;
        int http;
    } bad[] = {
        {"", "empty_body", 400},
        {"{\"phone\":", "bad_json", 400},
        {"[1,2]", "bad_json", 400},
        {"{} x", "bad_json", 400},
        {"{\"image\":\"RkFDRQ==\"}", "invalid_account", 400},
        {"{\"phone\":\"" PHONE "\",\"id_card\":\"x\",\"image\":\"RkFDRQ==\"}", "invalid_account", 400},
        {"{\"phone\":\"not a number\",\"image\":\"RkFDRQ==\"}", "invalid_account", 400},
        {"{\"phone\":12,\"image\":\"RkFDRQ==\"}", "invalid_account", 400},
        {"{\"phone\":\"" PHONE "\",\"image\":\"***\"}", "bad_base64", 400},
        {"{\"phone\":\"" PHONE "\",\"image\":\"\"}", "bad_image", 400},
        {"{\"phone\":\"" PHONE "\",\"image\":5}", "bad_request", 400},
        {"{\"phone\":\"" PHONE "\"}", "bad_request", 400},
        {"{\"phone\":\"" PHONE "\",\"image\":\"RkFDRQ==\",\"score\":1}", "bad_request", 400},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&e, 0, sizeof e);
        cr_expect_eq(srv_parse_verify_json(bad[i].body, strlen(bad[i].body), &lim, NULL, &b, &e),
                     -1, "accepted %s", bad[i].body);
        cr_expect_eq(e.http, bad[i].http, "%s: %d", bad[i].body, e.http);
        cr_expect_str_eq(e.code, bad[i].code, "%s: %s (%s)", bad[i].body, e.code, e.message);
        cr_expect(strlen(e.message) > 10, "%s: no message", bad[i].body);
    }
}

Test(json_io, image_size_limit_before_decoding)
{
    size_t n = 2000;  /* decodes to 1500 bytes > lim.max_image 1024 */
    char *big = malloc(n + 64);
    int k = snprintf(big, 64, "{\"phone\":\"%s\",\"image\":\"", PHONE);
    memset(big + k, 'A', n);
    strcpy(big + k + n, "\"}");
    srv_verify_body b;
    srv_error e;
    cr_expect_eq(srv_parse_verify_json(big, strlen(big), &lim, NULL, &b, &e), -1);
    cr_expect_eq(e.http, 413);
    free(big);
}

Test(json_io, enroll_body)
{
    srv_enroll_body b;
    srv_error e;
    const char *good = "{\"phone\":\"" PHONE "\",\"images\":[\"QQ==\",\"QkI=\"]}";
    cr_assert_eq(srv_parse_enroll_json(good, strlen(good), &lim, NULL, &b, &e), 0, "%s",
                 e.message);
    cr_expect_eq(b.n_images, 2);
    srv_enroll_body_free(&b);
    const char *none = "{\"phone\":\"" PHONE "\",\"images\":[]}";
    cr_expect_eq(srv_parse_enroll_json(none, strlen(none), &lim, NULL, &b, &e), -1);
    const char *six = "{\"phone\":\"" PHONE "\",\"images\":[\"QQ==\",\"QQ==\",\"QQ==\",\"QQ==\","
                      "\"QQ==\",\"QQ==\"]}";
    cr_expect_eq(srv_parse_enroll_json(six, strlen(six), &lim, NULL, &b, &e), -1);
    const char *bad2 = "{\"phone\":\"" PHONE "\",\"images\":[\"QQ==\",\"!!\"]}";
    cr_expect_eq(srv_parse_enroll_json(bad2, strlen(bad2), &lim, NULL, &b, &e), -1);
    cr_expect(strstr(e.message, "images[1]"), "%s", e.message);
}

Test(json_io, result_never_carries_the_score)
{
    fpay_service_result r;
    memset(&r, 0, sizeof r);
    r.score = 0.8765f;
    r.threshold = 0.4321f;
    r.decision = FPAY_DECLINE;
    r.reason = FPAY_REASON_THROTTLED;
    r.retry_after_s = 60;
    snprintf(r.account_hash_prefix, sizeof r.account_hash_prefix, "deadbeefdeadbeef");
    char *s = srv_result_json(&r);
    cr_assert(s);
    cr_expect(!strstr(s, "0.87") && !strstr(s, "0.43") && !strstr(s, "score") &&
                  !strstr(s, "deadbeef"),
              "%s", s);
    cr_expect(strstr(s, "\"reason\":\"THROTTLED\"") && strstr(s, "\"retry_after\":60"), "%s", s);
    free(s);
    cr_expect_eq(srv_result_http_status(SRV_ROUTE_VERIFY, FPAY_OK, &r), 429);
    r.reason = FPAY_REASON_NONE;
    r.decision = FPAY_APPROVE;
    cr_expect_eq(srv_result_http_status(SRV_ROUTE_VERIFY, FPAY_INTERNAL, &r), 500);
    cr_expect_eq(srv_result_http_status(SRV_ROUTE_ENROLL, FPAY_OK, &r), 201);
}

/* The broken bodies of corpus/ (also the fuzz target's seeds): never a
 * crash, and every refusal is a 4xx with a code and a sentence. */
Test(json_io, corpus_of_broken_bodies)
{
    DIR *d = opendir(FPAY_SERVER_CORPUS);
    cr_assert(d, "%s", FPAY_SERVER_CORPUS);
    int files = 0, refused = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", FPAY_SERVER_CORPUS, e->d_name);
        FILE *f = fopen(path, "rb");
        cr_assert(f, "%s", path);
        static char buf[1 << 16];
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        files++;
        srv_verify_body v;
        srv_enroll_body en;
        srv_error err;
        memset(&err, 0, sizeof err);
        if (srv_parse_verify_json(buf, n, &lim, "86", &v, &err) == 0) {
            srv_verify_body_free(&v);
        } else {
            refused++;
            cr_expect(err.http >= 400 && err.http < 500 && err.code && err.message[0],
                      "%s: %d %s", e->d_name, err.http, err.message);
        }
        memset(&err, 0, sizeof err);
        if (srv_parse_enroll_json(buf, n, &lim, "86", &en, &err) == 0)
            srv_enroll_body_free(&en);
        else
            cr_expect(err.http >= 400 && err.http < 500 && err.code && err.message[0],
                      "%s: %d %s", e->d_name, err.http, err.message);
    }
    closedir(d);
    cr_expect_geq(files, 16);
    cr_expect_geq(refused, files - 1, "%d of %d refused", refused, files);
}

/* -------------------------------------------------------------- nonces */

Test(nonce, single_use_bound_to_terminal_and_expiring)
{
    srv_nonces *n = srv_nonces_new(8, 3, 10);
    cr_assert(n);
    char a[32], b[32], c[32];
    cr_assert_eq(srv_nonce_issue(n, "t1", 100, a, sizeof a), 0);
    cr_assert_eq(srv_nonce_issue(n, "t1", 100, b, sizeof b), 0);
    cr_expect_eq(strlen(a), SRV_NONCE_CHARS);
    cr_expect_str_neq(a, b);
    cr_expect_eq(srv_nonce_consume(n, "t1", a, 101), SRV_NONCE_OK);
    cr_expect_eq(srv_nonce_consume(n, "t1", a, 101), SRV_NONCE_UNKNOWN, "replay accepted");
    cr_expect_eq(srv_nonce_consume(n, "t2", b, 101), SRV_NONCE_WRONG_TERMINAL);
    cr_expect_eq(srv_nonce_consume(n, "t1", b, 101), SRV_NONCE_UNKNOWN, "burnt nonce accepted");
    cr_assert_eq(srv_nonce_issue(n, "t1", 100, c, sizeof c), 0);
    cr_expect_eq(srv_nonce_consume(n, "t1", c, 111), SRV_NONCE_EXPIRED);
    cr_expect_eq(srv_nonce_consume(n, "t1", "short", 100), SRV_NONCE_UNKNOWN);
    srv_nonces_free(n);
}

Test(nonce, bounded_table_and_per_terminal_quota)
{
    srv_nonces *n = srv_nonces_new(4, 2, 10);
    char x[32], first[32];
    /* A terminal over its quota loses its own oldest nonce. */
    cr_assert_eq(srv_nonce_issue(n, "greedy", 0, first, sizeof first), 0);
    for (int i = 1; i < 10; i++)
        cr_assert_eq(srv_nonce_issue(n, "greedy", i * 0.001, x, sizeof x), 0);
    cr_expect_eq(srv_nonces_live(n, 1), 2);
    cr_expect_eq(srv_nonce_consume(n, "greedy", first, 1), SRV_NONCE_UNKNOWN);
    cr_expect_eq(srv_nonce_consume(n, "greedy", x, 1), SRV_NONCE_OK);
    /* The table itself is bounded: full of live nonces, issue refuses. */
    cr_assert_eq(srv_nonce_issue(n, "a", 1, x, sizeof x), 0);
    cr_assert_eq(srv_nonce_issue(n, "b", 1, x, sizeof x), 0);
    cr_assert_eq(srv_nonce_issue(n, "c", 1, x, sizeof x), 0);
    cr_expect_eq(srv_nonces_live(n, 1), 4);
    cr_expect_eq(srv_nonce_issue(n, "d", 1, x, sizeof x), -1);
    /* Expired ones make room again. */
    cr_expect_eq(srv_nonce_issue(n, "d", 20, x, sizeof x), 0);
    srv_nonces_free(n);
}

/* ------------------------------------------------------------- metrics */

Test(metrics, prometheus_text)
{
    srv_metrics *m = srv_metrics_new();
    srv_metrics_request(m, SRV_ROUTE_VERIFY, 200, 0.03);
    srv_metrics_request(m, SRV_ROUTE_VERIFY, 200, 0.2);
    srv_metrics_request(m, SRV_ROUTE_ENROLL, 418, 0.01);
    fpay_service_result r;
    memset(&r, 0, sizeof r);
    r.decision = FPAY_DECLINE;
    r.reason = FPAY_REASON_NO_MATCH;
    r.times.embed = 8;
    r.times.total = 40;
    srv_metrics_decision(m, SRV_ROUTE_VERIFY, &r);
    srv_metrics_batch(m, 3);
    char *t = srv_metrics_render(m, 7);
    cr_assert(t);
    cr_expect(strstr(t, "facepay_http_requests_total{route=\"verify\",status=\"200\"} 2\n"));
    cr_expect(strstr(t, "facepay_http_requests_total{route=\"enroll\",status=\"other\"} 1\n"));
    cr_expect(strstr(t, "facepay_decisions_total{route=\"verify\",decision=\"DECLINE\","
                        "reason=\"NO_MATCH\"} 1\n"));
    cr_expect(strstr(t, "facepay_stage_duration_seconds_bucket{stage=\"embed\",le=\"0.01\"} 1\n"), "%s", t);
    cr_expect(strstr(t, "facepay_stage_duration_seconds_count{stage=\"decode\"} 0\n"));
    cr_expect(strstr(t, "facepay_verify_batch_size_bucket{le=\"4\"} 1\n"));
    cr_expect(strstr(t, "facepay_verify_batch_size_sum 3.000000\n"));
    cr_expect(strstr(t, "facepay_nonces_live 7\n"));
    /* Every line: a comment or "name{labels} value". */
    for (char *line = strtok(t, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#') {
            cr_expect(!strncmp(line, "# HELP ", 7) || !strncmp(line, "# TYPE ", 7), "%s", line);
            continue;
        }
        char *sp = strrchr(line, ' ');
        cr_assert(sp, "%s", line);
        char *end;
        strtod(sp + 1, &end);
        cr_expect(*end == 0 && end != sp + 1, "value of %s", line);
        cr_expect(line[0] >= 'a' && line[0] <= 'z', "%s", line);
    }
    free(t);
    srv_metrics_free(m);
}

/* ------------------------------------------------------------- batcher */

typedef struct bjob {
    srv_batcher *b;
    int i;
    fpay_service_result out;
    fpay_status st;
} bjob;

static void *batch_client(void *arg)
{
    bjob *j = arg;
    char acct[32], img[64];
    snprintf(acct, sizeof acct, "acct%d", j->i);
    /* Even clients bring the right face, odd ones the wrong one. */
    snprintf(img, sizeof img, j->i % 2 ? "FACE-other" : "FACE-acct%d", j->i);
    fpay_request req = {"t1", FPAY_ID_PHONE, acct};
    fpay_capture_source cap = {img, strlen(img), NULL};
    j->st = srv_batcher_verify(j->b, &req, &cap, &j->out);
    return NULL;
}

static void count_batch(void *ctx, int n)
{
    atomic_fetch_add((atomic_int *)ctx, n);
}

Test(batcher, same_decisions_as_direct_calls_and_batches_form)
{
    atomic_int observed = 0;
    atomic_store(&fake_batches, 0);
    atomic_store(&fake_batched, 0);
    atomic_store(&fake_max_batch, 0);
    srv_batcher *b = srv_batcher_new(fake_verify_batch, NULL, 4, 50, 32, count_batch, &observed);
    cr_assert(b);
    enum { N = 16 };
    bjob jobs[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        jobs[i] = (bjob){.b = b, .i = i};
        cr_assert_eq(pthread_create(&th[i], NULL, batch_client, &jobs[i]), 0);
    }
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < N; i++) {
        cr_expect_eq(jobs[i].st, FPAY_OK);
        cr_expect_eq(jobs[i].out.decision, i % 2 ? FPAY_DECLINE : FPAY_APPROVE, "client %d", i);
        cr_expect_eq(jobs[i].out.reason, i % 2 ? FPAY_REASON_NO_MATCH : FPAY_REASON_NONE);
    }
    cr_expect_eq(atomic_load(&fake_batched), N);
    cr_expect_eq(atomic_load(&observed), N);
    cr_expect_leq(atomic_load(&fake_max_batch), 4, "a batch over max_batch");
    /* 16 requests within a 50 ms window cannot all go alone. */
    cr_expect_lt(atomic_load(&fake_batches), N, "%d batches", atomic_load(&fake_batches));
    srv_batcher_free(b);
}

Test(batcher, window_bounds_the_wait)
{
    srv_batcher *b = srv_batcher_new(fake_verify_batch, NULL, 8, 20, 8, NULL, NULL);
    bjob j = {.b = b, .i = 0};
    double t0 = srv_now_s();
    batch_client(&j);
    double waited = srv_now_s() - t0;
    cr_expect_eq(j.out.decision, FPAY_APPROVE);
    cr_expect(waited >= 0.015 && waited < 1.0, "waited %.3f s", waited);
    srv_batcher_free(b);
    cr_expect_null(srv_batcher_new(fake_verify_batch, NULL, 0, 1, 8, NULL, NULL));
}

/* -------------------------------------------------- over a real socket */

typedef struct fixture {
    srv_server *server;
    srv_nonces *nonces;
    srv_metrics *metrics;
    srv_batcher *batcher;
    int port;
    srv_http_conn *conn;
} fixture;

static fixture fx;

/* Listener limits of the next start(); zero = the fixture's defaults. */
static int next_per_ip, next_deadline_s, next_max_conn;
static size_t next_budget;

static void start(int batching)
{
    memset(&fx, 0, sizeof fx);
    cr_assert_geq(sodium_init(), 0);
    fx.nonces = srv_nonces_new(64, 32, 30);
    fx.metrics = srv_metrics_new();
    if (batching)
        fx.batcher = srv_batcher_new(fake_verify_batch, NULL, 4, 30, 64, NULL, NULL);
    srv_config cfg = {
        .ops = {NULL, fake_enroll, fake_verify, fake_remove, fake_check},
        .limits = {8192, 2048, 5},
        .country = "86",
        .nonces = fx.nonces,
        .metrics = fx.metrics,
        .batcher = fx.batcher,
        .log = NULL,
        .body_budget = next_budget,
    };
    srv_listen l = {"127.0.0.1", 0, next_max_conn ? next_max_conn : 32, 5, 16 * 1024,
                    next_per_ip, next_deadline_s};
    char err[256];
    fx.server = srv_server_start(&cfg, &l, &fx.port, err, sizeof err);
    cr_assert(fx.server, "%s", err);
    cr_assert_gt(fx.port, 0);
    fx.conn = srv_http_connect("127.0.0.1", fx.port, 10, err, sizeof err);
    cr_assert(fx.conn, "%s", err);
}

static void stop(void)
{
    srv_http_close(fx.conn);
    srv_server_stop(fx.server);
    srv_batcher_free(fx.batcher);
    srv_nonces_free(fx.nonces);
    srv_metrics_free(fx.metrics);
}

static void start_plain(void)
{
    start(0);
}

#define AUTH1 "X-Terminal-Id: t1\r\nAuthorization: Bearer k1\r\n"

static srv_http_response req(const char *method, const char *path, const char *headers,
                             const char *ctype, const char *body)
{
    srv_http_response r;
    char err[256] = "";
    int rc = srv_http_request(fx.conn, method, path, headers, ctype, body, body ? strlen(body) : 0,
                              &r, err, sizeof err);
    cr_assert_eq(rc, 0, "%s %s: %s", method, path, err);
    /* Whatever the route, the score never leaves the server. */
    cr_expect(!strstr(r.body, SCORE_TEXT) && !strstr(r.body, "score"), "%s", r.body);
    return r;
}

static void expect(const char *method, const char *path, const char *headers, const char *ctype,
                   const char *body, int status, const char *fragment)
{
    srv_http_response r = req(method, path, headers, ctype, body);
    cr_expect_eq(r.status, status, "%s %s: %d %s", method, path, r.status, r.body);
    if (fragment)
        cr_expect(strstr(r.body, fragment), "%s %s: '%s' not in %s", method, path, fragment,
                  r.body);
    srv_http_response_free(&r);
}

static void get_nonce(const char *auth, char *out)
{
    srv_http_response r = req("GET", "/v1/nonce", auth, NULL, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    const char *p = strstr(r.body, "\"nonce\":\"");
    cr_assert(p);
    memcpy(out, p + 9, SRV_NONCE_CHARS);
    out[SRV_NONCE_CHARS] = 0;
    cr_expect(strstr(r.body, "\"expires_in\":30"), "%s", r.body);
    srv_http_response_free(&r);
}

static char *verify_json(const char *phone, const char *image, const char *nonce)
{
    char b64[256];
    sodium_bin2base64(b64, sizeof b64, (const unsigned char *)image, strlen(image),
                      sodium_base64_VARIANT_ORIGINAL);
    char *s = malloc(512);
    snprintf(s, 512, "{\"phone\":\"%s\",\"image\":\"%s\"%s%s%s}", phone, b64,
             nonce ? ",\"nonce\":\"" : "", nonce ? nonce : "", nonce ? "\"" : "");
    return s;
}

static void verify_expect(const char *phone, const char *image, int status,
                          const char *fragment)
{
    char nonce[32];
    get_nonce(AUTH1, nonce);
    char *body = verify_json(phone, image, nonce);
    expect("POST", "/v1/verify", AUTH1, "application/json", body, status, fragment);
    free(body);
}

TestSuite(http, .init = start_plain, .fini = stop, .timeout = 60);

Test(http, health_routes_methods)
{
    expect("GET", "/healthz", NULL, NULL, NULL, 200, "\"ok\"");
    expect("GET", "/nope", NULL, NULL, NULL, 404, "no such endpoint");
    expect("GET", "/v1/verify", AUTH1, NULL, NULL, 405, "use POST");
    expect("PUT", "/v1/nonce", AUTH1, "application/json", "{}", 405, "use GET");
    expect("GET", "/v1/accounts/", AUTH1, NULL, NULL, 404, NULL);
}

Test(http, auth)
{
    expect("GET", "/v1/nonce", NULL, NULL, NULL, 401, "X-Terminal-Id");
    expect("GET", "/v1/nonce", "X-Terminal-Id: t1\r\nAuthorization: Bearer nope\r\n", NULL,
           NULL, 401, "unknown terminal or wrong API key");
    expect("GET", "/v1/nonce", "X-Terminal-Id: zz\r\nAuthorization: Bearer k1\r\n", NULL, NULL,
           401, "unknown terminal or wrong API key");
    expect("GET", "/v1/nonce", "X-Terminal-Id: t1\r\nAuthorization: Basic azE=\r\n", NULL, NULL,
           401, "Bearer");
    /* Auth comes before the body is read: a wrong key with a huge declared
     * body is a 401, not a 413. */
    srv_http_response r = req("POST", "/v1/verify", "X-Terminal-Id: t1\r\nAuthorization: Bearer x\r\n",
                              "application/json", "{}");
    cr_expect_eq(r.status, 401);
    srv_http_response_free(&r);
    expect("GET", "/metrics", NULL, NULL, NULL, 200, "facepay_http_requests_total");
}

Test(http, verify_decisions_and_statuses)
{
    verify_expect(PHONE, "FACE-" PHONE, 200, "\"decision\":\"APPROVE\"");
    verify_expect(PHONE, "FACE-someone-else", 200, "\"reason\":\"NO_MATCH\"");
    verify_expect(PHONE, "NOFACE", 422, "\"reason\":\"NO_FACE\"");
    verify_expect(PHONE, "QUAL", 422, "\"quality\":[\"TOO_SMALL\",\"BLURRED\"]");
    verify_expect(PHONE, "ERR", 500, "\"decision\":\"DECLINE\"");
    /* Retry-After travels in the header too. */
    char nonce[32];
    get_nonce(AUTH1, nonce);
    char *body = verify_json(PHONE, "LOCK", nonce);
    srv_http_response r = req("POST", "/v1/verify", AUTH1, "application/json", body);
    cr_expect_eq(r.status, 423);
    cr_expect_str_eq(r.retry_after, "30");
    cr_expect(strstr(r.body, "\"retry_after\":30"), "%s", r.body);
    cr_expect(strstr(r.content_type, "application/json"));
    srv_http_response_free(&r);
    free(body);
}

Test(http, nonce_replay_and_terminal_binding)
{
    char nonce[32];
    get_nonce(AUTH1, nonce);
    char *body = verify_json(PHONE, "FACE-" PHONE, nonce);
    expect("POST", "/v1/verify", AUTH1, "application/json", body, 200, "APPROVE");
    expect("POST", "/v1/verify", AUTH1, "application/json", body, 409, "replayed request");
    free(body);
    body = verify_json(PHONE, "FACE-" PHONE, NULL);
    expect("POST", "/v1/verify", AUTH1, "application/json", body, 400, "nonce is required");
    free(body);
    /* Another terminal's nonce is refused. */
    get_nonce("X-Terminal-Id: t2\r\nAuthorization: Bearer k2\r\n", nonce);
    body = verify_json(PHONE, "FACE-" PHONE, nonce);
    expect("POST", "/v1/verify", AUTH1, "application/json", body, 409, "nonce");
    free(body);
}

Test(http, bad_bodies)
{
    char nonce[32];
    get_nonce(AUTH1, nonce);
    expect("POST", "/v1/verify", AUTH1, "text/plain", "hello", 415, "application/json");
    expect("POST", "/v1/verify", AUTH1, NULL, "{}", 415, "Content-Type");
    expect("POST", "/v1/verify", AUTH1, "application/json", "", 400, "empty");
    expect("POST", "/v1/verify", AUTH1, "application/json", "{\"phone\":", 400, "not valid JSON");
    char b[256];
    snprintf(b, sizeof b, "{\"phone\":\"%s\",\"nonce\":\"%s\",\"image\":\"@@@@\"}", PHONE, nonce);
    expect("POST", "/v1/verify", AUTH1, "application/json", b, 400, "base64");
    snprintf(b, sizeof b, "{\"phone\":\"12ab\",\"nonce\":\"%s\",\"image\":\"QQ==\"}", nonce);
    expect("POST", "/v1/verify", AUTH1, "application/json", b, 400, "invalid phone");
    /* A body over the limit (8192 here), declared or not. */
    size_t n = 20000;
    char *big = malloc(n + 1);
    memset(big, ' ', n);
    big[n] = 0;
    big[0] = '{';
    big[n - 1] = '}';
    expect("POST", "/v1/enroll", AUTH1, "application/json", big, 413, "over 8192 bytes");
    free(big);
    /* The connection still answers afterwards (or reconnects). */
    expect("GET", "/healthz", NULL, NULL, NULL, 200, NULL);
}

Test(http, multipart_verify)
{
    char nonce[32];
    get_nonce(AUTH1, nonce);
    char body[1024];
    snprintf(body, sizeof body,
             "--XyZ\r\nContent-Disposition: form-data; name=\"phone\"\r\n\r\n%s\r\n"
             "--XyZ\r\nContent-Disposition: form-data; name=\"nonce\"\r\n\r\n%s\r\n"
             "--XyZ\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\n"
             "Content-Type: image/jpeg\r\n\r\nFACE-%s\r\n--XyZ--\r\n",
             PHONE, nonce, PHONE);
    expect("POST", "/v1/verify", AUTH1, "multipart/form-data; boundary=XyZ", body, 200,
           "APPROVE");
    expect("POST", "/v1/verify", AUTH1, "multipart/form-data; boundary=XyZ", body, 409, "nonce");
    get_nonce(AUTH1, nonce);
    snprintf(body, sizeof body,
             "--XyZ\r\nContent-Disposition: form-data; name=\"phone\"\r\n\r\n%s\r\n"
             "--XyZ\r\nContent-Disposition: form-data; name=\"nonce\"\r\n\r\n%s\r\n--XyZ--\r\n",
             PHONE, nonce);
    expect("POST", "/v1/verify", AUTH1, "multipart/form-data; boundary=XyZ", body, 400, "image");
    expect("POST", "/v1/verify", AUTH1, "multipart/form-data", body, 400, "boundary");
}

Test(http, enroll_delete_metrics)
{
    char body[256];
    snprintf(body, sizeof body, "{\"phone\":\"%s\",\"images\":[\"QQ==\",\"Qg==\"]}", PHONE);
    expect("POST", "/v1/enroll", AUTH1, "application/json", body, 201, "APPROVE");
    snprintf(body, sizeof body, "{\"phone\":\"%s\",\"images\":[\"Tk9GQUNF\"]}", PHONE);
    expect("POST", "/v1/enroll", AUTH1, "application/json", body, 422, "NO_FACE");
    expect("DELETE", "/v1/accounts/%2B8613800138000", AUTH1, NULL, NULL, 200, "APPROVE");
    expect("DELETE", "/v1/accounts/xyz", AUTH1, NULL, NULL, 400, "invalid phone");
    expect("DELETE", "/v1/accounts/%2B8613800138000", NULL, NULL, NULL, 401, NULL);
    srv_http_response r = req("GET", "/metrics", NULL, NULL, NULL);
    cr_expect_eq(r.status, 200);
    cr_expect(strstr(r.content_type, "text/plain"));
    cr_expect(strstr(r.body, "facepay_http_requests_total{route=\"enroll\",status=\"201\"} 1\n"),
              "%s", r.body);
    cr_expect(strstr(r.body, "facepay_http_requests_total{route=\"delete\",status=\"401\"} 1\n"));
    cr_expect(strstr(r.body, "facepay_decisions_total{route=\"enroll\",decision=\"DECLINE\","
                             "reason=\"NO_FACE\"} 1\n"));
    srv_http_response_free(&r);
}

/* A client that sends half a request and stalls is cut off after the idle
 * timeout (5 s in this fixture) instead of holding a thread for ever. */
Test(http, stalled_client_is_disconnected)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)fx.port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    const char *half = "POST /v1/verify HTTP/1.1\r\nHost: x\r\nX-Terminal-Id: t1\r\n";
    cr_assert_eq(send(fd, half, strlen(half), 0), (ssize_t)strlen(half));
    struct timeval tv = {20, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    double t0 = srv_now_s();
    char buf[256];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    double waited = srv_now_s() - t0;
    cr_expect_leq(n, 0, "an answer to half a request");
    cr_expect(waited >= 3 && waited < 15, "closed after %.1f s", waited);
    close(fd);
}

/* The same requests through the batcher: the same answers, in batches. */
typedef struct http_job {
    int port, i, status;
    char body[256];
} http_job;

static void *http_client(void *arg)
{
    http_job *j = arg;
    char err[256];
    srv_http_conn *c = srv_http_connect("127.0.0.1", j->port, 10, err, sizeof err);
    if (!c)
        return NULL;
    srv_http_response r;
    if (srv_http_request(c, "GET", "/v1/nonce", AUTH1, NULL, NULL, 0, &r, err, sizeof err) == 0) {
        const char *p = strstr(r.body, "\"nonce\":\"");
        char nonce[32] = "";
        if (p) {
            memcpy(nonce, p + 9, SRV_NONCE_CHARS);
            nonce[SRV_NONCE_CHARS] = 0;
        }
        srv_http_response_free(&r);
        char *body = verify_json(PHONE, j->i % 2 ? "FACE-x" : "FACE-" PHONE, nonce);
        if (srv_http_request(c, "POST", "/v1/verify", AUTH1, "application/json", body,
                             strlen(body), &r, err, sizeof err) == 0) {
            j->status = r.status;
            snprintf(j->body, sizeof j->body, "%s", r.body);
            srv_http_response_free(&r);
        }
        free(body);
    }
    srv_http_close(c);
    return NULL;
}

static void start_batching(void)
{
    start(1);
}

Test(http_batched, concurrent_verifies_same_answers, .init = start_batching, .fini = stop,
     .timeout = 60)
{
    atomic_store(&fake_batches, 0);
    atomic_store(&fake_batched, 0);
    enum { N = 12 };
    http_job jobs[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        jobs[i] = (http_job){.port = fx.port, .i = i};
        cr_assert_eq(pthread_create(&th[i], NULL, http_client, &jobs[i]), 0);
    }
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < N; i++) {
        cr_expect_eq(jobs[i].status, 200, "client %d: %d %s", i, jobs[i].status, jobs[i].body);
        cr_expect(strstr(jobs[i].body, i % 2 ? "\"NO_MATCH\"" : "\"APPROVE\""), "client %d: %s", i,
                  jobs[i].body);
    }
    cr_expect_eq(atomic_load(&fake_batched), N, "every verify went through the batcher");
}

/* ------------------------------------------------ connection hygiene */

static int raw_connect(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)fx.port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

static void raw_send(int fd, const char *data)
{
    cr_assert_eq(send(fd, data, strlen(data), MSG_NOSIGNAL), (ssize_t)strlen(data));
}

/* Reads what arrives within timeout_s, until the peer closes or the
 * timeout; returns the bytes read, -1 when nothing came and the connection
 * is still open at the end. */
static ssize_t raw_read(int fd, char *out, size_t cap, double timeout_s)
{
    struct timeval tv = {(time_t)timeout_s, (suseconds_t)((timeout_s - (time_t)timeout_s) * 1e6)};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    size_t len = 0;
    double t0 = srv_now_s();
    while (len + 1 < cap && srv_now_s() - t0 < timeout_s) {
        ssize_t n = recv(fd, out + len, cap - 1 - len, 0);
        if (n == 0)
            break;
        if (n < 0) {
            out[len] = 0;
            return len ? (ssize_t)len : -1;
        }
        len += (size_t)n;
        out[len] = 0;
        if (strstr(out, "\r\n\r\n") && strstr(out, "}"))
            break;
    }
    out[len] = 0;
    return (ssize_t)len;
}

/* 1 when the server closed fd (EOF or reset) before timeout_s. */
static int closed_within(int fd, double timeout_s)
{
    char buf[256];
    struct timeval tv = {0, 100 * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    double t0 = srv_now_s();
    while (srv_now_s() - t0 < timeout_s) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
            return 1;
    }
    return 0;
}

/* libmicrohttpd takes the first of two Content-Length headers; a proxy may
 * take the last: the request is refused instead. */
Test(http, duplicate_content_length_refused)
{
    const char *body = "{\"phone\":\"+8613800138000\"}";
    char reqbuf[1024], out[4096];
    snprintf(reqbuf, sizeof reqbuf,
             "POST /v1/verify HTTP/1.1\r\nHost: x\r\n" AUTH1
             "Content-Type: application/json\r\nConnection: close\r\n"
             "Content-Length: %zu\r\nContent-Length: 5\r\n\r\n%s",
             strlen(body), body);
    int fd = raw_connect();
    raw_send(fd, reqbuf);
    cr_assert_gt(raw_read(fd, out, sizeof out, 5), 0, "no answer");
    cr_expect(!strncmp(out, "HTTP/1.1 400", 12), "%s", out);
    cr_expect(strstr(out, "Content-Length header"), "%s", out);
    close(fd);

    snprintf(reqbuf, sizeof reqbuf,
             "POST /v1/verify HTTP/1.1\r\nHost: x\r\n" AUTH1
             "Content-Type: application/json\r\nConnection: close\r\n"
             "Content-Length: %zu\r\nTransfer-Encoding: chunked\r\n\r\n%s",
             strlen(body), body);
    fd = raw_connect();
    raw_send(fd, reqbuf);
    raw_read(fd, out, sizeof out, 5);
    cr_expect(!strncmp(out, "HTTP/1.1 400", 12), "%s", out);
    close(fd);
}

/* The account in a DELETE path: %00 used to cut the decoded number short
 * (erasing +8613800138000 for "+8613800138000%00999"); anything but digits,
 * a leading + and an ID card's final X is refused. */
Test(http, nul_and_non_digits_in_path_ids)
{
    static const char *const bad[] = {
        "/v1/accounts/%2B8613800138000%00999", "/v1/accounts/%2B8613800138000%00",
        "/v1/accounts/%2B86%20138%200013%208000", "/v1/accounts/138-0013-8000",
        "/v1/accounts/%31%33%38%30%30%31%33%38%30%30%30", "/v1/accounts/13800138000abc",
        "/v1/accounts/%2B", "/v1/accounts/1101051949123100XX",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect("DELETE", bad[i], AUTH1, NULL, NULL, 400, "invalid_account");
    expect("DELETE", "/v1/accounts/%2B8613800138000", AUTH1, NULL, NULL, 200, "APPROVE");
    expect("DELETE", "/v1/accounts/%2b8613800138000?kind=phone", AUTH1, NULL, NULL, 200, NULL);
}

static void start_deadline(void)
{
    next_deadline_s = 1;
    next_max_conn = 6;
    start(0);
}

static void stop_limits(void)
{
    stop();
    next_per_ip = next_deadline_s = next_max_conn = 0;
    next_budget = 0;
}

/* Slowloris: clients that send one header byte now and then reset an idle
 * timeout for ever and hold every connection slot. The request deadline
 * (1 s here) cuts them however they trickle, and the slots come back. */
Test(limits, trickling_clients_cut_by_the_deadline, .init = start_deadline, .fini = stop_limits,
     .timeout = 30)
{
    srv_http_close(fx.conn); /* the fixture's connection would hold a slot */
    fx.conn = NULL;
    enum { N = 6 };
    int fds[N];
    for (int i = 0; i < N; i++) {
        fds[i] = raw_connect();
        raw_send(fds[i], "P");
    }
    const char *rest = "OST /v1/verify HTTP/1.1\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaa";
    double t0 = srv_now_s();
    int open_n = N;
    size_t k = 0;
    char one[2] = {0, 0};
    while (open_n > 0 && srv_now_s() - t0 < 4.0) {
        nanosleep(&(struct timespec){0, 250 * 1000 * 1000}, NULL);
        one[0] = rest[k < strlen(rest) ? k : strlen(rest) - 1];
        k++;
        open_n = 0;
        for (int i = 0; i < N; i++) {
            if (fds[i] < 0)
                continue;
            char b[64];
            ssize_t n = recv(fds[i], b, sizeof b, MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) ||
                send(fds[i], one, 1, MSG_NOSIGNAL) != 1) {
                close(fds[i]);
                fds[i] = -1;
                continue;
            }
            open_n++;
        }
    }
    double waited = srv_now_s() - t0;
    cr_expect_eq(open_n, 0, "%d trickling connections still open after %.1f s", open_n, waited);
    cr_expect_lt(waited, 3.5, "cut after %.1f s (deadline 1 s)", waited);
    for (int i = 0; i < N; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    /* The slots are free again: an honest request is answered. */
    char err[256];
    fx.conn = srv_http_connect("127.0.0.1", fx.port, 10, err, sizeof err);
    cr_assert(fx.conn, "%s", err);
    expect("GET", "/healthz", NULL, NULL, NULL, 200, "ok");
}

static void start_per_ip(void)
{
    next_per_ip = 3;
    start(0);
}

/* One address holds at most --max-connections-per-ip connections (3 here,
 * the fixture's own counted): the next is closed at once. */
Test(limits, per_ip_connection_cap, .init = start_per_ip, .fini = stop_limits, .timeout = 30)
{
    expect("GET", "/healthz", NULL, NULL, NULL, 200, "ok"); /* fixture connection: 1 */
    int a = raw_connect(), b = raw_connect();               /* 2, 3 */
    cr_expect_not(closed_within(a, 0.3), "the second connection was closed");
    cr_expect_not(closed_within(b, 0.3), "the third connection was closed");
    int c = raw_connect();                                  /* 4: over */
    cr_expect(closed_within(c, 2.0), "a fourth connection from one address stayed open");
    close(c);
    close(a);
    nanosleep(&(struct timespec){0, 300 * 1000 * 1000}, NULL);
    int d = raw_connect(); /* a slot came back */
    raw_send(d, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    char out[1024];
    cr_expect_gt(raw_read(d, out, sizeof out, 5), 0);
    cr_expect(!strncmp(out, "HTTP/1.1 200", 12), "%s", out);
    close(d);
    close(b);
}

static void start_budget(void)
{
    next_budget = 2 * 8192 + 100; /* two bodies of the fixture's 8192-byte limit */
    start(0);
}

/* Bodies in flight share a memory budget: a request whose declared body
 * would pass it is answered 503 (with Retry-After) before a byte of it is
 * read, and the budget comes back when a request ends. */
Test(limits, body_memory_budget, .init = start_budget, .fini = stop_limits, .timeout = 30)
{
    char head[512];
    snprintf(head, sizeof head,
             "POST /v1/verify HTTP/1.1\r\nHost: x\r\n" AUTH1
             "Content-Type: application/json\r\nContent-Length: 8000\r\n\r\n{\"phone\":");
    int a = raw_connect(), b = raw_connect();
    raw_send(a, head);
    raw_send(b, head);
    nanosleep(&(struct timespec){0, 300 * 1000 * 1000}, NULL);
    int c = raw_connect();
    raw_send(c, head);
    char out[2048];
    cr_assert_gt(raw_read(c, out, sizeof out, 3), 0, "no 503 for a body over the budget");
    cr_expect(!strncmp(out, "HTTP/1.1 503", 12), "%s", out);
    cr_expect(strstr(out, "Retry-After: 1"), "%s", out);
    cr_expect(strstr(out, "busy"), "%s", out);
    close(c);
    /* One of the two holders goes away: its share is released. */
    close(a);
    nanosleep(&(struct timespec){0, 300 * 1000 * 1000}, NULL);
    int d = raw_connect();
    raw_send(d, head);
    cr_expect_eq(raw_read(d, out, sizeof out, 0.5), -1, "refused after a release: %s", out);
    close(d);
    close(b);
}

static srv_http_response verify_answer(const char *image)
{
    char nonce[32];
    get_nonce(AUTH1, nonce);
    char *body = verify_json(PHONE, image, nonce);
    srv_http_response r = req("POST", "/v1/verify", AUTH1, "application/json", body);
    free(body);
    return r;
}

/* A template of another model (RE_ENROLL_REQUIRED) would tell a terminal
 * that the number is enrolled: it gets the answer of a number that is not,
 * status and body byte for byte, while the operator log and the metrics
 * keep RE_ENROLL_REQUIRED. */
Test(http, re_enroll_required_answers_like_no_match)
{
    srv_http_response none = verify_answer("FACE-someone-else");
    cr_assert_eq(none.status, 200);
    const char *stale_images[] = {"STALE", "STALE2"};
    for (int i = 0; i < 2; i++) {
        srv_http_response r = verify_answer(stale_images[i]);
        cr_expect_eq(r.status, none.status, "%s: %d %s", stale_images[i], r.status, r.body);
        cr_expect_str_eq(r.body, none.body, "%s", stale_images[i]);
        cr_expect_str_eq(r.retry_after, none.retry_after);
        srv_http_response_free(&r);
    }
    srv_http_response_free(&none);
    srv_http_response m = req("GET", "/metrics", NULL, NULL, NULL);
    const char *line = strstr(m.body, "facepay_decisions_total{route=\"verify\",decision=\"DECLINE\","
                                      "reason=\"RE_ENROLL_REQUIRED\"}");
    cr_assert_not_null(line);
    cr_expect(!strncmp(strchr(line, '}'), "} 2\n", 4), "%.120s", line);
    srv_http_response_free(&m);
}
