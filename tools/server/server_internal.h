/*
 * server_internal.h - the pieces of `facepay serve` (tools/server/).
 *
 *   json_io.c   request bodies (JSON, base64) and response bodies
 *   nonce.c     single-use, terminal-bound nonces against replay
 *   metrics.c   Prometheus counters and histograms
 *   batcher.c   groups concurrent verifies for fpay_service_verify_batch
 *   routes.c    the libmicrohttpd handler: limits, auth, routing
 *   server.c    `facepay serve`: flags, the service, signals
 *   http_client.c  a minimal HTTP/1.1 keep-alive client (load client, tests)
 *
 * Nothing here but server.c calls fpay_service_*: the routes reach the
 * service through srv_service_ops, so the whole HTTP layer can be tested
 * against a fake service (tests/server/test_server_http.c).
 */
#ifndef FACEPAY_SERVER_INTERNAL_H
#define FACEPAY_SERVER_INTERNAL_H

#include <facepay/service.h>

#include <pthread.h>
#include <stddef.h>
#include <stdio.h>

/* ------------------------------------------------------------ limits */

#define SRV_MAX_ACCOUNT_TYPED 64   /* an account number as typed, with NUL */
#define SRV_MAX_TERMINAL_ID 64     /* X-Terminal-Id, with NUL */
#define SRV_MAX_API_KEY 128        /* bearer token, with NUL */
#define SRV_NONCE_CHARS 22         /* 16 random bytes, base64url, no padding */
#define SRV_MAX_ENROLL_IMAGES 5

typedef struct srv_limits {
    size_t max_body;        /* bytes of one request body: 413 beyond */
    size_t max_image;       /* decoded bytes of one image: 413 beyond */
    int max_images;         /* per enroll, 1..SRV_MAX_ENROLL_IMAGES */
} srv_limits;

/* An error answer: HTTP status, a stable snake_case code, one sentence. */
typedef struct srv_error {
    int http;
    const char *code;
    char message[200];
} srv_error;

