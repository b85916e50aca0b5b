/*
 * routes.c - the HTTP layer of `facepay serve` over libmicrohttpd.
 *
 * libmicrohttpd calls srv_handle several times per request: once when the
 * headers are in (ctx still NULL), once per chunk of body, and once more
 * with no data when the body is complete. Everything that can be decided
 * from the headers is decided on the first call, before a byte of body is
 * read: the route and method (404, 405), the content type (415), a declared
 * Content-Length over the limit (413) and the terminal's credentials (401).
 * An unauthenticated client can therefore never make us buffer a body. The
 * body is then counted while it arrives; past the limit it is dropped (and
 * the connection cut if the client goes on much longer) and answered 413.
 *
 * Terminals are told decision, reason, message and retry_after; the score
 * and stage times go only to the operator log.
 */
#include "server_internal.h"

#include <microhttpd.h>

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* One accepted connection, for the request deadline: the watchdog thread
 * cuts (shutdown(2)) a connection whose request has not been read whole
 * within the deadline of its start (the accept, or the end of the previous
 * request on a kept-alive connection). libmicrohttpd's own timeout is an
 * idle one: a client that sends a byte now and then resets it for ever. */
typedef struct conn_track {
    struct conn_track *prev, *next;
    int fd;
    double phase_start;     /* srv_now_s() when the current request began */
    int busy;               /* read whole, being answered: not cut */
    int cut;
} conn_track;

struct srv_server {
    srv_config cfg;
    struct MHD_Daemon *daemon;
    pthread_mutex_t log_lock;
    atomic_int active;      /* requests between headers and completion */
    /* The request deadline. */
    double deadline_s;
    pthread_mutex_t conn_lock;
    pthread_cond_t wd_cv;
    conn_track *conns;
    int wd_stop, wd_started;
    pthread_t watchdog;
    /* Bytes of request bodies held by requests in flight, and the budget. */
    atomic_size_t body_bytes;
    size_t body_budget;
};

/* Multipart verify: the fields as they arrive from MHD's post processor. */
typedef struct mp_state {
    char field[SRV_MAX_ACCOUNT_TYPED];     /* "phone" / "id_card" */
    char value[SRV_MAX_ACCOUNT_TYPED];
    size_t value_len;
    char nonce[SRV_NONCE_CHARS + 8];
    size_t nonce_len;
    unsigned char *image;
    size_t image_len, image_alloc, image_cap;  /* cap: the limit */
    int n_account;                         /* account fields seen */
    int has_image;
    srv_error err;                         /* first problem (http 0 = none) */
} mp_state;

typedef struct req_ctx {
    srv_server *server;
    conn_track *track;
    int started;                /* first_call done */
    int counted;                /* in server->active */
    int path_ok;                /* the raw path passed check_raw_path */
    size_t reserved;            /* bytes of body_budget held */
    int over_budget;            /* body refused for the budget: 503 */
    srv_route route;
    double start;
    int needs_body;
    int multipart;
    char *body;
    size_t len, cap;
    size_t received;            /* every body byte, kept or not */
    int too_large;
    struct MHD_PostProcessor *pp;
    mp_state *mp;
    char terminal[SRV_MAX_TERMINAL_ID];
} req_ctx;

/* ------------------------------------------------------ body budget */

/* Raises what r holds of the budget for bodies in flight to total bytes;
 * -1 (nothing taken) when that would pass the budget. */
static int reserve(req_ctx *r, size_t total)
{
    srv_server *s = r->server;
    if (total <= r->reserved)
        return 0;
    size_t delta = total - r->reserved;
    size_t cur = atomic_load(&s->body_bytes);
    do {
        if (cur > s->body_budget || delta > s->body_budget - cur)
            return -1;
    } while (!atomic_compare_exchange_weak(&s->body_bytes, &cur, cur + delta));
    r->reserved = total;
    return 0;
}

static void release_all(req_ctx *r)
{
    if (r->reserved)
        atomic_fetch_sub(&r->server->body_bytes, r->reserved);
    r->reserved = 0;
}

/* ------------------------------------------------------- raw request */

/* The path as the client sent it, before libmicrohttpd %-decodes it (a %00
 * would cut the decoded string short, so the decoded path cannot show it).
 * Only the account route has a variable part: its id must be digits, with
 * '+' first (as %2B, or a plain '+') for a phone and a final X for an ID
 * card; anything else (%00, other escapes, letters, separators) is refused.
 * Other routes are matched exactly on the decoded path. */