void srv_error_set(srv_error *e, int http, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ----------------------------------------------------------- json_io.c */

typedef struct srv_account {
    fpay_id_kind kind;
    char typed[SRV_MAX_ACCOUNT_TYPED];
} srv_account;

typedef struct srv_blob {
    unsigned char *data;    /* malloc'd */
    size_t size;
} srv_blob;

typedef struct srv_enroll_body {
    srv_account account;
    srv_blob images[SRV_MAX_ENROLL_IMAGES];
    int n_images;
} srv_enroll_body;

typedef struct srv_verify_body {
    srv_account account;
    srv_blob image;
    char nonce[SRV_NONCE_CHARS + 8];
    int has_nonce;
} srv_verify_body;

/* Checks an account number as typed (kind by field name "phone" or
 * "id_card") with fpay_account_id_normalize: 400 with its reason. */
int srv_account_set(srv_account *a, const char *field, const char *value,
                    size_t value_len, const char *country, srv_error *err);
/* Decodes standard base64 (whitespace allowed) into a malloc'd blob; 400 for
 * bad characters or an empty image, 413 when the decoded size would pass
 * max_bytes (checked from the length before decoding). */
int srv_base64_decode(const char *b64, size_t len, size_t max_bytes,
                      srv_blob *out, srv_error *err);
/* body need not be NUL-terminated. 0 on success, else -1 with err set. */
int srv_parse_enroll_json(const char *body, size_t len, const srv_limits *lim,
                          const char *country, srv_enroll_body *out,
                          srv_error *err);
int srv_parse_verify_json(const char *body, size_t len, const srv_limits *lim,
                          const char *country, srv_verify_body *out,
                          srv_error *err);
void srv_enroll_body_free(srv_enroll_body *b);
void srv_verify_body_free(srv_verify_body *b);

/* The routes a request can take: metrics labels and the HTTP status of a
 * service result. */
typedef enum srv_route {
    SRV_ROUTE_ENROLL,
    SRV_ROUTE_VERIFY,
    SRV_ROUTE_DELETE,
    SRV_ROUTE_NONCE,
    SRV_ROUTE_HEALTHZ,
    SRV_ROUTE_METRICS,
    SRV_ROUTE_OTHER,
    SRV_ROUTE_COUNT
} srv_route;

const char *srv_route_name(srv_route r);
const char *srv_reason_name(fpay_reason r);  /* "NO_MATCH", "?" if unknown */
const char *srv_reason_text(fpay_reason r);
/* HTTP status for what the service answered (see docs/server.md). */
int srv_result_http_status(srv_route route, fpay_status st,
                           const fpay_service_result *r);
/* malloc'd JSON answers (NULL only when out of memory). The result body
 * holds decision, reason, message, retry_after (and the quality reasons
 * when the reason is QUALITY), never the score. */
char *srv_result_json(const fpay_service_result *r);
char *srv_error_json(const srv_error *e);

/* ------------------------------------------------------------- nonce.c */

typedef struct srv_nonces srv_nonces;

typedef enum srv_nonce_check {
    SRV_NONCE_OK = 0,
    SRV_NONCE_UNKNOWN,        /* never issued, or already used */
    SRV_NONCE_EXPIRED,
    SRV_NONCE_WRONG_TERMINAL, /* issued to another terminal (now burnt) */
} srv_nonce_check;

/* capacity: the whole table; per_terminal: outstanding nonces one terminal
 * may hold (its oldest is dropped beyond that); ttl_s: lifetime. */
srv_nonces *srv_nonces_new(int capacity, int per_terminal, int ttl_s);
void srv_nonces_free(srv_nonces *n);
/* Writes a fresh nonce (SRV_NONCE_CHARS + NUL) into out. now: seconds on a
 * monotonic clock. -1 when the table is full of live nonces. */
int srv_nonce_issue(srv_nonces *n, const char *terminal, double now,
                    char *out, size_t out_len);
/* Looks the nonce up and removes it whatever the answer: single use. */
srv_nonce_check srv_nonce_consume(srv_nonces *n, const char *terminal,
                                  const char *nonce, double now);
int srv_nonces_live(srv_nonces *n, double now);
int srv_nonces_ttl(const srv_nonces *n);

/* ----------------------------------------------------------- metrics.c */

typedef struct srv_metrics srv_metrics;

srv_metrics *srv_metrics_new(void);
void srv_metrics_free(srv_metrics *m);
void srv_metrics_request(srv_metrics *m, srv_route route, int http_status,
                         double seconds);
/* A decision of the service, with the stage times of the call. */
void srv_metrics_decision(srv_metrics *m, srv_route route,
                          const fpay_service_result *r);
void srv_metrics_batch(srv_metrics *m, int size);
/* Prometheus text format 0.0.4; malloc'd, NUL-terminated. */
char *srv_metrics_render(srv_metrics *m, int nonces_live);

/* ----------------------------------------------------------- batcher.c */

typedef fpay_status (*srv_verify_batch_fn)(void *ctx, int n,
                                           const fpay_request *reqs,
                                           const fpay_capture_source *caps,
                                           fpay_service_result *outs);

typedef struct srv_batcher srv_batcher;

/* Starts the batcher thread. A batch closes when max_batch requests wait
 * or window_ms has passed since its first one. observe (optional) is told
 * each batch's size. NULL when the thread cannot start. */
srv_batcher *srv_batcher_new(srv_verify_batch_fn fn, void *ctx, int max_batch,
                             double window_ms, int max_queue,
                             void (*observe)(void *octx, int n), void *octx);
/* Queues one verify and waits for its batch. req and cap are borrowed until
 * it returns. FPAY_LIMIT_EXCEEDED (out untouched) when the queue is full,
 * FPAY_INTERNAL when the batcher is stopping. */
fpay_status srv_batcher_verify(srv_batcher *b, const fpay_request *req,
                               const fpay_capture_source *cap,
                               fpay_service_result *out);
/* Answers what is queued, then stops the thread and frees. */
void srv_batcher_free(srv_batcher *b);

/* ------------------------------------------------------------ routes.c */

/* What the routes need of the service (server.c binds fpay_service_*;
 * tests bind a fake). verify_batch may be NULL when batcher is NULL. */
typedef struct srv_service_ops {
    void *ctx;
    fpay_status (*enroll)(void *ctx, const fpay_request *req,
                          const fpay_capture_source *caps, int n,
                          fpay_service_result *out);
    fpay_status (*verify)(void *ctx, const fpay_request *req,
                          const fpay_capture_source *cap,
                          fpay_service_result *out);
    fpay_status (*remove)(void *ctx, const fpay_request *req,
                          fpay_service_result *out);
    fpay_status (*terminal_check)(void *ctx, const char *terminal,
                                  const char *key);
} srv_service_ops;

typedef struct srv_config {
    srv_service_ops ops;
    srv_limits limits;
    const char *country;       /* default country code for phones; borrowed */
    int metrics_auth;          /* 1: /metrics needs a terminal key too */
    srv_nonces *nonces;        /* borrowed */
    srv_metrics *metrics;      /* borrowed */
    srv_batcher *batcher;      /* borrowed; NULL = call verify directly */
    FILE *log;                 /* operator log (scores, stage times); NULL =
                                  none */
    size_t body_budget;        /* bytes of request bodies all requests in
                                  flight may hold together; a request that
                                  would pass it is answered 503. 0 = 8 x
                                  limits.max_body */
} srv_config;

#define SRV_DEFAULT_DEADLINE_S 30
#define SRV_DEFAULT_PER_IP_CONNECTIONS 16

/* Listener settings. */
typedef struct srv_listen {
    const char *host;          /* numeric IPv4 or IPv6 address */
    int port;                  /* 0 = any free port */
    int max_connections;       /* MHD_OPTION_CONNECTION_LIMIT */
    int timeout_s;             /* idle connection timeout */
    size_t header_memory;      /* MHD_OPTION_CONNECTION_MEMORY_LIMIT */
    int per_ip_connections;    /* MHD_OPTION_PER_IP_CONNECTION_LIMIT; 0 =
                                  SRV_DEFAULT_PER_IP_CONNECTIONS */
    int request_deadline_s;    /* headers and body of one request must have
                                  arrived within this (byte trickles do not
                                  extend it); 0 = SRV_DEFAULT_DEADLINE_S */
} srv_listen;

typedef struct srv_server srv_server;

/* Starts the listener (thread per connection, internal polling thread).
 * cfg is copied (the pointers in it stay borrowed). *bound_port gets the
 * port actually bound. NULL with err set on failure. */
srv_server *srv_server_start(const srv_config *cfg, const srv_listen *l,
                             int *bound_port, char *err, size_t err_len);
/* Stops accepting, lets running requests finish, frees. */
void srv_server_stop(srv_server *s);

/* ------------------------------------------------------- http_client.c */

typedef struct srv_http_conn srv_http_conn;

typedef struct srv_http_response {
    int status;
    char *body;                /* malloc'd, NUL-terminated */
    size_t body_len;
    char retry_after[16];      /* Retry-After header, "" when absent */
    char content_type[64];
} srv_http_response;

/* Connects to host:port (numeric or a name). NULL with err set. */
srv_http_conn *srv_http_connect(const char *host, int port, int timeout_s,
                                char *err, size_t err_len);
void srv_http_close(srv_http_conn *c);
/* Sends one request on the keep-alive connection (reconnecting once when
 * the server had closed it) and reads the answer. extra_headers: complete
 * "Name: value\r\n" lines or NULL. 0 on success. */
int srv_http_request(srv_http_conn *c, const char *method, const char *path,
                     const char *extra_headers, const char *content_type,
                     const void *body, size_t body_len,
                     srv_http_response *resp, char *err, size_t err_len);
void srv_http_response_free(srv_http_response *r);

double srv_now_s(void);   /* CLOCK_MONOTONIC seconds */

#endif