static int check_raw_path(const char *uri)
{
    static const char prefix[] = "/v1/accounts/";
    size_t n = strcspn(uri, "?");
    if (n < sizeof prefix - 1 || strncmp(uri, prefix, sizeof prefix - 1) != 0)
        return 1;
    const char *p = uri + sizeof prefix - 1, *end = uri + n;
    if (end - p >= 3 && p[0] == '%' && p[1] == '2' && (p[2] == 'B' || p[2] == 'b'))
        p += 3;
    else if (p < end && *p == '+')
        p++;
    size_t digits = 0;
    while (p < end && *p >= '0' && *p <= '9') {
        p++;
        digits++;
    }
    if (p < end && (*p == 'X' || *p == 'x') && digits == 17)
        p++;
    return digits > 0 && p == end;
}

static void *uri_log(void *cls, const char *uri, struct MHD_Connection *c)
{
    (void)c;
    req_ctx *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->server = cls;
    r->path_ok = uri && check_raw_path(uri);
    return r;
}

/* ------------------------------------------------------- connections */

static void notify_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                              enum MHD_ConnectionNotificationCode code)
{
    srv_server *s = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        conn_track *t = calloc(1, sizeof *t);
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        *socket_context = t;
        if (!t || !ci) {
            /* Untracked means uncut: refuse to serve it at all. */
            if (ci)
                shutdown(ci->connect_fd, SHUT_RDWR);
            return;
        }
        t->fd = ci->connect_fd;
        t->phase_start = srv_now_s();
        pthread_mutex_lock(&s->conn_lock);
        t->next = s->conns;
        if (s->conns)
            s->conns->prev = t;
        s->conns = t;
        pthread_mutex_unlock(&s->conn_lock);
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        /* Called before libmicrohttpd closes the socket: once t is off the
         * list (under the lock the watchdog holds while it cuts), its fd is
         * never touched again, so a reused descriptor is never cut. */
        conn_track *t = *socket_context;
        *socket_context = NULL;
        if (!t)
            return;
        pthread_mutex_lock(&s->conn_lock);
        if (t->prev)
            t->prev->next = t->next;
        else
            s->conns = t->next;
        if (t->next)
            t->next->prev = t->prev;
        pthread_mutex_unlock(&s->conn_lock);
        free(t);
    }
}

static void track_set_busy(srv_server *s, conn_track *t, int busy)
{
    if (!t)
        return;
    pthread_mutex_lock(&s->conn_lock);
    t->busy = busy;
    if (!busy)
        t->phase_start = srv_now_s();
    pthread_mutex_unlock(&s->conn_lock);
}

static void *watchdog_main(void *arg)
{
    srv_server *s = arg;
    pthread_mutex_lock(&s->conn_lock);
    while (!s->wd_stop) {
        double now = srv_now_s();
        for (conn_track *t = s->conns; t; t = t->next)
            if (!t->busy && !t->cut && now - t->phase_start > s->deadline_s) {
                shutdown(t->fd, SHUT_RDWR);
                t->cut = 1;
            }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->wd_cv, &s->conn_lock, &ts);
    }
    pthread_mutex_unlock(&s->conn_lock);
    return NULL;
}

/* ------------------------------------------------------------ answers */

static void log_line(srv_server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void log_line(srv_server *s, const char *fmt, ...)
{
    if (!s->cfg.log)
        return;
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&s->log_lock);
    vfprintf(s->cfg.log, fmt, ap);
    fputc('\n', s->cfg.log);
    fflush(s->cfg.log);
    pthread_mutex_unlock(&s->log_lock);
    va_end(ap);
}

/* Queues body (malloc'd, taken even on failure) with status. */
static enum MHD_Result send_body(srv_server *s, struct MHD_Connection *c, req_ctx *r,
                                 int status, const char *ctype, char *body,
                                 int retry_after, const char *allow)
{
    if (!body)
        return MHD_NO;  /* out of memory: drop the connection */
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    if (retry_after > 0) {
        char ra[16];
        snprintf(ra, sizeof ra, "%d", retry_after);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, ra);
    }
    if (allow)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    if (status == 401)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                "Bearer realm=\"facepay\"");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    srv_metrics_request(s->cfg.metrics, r->route, status, srv_now_s() - r->start);
    return ret;
}

static enum MHD_Result send_error(srv_server *s, struct MHD_Connection *c, req_ctx *r,
                                  const srv_error *e, int retry_after, const char *allow)
{
    return send_body(s, c, r, e->http, "application/json", srv_error_json(e), retry_after,
                     allow);
}

static enum MHD_Result fail(srv_server *s, struct MHD_Connection *c, req_ctx *r, int http,
                            const char *code, const char *msg)
{
    srv_error e;
    srv_error_set(&e, http, code, "%s", msg);
    return send_error(s, c, r, &e, http == 503 ? 1 : 0, NULL);
}

static enum MHD_Result send_result(srv_server *s, struct MHD_Connection *c, req_ctx *r,
                                   const char *op, fpay_status st,
                                   const fpay_service_result *res)
{
    fpay_service_result shown = *res;
    /* The operator's reason: RE_ENROLL_REQUIRED (a template of another
     * model) is for the operator log and metrics; the terminal gets the
     * answer of an unknown number, so it cannot tell an enrolled number
     * from one that is not (the service already answers so; this holds
     * for any service behind srv_service_ops). */
    fpay_reason op_reason = res->operator_reason == FPAY_REASON_RE_ENROLL_REQUIRED
                                ? FPAY_REASON_RE_ENROLL_REQUIRED
                                : res->reason;
    if (r->route == SRV_ROUTE_VERIFY && shown.reason == FPAY_REASON_RE_ENROLL_REQUIRED) {
        shown.reason = FPAY_REASON_NO_MATCH;
        shown.decision = FPAY_DECLINE;
        shown.retry_after_s = 0;
        shown.quality_reasons = 0;
        snprintf(shown.message, sizeof shown.message, "%s",
                 fpay_reason_str(FPAY_REASON_NO_MATCH));
    }
    int http = srv_result_http_status(r->route, st, &shown);
    if (http == 500) {
        /* Whatever went wrong inside, the terminal gets a plain refusal. */
        shown.decision = FPAY_DECLINE;
        shown.reason = FPAY_REASON_INTERNAL_ERROR;
        snprintf(shown.message, sizeof shown.message, "%s", "internal error: retry later");
    }
    fpay_service_result counted = shown;
    if (http != 500)
        counted.reason = op_reason;
    srv_metrics_decision(s->cfg.metrics, r->route, &counted);
    const fpay_stage_times *t = &res->times;
    /* The operator line: never the account number, only its hash prefix. */
    log_line(s,
             "facepay-serve: %s terminal=%s account=%.16s status=%d decision=%s reason=%s "
             "score=%.4f threshold=%.4f fmr=%g captures=%d ms: total=%.1f decode=%.1f "
             "detect=%.1f select=%.1f quality=%.1f align=%.1f liveness=%.1f embed=%.1f "
             "match=%.1f",
             op, r->terminal, res->account_hash_prefix, http,
             shown.decision == FPAY_APPROVE ? "APPROVE" : "DECLINE",
             srv_reason_name(http != 500 ? op_reason : shown.reason), (double)res->score,
             (double)res->threshold, res->fmr,
             res->captures_used, t->total, t->decode, t->detect, t->select, t->quality,
             t->align, t->liveness, t->embed, t->match);
    return send_body(s, c, r, http, "application/json", srv_result_json(&shown),
                     shown.retry_after_s, NULL);
}

/* ------------------------------------------------------------ routing */

typedef struct route_def {
    const char *path;       /* exact, or prefix when ending in '/' */
    srv_route route;
    const char *method;
    const char *allow;
    int auth;
    int body;               /* 1 = JSON, 2 = JSON or multipart */
} route_def;

static const route_def routes[] = {
    {"/v1/enroll", SRV_ROUTE_ENROLL, "POST", "POST", 1, 1},
    {"/v1/verify", SRV_ROUTE_VERIFY, "POST", "POST", 1, 2},
    {"/v1/accounts/", SRV_ROUTE_DELETE, "DELETE", "DELETE", 1, 0},
    {"/v1/nonce", SRV_ROUTE_NONCE, "GET", "GET", 1, 0},
    {"/healthz", SRV_ROUTE_HEALTHZ, "GET", "GET, HEAD", 0, 0},
    {"/metrics", SRV_ROUTE_METRICS, "GET", "GET, HEAD", 0, 0},
};

static const route_def *find_route(const char *url)
{
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        size_t n = strlen(routes[i].path);
        if (routes[i].path[n - 1] == '/' ? !strncmp(url, routes[i].path, n) && url[n]
                                          : !strcmp(url, routes[i].path))
            return &routes[i];
    }
    return NULL;
}

/* Media type without parameters, compared case-insensitively. */
static int media_is(const char *ctype, const char *want)
{
    if (!ctype)
        return 0;
    while (*ctype == ' ')
        ctype++;
    size_t n = strlen(want);
    return !strncasecmp(ctype, want, n) &&
           (ctype[n] == 0 || ctype[n] == ';' || ctype[n] == ' ');
}

/* Authorization: Bearer <key> and X-Terminal-Id: <id>. */
static int authenticate(srv_server *s, struct MHD_Connection *c, req_ctx *r, srv_error *e)
{
    const char *tid = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Terminal-Id");
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                   MHD_HTTP_HEADER_AUTHORIZATION);
    if (!tid || !auth) {
        srv_error_set(e, 401, "unauthorized",
                      "X-Terminal-Id and Authorization: Bearer <API key> are required");
        return -1;
    }
    if (strncasecmp(auth, "Bearer ", 7) != 0) {
        srv_error_set(e, 401, "unauthorized", "Authorization must use the Bearer scheme");
        return -1;
    }
    const char *key = auth + 7;
    while (*key == ' ')
        key++;
    if (strlen(tid) == 0 || strlen(tid) >= SRV_MAX_TERMINAL_ID || strlen(key) == 0 ||
        strlen(key) >= SRV_MAX_API_KEY ||
        s->cfg.ops.terminal_check(s->cfg.ops.ctx, tid, key) != FPAY_OK) {
        /* One message for an unknown terminal and a wrong key. */
        srv_error_set(e, 401, "unauthorized", "unknown terminal or wrong API key");
        return -1;
    }
    strcpy(r->terminal, tid);
    return 0;
}

/* ---------------------------------------------------------- multipart */

static int mp_append(char *dst, size_t cap, size_t *len, const char *data, size_t size)
{
    if (*len + size >= cap)
        return -1;
    memcpy(dst + *len, data, size);
    *len += size;
    dst[*len] = 0;
    return 0;
}

static enum MHD_Result mp_iter(void *cls, enum MHD_ValueKind kind, const char *key,
                               const char *filename, const char *content_type,
                               const char *transfer_encoding, const char *data,
                               uint64_t off, size_t size)
{
    (void)kind, (void)filename, (void)content_type, (void)transfer_encoding;
    req_ctx *r = cls;
    mp_state *m = r->mp;
    if (m->err.http)
        return MHD_NO;
    if (!key) {
        srv_error_set(&m->err, 400, "bad_multipart", "a form part has no name");
        return MHD_NO;
    }
    if (!strcmp(key, "phone") || !strcmp(key, "id_card")) {
        if (off == 0) {
            if (m->n_account++) {
                srv_error_set(&m->err, 400, "invalid_account",
                              "give one \"phone\" or \"id_card\" field");
                return MHD_NO;
            }
            snprintf(m->field, sizeof m->field, "%s", key);
        }
        if (mp_append(m->value, sizeof m->value, &m->value_len, data, size)) {
            srv_error_set(&m->err, 400, "invalid_account", "%s is too long", key);
            return MHD_NO;
        }
    } else if (!strcmp(key, "nonce")) {
        if (mp_append(m->nonce, sizeof m->nonce, &m->nonce_len, data, size)) {
            srv_error_set(&m->err, 400, "bad_request", "nonce is too long");
            return MHD_NO;
        }
    } else if (!strcmp(key, "image")) {
        m->has_image = 1;
        if (m->image_len + size > r->mp->image_cap) {
            srv_error_set(&m->err, 413, "image_too_large", "the image is over %zu bytes",
                          r->mp->image_cap);
            return MHD_NO;
        }
        if (m->image_len + size > m->image_alloc) {
            /* Grow as it arrives: the limit is a ceiling, not an up-front
             * allocation per connection. */
            size_t cap = m->image_alloc ? m->image_alloc : 64 * 1024;
            while (cap < m->image_len + size)
                cap *= 2;
            if (cap > m->image_cap)
                cap = m->image_cap;
            if (reserve(r, cap)) {
                r->over_budget = 1;
                srv_error_set(&m->err, 503, "busy", "the server is busy: retry in a second");
                return MHD_NO;
            }
            unsigned char *p = realloc(m->image, cap);
            if (!p) {
                srv_error_set(&m->err, 503, "out_of_memory", "out of memory: retry later");
                return MHD_NO;
            }
            m->image = p;
            m->image_alloc = cap;
        }
        if (size)
            memcpy(m->image + m->image_len, data, size);
        m->image_len += size;
    } else {
        srv_error_set(&m->err, 400, "bad_multipart", "unknown form field \"%.40s\"", key);
        return MHD_NO;
    }
    return MHD_YES;
}

/* ---------------------------------------------------------- handlers */

static enum MHD_Result do_nonce(srv_server *s, struct MHD_Connection *c, req_ctx *r)
{
    char nonce[SRV_NONCE_CHARS + 1];
    if (srv_nonce_issue(s->cfg.nonces, r->terminal, srv_now_s(), nonce, sizeof nonce))
        return fail(s, c, r, 503, "busy", "too many outstanding nonces: retry in a second");
    char *body = malloc(96);
    if (body)
        snprintf(body, 96, "{\"nonce\":\"%s\",\"expires_in\":%d}", nonce,
                 srv_nonces_ttl(s->cfg.nonces));
    return send_body(s, c, r, 200, "application/json", body, 0, NULL);
}

static enum MHD_Result do_enroll(srv_server *s, struct MHD_Connection *c, req_ctx *r)
{
    srv_enroll_body b;
    srv_error e;
    if (srv_parse_enroll_json(r->body, r->len, &s->cfg.limits, s->cfg.country, &b, &e))
        return send_error(s, c, r, &e, 0, NULL);
    fpay_capture_source caps[SRV_MAX_ENROLL_IMAGES];
    memset(caps, 0, sizeof caps);
    for (int i = 0; i < b.n_images; i++) {
        caps[i].data = b.images[i].data;
        caps[i].size = b.images[i].size;
    }
    fpay_request req = {r->terminal, b.account.kind, b.account.typed};
    fpay_service_result res;
    memset(&res, 0, sizeof res);
    fpay_status st = s->cfg.ops.enroll(s->cfg.ops.ctx, &req, caps, b.n_images, &res);
    enum MHD_Result ret = send_result(s, c, r, "enroll", st, &res);
    srv_enroll_body_free(&b);
    return ret;
}

static enum MHD_Result verify_body(srv_server *s, struct MHD_Connection *c, req_ctx *r,
                                   srv_verify_body *b)
{
    if (!b->has_nonce)
        return fail(s, c, r, 400, "nonce_required",
                    "a nonce is required: GET /v1/nonce and send it with this capture");
    switch (srv_nonce_consume(s->cfg.nonces, r->terminal, b->nonce, srv_now_s())) {
    case SRV_NONCE_OK:
        break;
    case SRV_NONCE_EXPIRED:
        return fail(s, c, r, 409, "nonce_refused",
                    "the nonce has expired: GET /v1/nonce again");
    case SRV_NONCE_UNKNOWN:
    case SRV_NONCE_WRONG_TERMINAL:
    default:
        return fail(s, c, r, 409, "nonce_refused",
                    "the nonce is unknown or already used: a replayed request is refused");
    }
    fpay_capture_source cap = {b->image.data, b->image.size, NULL};
    fpay_request req = {r->terminal, b->account.kind, b->account.typed};
    fpay_service_result res;
    memset(&res, 0, sizeof res);
    fpay_status st;
    if (s->cfg.batcher) {
        st = srv_batcher_verify(s->cfg.batcher, &req, &cap, &res);
        if (st == FPAY_LIMIT_EXCEEDED)
            return fail(s, c, r, 503, "busy", "the server is busy: retry in a second");
    } else {
        st = s->cfg.ops.verify(s->cfg.ops.ctx, &req, &cap, &res);
    }
    return send_result(s, c, r, "verify", st, &res);
}

static enum MHD_Result do_verify(srv_server *s, struct MHD_Connection *c, req_ctx *r)
{
    srv_verify_body b;
    srv_error e;
    if (!r->multipart) {
        if (srv_parse_verify_json(r->body, r->len, &s->cfg.limits, s->cfg.country, &b, &e))
            return send_error(s, c, r, &e, 0, NULL);
    } else {
        mp_state *m = r->mp;
        /* A body cut short leaves the post processor mid-part. */
        int complete = MHD_destroy_post_processor(r->pp) == MHD_YES;
        r->pp = NULL;
        if (m->err.http)
            return send_error(s, c, r, &m->err, 0, NULL);
        if (!complete)
            return fail(s, c, r, 400, "bad_multipart", "the multipart body is malformed or cut short");
        memset(&b, 0, sizeof b);
        if (!m->n_account)
            return fail(s, c, r, 400, "invalid_account", "\"phone\" or \"id_card\" is required");
        if (srv_account_set(&b.account, m->field, m->value, m->value_len, s->cfg.country, &e))
            return send_error(s, c, r, &e, 0, NULL);
        if (!m->has_image || m->image_len == 0)
            return fail(s, c, r, 400, "bad_image", "the \"image\" file part is missing or empty");
        if (m->nonce_len) {
            memcpy(b.nonce, m->nonce, m->nonce_len + 1);
            b.has_nonce = 1;
        }
        b.image.data = m->image;  /* moved: freed with b */
        b.image.size = m->image_len;
        m->image = NULL;
    }
    enum MHD_Result ret = verify_body(s, c, r, &b);
    srv_verify_body_free(&b);
    return ret;
}

static int looks_like_id_card(const char *a)
{
    size_t n = strlen(a);
    if (n != 18)
        return 0;
    for (size_t i = 0; i < 17; i++)
        if (a[i] < '0' || a[i] > '9')
            return 0;
    return (a[17] >= '0' && a[17] <= '9') || a[17] == 'X' || a[17] == 'x';
}

static enum MHD_Result do_delete(srv_server *s, struct MHD_Connection *c, req_ctx *r,
                                 const char *url)
{
    /* MHD has already %-decoded the path. */
    const char *typed = url + strlen("/v1/accounts/");
    const char *kind = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "kind");
    const char *field;
    if (kind && strcmp(kind, "phone") && strcmp(kind, "id_card"))
        return fail(s, c, r, 400, "bad_request", "kind must be \"phone\" or \"id_card\"");
    field = kind ? kind : looks_like_id_card(typed) ? "id_card" : "phone";
    srv_account a;
    srv_error e;
    if (srv_account_set(&a, field, typed, strlen(typed), s->cfg.country, &e))
        return send_error(s, c, r, &e, 0, NULL);
    fpay_request req = {r->terminal, a.kind, a.typed};
    fpay_service_result res;
    memset(&res, 0, sizeof res);
    fpay_status st = s->cfg.ops.remove(s->cfg.ops.ctx, &req, &res);
    return send_result(s, c, r, "delete", st, &res);
}

/* ------------------------------------------------------- entry points */

/* Counts the Content-Length and Transfer-Encoding headers. */
static enum MHD_Result count_framing(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    (void)kind, (void)value;
    int *n = cls;
    if (key && !strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH))
        n[0]++;
    else if (key && !strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING))
        n[1]++;
    return MHD_YES;
}

static enum MHD_Result first_call(srv_server *s, struct MHD_Connection *c, req_ctx *r,
                                  const char *url, const char *method)
{
    /* Two Content-Length headers (libmicrohttpd takes the first), or one
     * next to Transfer-Encoding: a proxy in front may frame the body
     * otherwise than we do (request smuggling). Refused whatever the route. */
    int framing[2] = {0, 0};
    MHD_get_connection_values(c, MHD_HEADER_KIND, count_framing, framing);
    if (framing[0] > 1 || (framing[0] && framing[1])) {
        r->route = SRV_ROUTE_OTHER;
        return fail(s, c, r, 400, "bad_request",
                    framing[0] > 1 ? "more than one Content-Length header"
                                   : "Content-Length and Transfer-Encoding together");
    }
    const route_def *d = find_route(url);
    if (!d) {
        r->route = SRV_ROUTE_OTHER;
        return fail(s, c, r, 404, "not_found", "no such endpoint");
    }
    r->route = d->route;
    int head_ok = !strcmp(method, "HEAD") && strstr(d->allow, "HEAD");
    if (strcmp(method, d->method) && !head_ok) {
        srv_error e;
        srv_error_set(&e, 405, "method_not_allowed", "%s is not allowed here: use %s", method,
                      d->allow);
        return send_error(s, c, r, &e, 0, d->allow);
    }
    srv_error e;
    if ((d->auth || (d->route == SRV_ROUTE_METRICS && s->cfg.metrics_auth)) &&
        authenticate(s, c, r, &e))
        return send_error(s, c, r, &e, 0, NULL);
    if (!r->path_ok)
        return fail(s, c, r, 400, "invalid_account",
                    "invalid phone or ID card number in the path: digits only, '+' first "
                    "as %2B, a final X for an ID card");
    if (d->body) {
        const char *ctype = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                        MHD_HTTP_HEADER_CONTENT_TYPE);
        if (media_is(ctype, "application/json")) {
            r->multipart = 0;
        } else if (d->body == 2 && media_is(ctype, "multipart/form-data")) {
            r->multipart = 1;
        } else {
            srv_error_set(&e, 415, "unsupported_media_type",
                          "Content-Type must be application/json%s",
                          d->body == 2 ? " or multipart/form-data" : "");
            return send_error(s, c, r, &e, 0, NULL);
        }
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl) {
            char *end;
            unsigned long long n = strtoull(cl, &end, 10);
            if (end == cl || *end || n > s->cfg.limits.max_body) {
                srv_error_set(&e, 413, "body_too_large", "the body is over %zu bytes",
                              s->cfg.limits.max_body);
                return send_error(s, c, r, &e, 0, NULL);
            }
            /* The whole declared body is held against the budget before a
             * byte of it is read. */
            if (reserve(r, (size_t)n + 1))
                return fail(s, c, r, 503, "busy", "the server is busy: retry in a second");
        }
        r->needs_body = 1;
        if (r->multipart) {
            r->mp = calloc(1, sizeof *r->mp);
            if (!r->mp)
                return MHD_NO;
            r->mp->image_cap = s->cfg.limits.max_image;
            r->pp = MHD_create_post_processor(c, 16 * 1024, mp_iter, r);
            if (!r->pp)
                return fail(s, c, r, 400, "bad_multipart",
                            "multipart/form-data needs a boundary parameter");
        }
    }
    return MHD_YES;  /* wait for the body (or the final call) */
}

static enum MHD_Result receive(srv_server *s, req_ctx *r, const char *data, size_t size)
{
    r->received += size;
    if (r->over_budget)
        return r->received > 4 * s->cfg.limits.max_body + (1u << 20) ? MHD_NO : MHD_YES;
    if (r->too_large || r->received > s->cfg.limits.max_body) {
        r->too_large = 1;
        /* The answer is 413 either way; a client that keeps sending far past
         * the limit is cut off instead of read to the end. */
        return r->received > 4 * s->cfg.limits.max_body + (1u << 20) ? MHD_NO : MHD_YES;
    }
    if (r->multipart) {
        if (r->mp->err.http)
            return MHD_YES;  /* answered at the end; drop the rest */
        MHD_post_process(r->pp, data, size);
        return MHD_YES;
    }
    if (r->len + size + 1 > r->cap) {
        /* A declared body gets a buffer of its size (already held against
         * the budget); a chunked one grows from 64 KiB. */
        size_t cap = r->cap ? r->cap : r->reserved ? r->reserved : 64 * 1024;
        while (cap < r->len + size + 1)
            cap *= 2;
        if (cap > s->cfg.limits.max_body + 1)
            cap = s->cfg.limits.max_body + 1;
        if (reserve(r, cap)) {
            /* A chunked body that would pass the budget: dropped now, 503
             * at the end. */
            r->over_budget = 1;
            free(r->body);
            r->body = NULL;
            r->len = r->cap = 0;
            return MHD_YES;
        }
        char *p = realloc(r->body, cap);
        if (!p)
            return MHD_NO;
        r->body = p;
        r->cap = cap;
    }
    memcpy(r->body + r->len, data, size);
    r->len += size;
    r->body[r->len] = 0;
    return MHD_YES;
}

static enum MHD_Result srv_handle(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    (void)version;
    srv_server *s = cls;
    req_ctx *r = *con_cls;
    if (!r)
        return MHD_NO; /* uri_log could not allocate it: drop the connection */
    if (!r->started) {
        r->started = 1;
        r->start = srv_now_s();
        strcpy(r->terminal, "-");
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        r->track = ci ? ci->socket_context : NULL;
        r->counted = 1;
        atomic_fetch_add(&s->active, 1);
        return first_call(s, c, r, url, method);
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        return receive(s, r, upload_data, n);
    }
    /* The request is read whole: the deadline no longer applies (the
     * service's own time is bounded by its workers). */
    track_set_busy(s, r->track, 1);
    if (r->over_budget) {
        if (r->pp) {
            MHD_destroy_post_processor(r->pp);
            r->pp = NULL;
        }
        return fail(s, c, r, 503, "busy", "the server is busy: retry in a second");
    }
    if (r->too_large) {
        srv_error e;
        srv_error_set(&e, 413, "body_too_large", "the body is over %zu bytes",
                      s->cfg.limits.max_body);
        return send_error(s, c, r, &e, 0, NULL);
    }
    switch (r->route) {
    case SRV_ROUTE_HEALTHZ: {
        char *b = strdup("{\"status\":\"ok\"}");
        return send_body(s, c, r, 200, "application/json", b, 0, NULL);
    }
    case SRV_ROUTE_METRICS: {
        char *b = srv_metrics_render(s->cfg.metrics, srv_nonces_live(s->cfg.nonces, srv_now_s()));
        return send_body(s, c, r, 200, "text/plain; version=0.0.4; charset=utf-8", b, 0, NULL);
    }
    case SRV_ROUTE_NONCE:
        return do_nonce(s, c, r);
    case SRV_ROUTE_ENROLL:
        return do_enroll(s, c, r);
    case SRV_ROUTE_VERIFY:
        return do_verify(s, c, r);
    case SRV_ROUTE_DELETE:
        return do_delete(s, c, r, url);
    default:
        return fail(s, c, r, 404, "not_found", "no such endpoint");
    }
}

static void srv_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                          enum MHD_RequestTerminationCode toe)
{
    (void)c, (void)toe;
    srv_server *s = cls;
    req_ctx *r = *con_cls;
    if (!r)
        return;
    if (r->counted)
        atomic_fetch_sub(&s->active, 1);
    track_set_busy(s, r->track, 0);
    release_all(r);
    if (r->pp)
        MHD_destroy_post_processor(r->pp);
    if (r->mp)
        free(r->mp->image);
    free(r->mp);
    free(r->body);
    free(r);
    *con_cls = NULL;
}

srv_server *srv_server_start(const srv_config *cfg, const srv_listen *l, int *bound_port,
                             char *err, size_t err_len)
{
    srv_server *s = calloc(1, sizeof *s);
    if (!s || pthread_mutex_init(&s->log_lock, NULL)) {
        free(s);
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    s->cfg = *cfg;
    s->deadline_s = l->request_deadline_s > 0 ? l->request_deadline_s : SRV_DEFAULT_DEADLINE_S;
    s->body_budget = cfg->body_budget ? cfg->body_budget : 8 * cfg->limits.max_body;
    atomic_init(&s->body_bytes, 0);
    pthread_mutex_init(&s->conn_lock, NULL);
    pthread_cond_init(&s->wd_cv, NULL);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                     MHD_USE_ITC | MHD_USE_ERROR_LOG;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    if (l->port < 0 || l->port > 65535) {
        snprintf(err, err_len, "port %d is out of range", l->port);
        goto fail;
    }
    if (inet_pton(AF_INET, l->host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)l->port);
    } else if (inet_pton(AF_INET6, l->host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)l->port);
        flags |= MHD_USE_IPv6;
    } else {
        snprintf(err, err_len, "'%s' is not a numeric IPv4 or IPv6 address", l->host);
        goto fail;
    }
    s->daemon = MHD_start_daemon(
        flags, (uint16_t)l->port, NULL, NULL, srv_handle, s, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_LIMIT, (unsigned)l->max_connections,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)l->timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, l->header_memory, MHD_OPTION_NOTIFY_COMPLETED,
        srv_completed, s, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        (unsigned)(l->per_ip_connections > 0 ? l->per_ip_connections
                                             : SRV_DEFAULT_PER_IP_CONNECTIONS),
        MHD_OPTION_URI_LOG_CALLBACK, uri_log, s, MHD_OPTION_NOTIFY_CONNECTION,
        notify_connection, s, MHD_OPTION_END);
    if (!s->daemon) {
        snprintf(err, err_len, "cannot listen on %s port %d (in use, or not an address of this "
                 "machine)", l->host, l->port);
        goto fail;
    }
    if (pthread_create(&s->watchdog, NULL, watchdog_main, s) != 0) {
        MHD_stop_daemon(s->daemon);
        snprintf(err, err_len, "cannot start the request deadline thread");
        goto fail;
    }
    s->wd_started = 1;
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    *bound_port = info ? info->port : l->port;
    return s;
fail:
    pthread_mutex_destroy(&s->log_lock);
    pthread_mutex_destroy(&s->conn_lock);
    pthread_cond_destroy(&s->wd_cv);
    free(s);
    return NULL;
}

void srv_server_stop(srv_server *s)
{
    if (!s)
        return;
    /* Stop accepting, then give requests in progress (a face pipeline run
     * each) up to 10 s to be answered; idle keep-alive connections are
     * simply closed. */
    int fd = MHD_quiesce_daemon(s->daemon);
    if (fd >= 0)
        close(fd);
    for (int i = 0; i < 1000 && atomic_load(&s->active) > 0; i++)
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    MHD_stop_daemon(s->daemon);
    pthread_mutex_lock(&s->conn_lock);
    s->wd_stop = 1;
    pthread_cond_signal(&s->wd_cv);
    pthread_mutex_unlock(&s->conn_lock);
    if (s->wd_started)
        pthread_join(s->watchdog, NULL);
    pthread_mutex_destroy(&s->log_lock);
    pthread_mutex_destroy(&s->conn_lock);
    pthread_cond_destroy(&s->wd_cv);
    free(s);
}
