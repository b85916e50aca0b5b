/*
 * server.c - `facepay serve`: flags, the service, the listener, signals.
 *
 * The only file of tools/server that calls fpay_service_*; it binds them to
 * the routes' srv_service_ops and decides whether verifies are batched.
 */
#include "../cli_util.h"
#include "serve.h"
#include "server_internal.h"

#include <facepay/backend.h>

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#ifndef FACEPAY_DEFAULT_MODELS_DIR
#define FACEPAY_DEFAULT_MODELS_DIR "models"
#endif

#define EXIT_USAGE 2

static const char *const serve_help =
    "usage: facepay serve [OPTIONS]\n"
    "\n"
    "Runs the checkout service over HTTP (docs/server.md, docs/api/openapi.yaml):\n"
    "  POST /v1/enroll, POST /v1/verify, DELETE /v1/accounts/{id}, GET /v1/nonce\n"
    "  (each needs X-Terminal-Id and Authorization: Bearer <key>), GET /healthz\n"
    "  and GET /metrics (no key unless --metrics-auth). Prints\n"
    "  \"listening on http://ADDR:PORT\" on stdout once it accepts requests;\n"
    "  SIGINT or SIGTERM stop it after the requests in progress are answered.\n"
    "\n"
    "service:\n"
    "  --db PATH             database (env FACEPAY_DB, default ./facepay.db)\n"
    "  --key-file PATH       master key file, mode 0600 (env FACEPAY_KEY_FILE;\n"
    "                        without either, FACEPAY_MASTER_KEY: 64 hex digits)\n"
    "  --models DIR          folder of the .tflite models (env FACEPAY_MODELS_DIR)\n"
    "  --backend B           auto (default), cpu or a plugin name\n"
    "  --country CODE        country calling code for numbers without '+'\n"
    "  --workers N           face pipelines for concurrent requests (default 2)\n"
    "  --profile P           camera profile: default, kiosk or mobile\n"
    "  --liveness on|off     anti-spoofing model (default on)\n"
    "  --threshold T         cosine threshold instead of the calibrated one\n"
    "  --add-terminal ID     add terminal ID, print its API key once and exit\n"
    "\n"
    "listener:\n"
    "  --listen ADDR:PORT    address to bind (default 127.0.0.1:8080; IPv6 as\n"
    "                        [::1]:8080)\n"
    "  --port N              port on the default address; 0 = any free port\n"
    "  --max-connections N   concurrent connections (default 64)\n"
    "  --timeout S           idle connection timeout in seconds (default 15)\n"
  "  --request-timeout S   headers and body of a request must arrive within S\n"
  "                        seconds in all, however they trickle (default 30)\n"
  "  --max-connections-per-ip N  connections from one address (default 16)\n"
  "  --max-body-memory N   bytes of bodies all requests in flight may hold\n"
  "                        together, 503 beyond (default 8 x --max-body-bytes)\n"
    "  --max-body-bytes N    request body limit, 413 beyond (default 16 MiB)\n"
    "  --max-image-bytes N   one decoded image, 413 beyond (default 4 MiB)\n"
    "  --nonce-ttl S         lifetime of a nonce (default 60)\n"
    "  --metrics-auth        /metrics needs a terminal key too\n"
    "\n"
    "batching (verify):\n"
    "  --batch-window-ms MS  hold a verify up to MS ms for others to join its\n"
    "                        batch; 0 = no batching. Default: 3 when the backend\n"
    "                        is an accelerator (GPU), else 0\n"
    "  --max-batch N         verifies per batch (default 8)\n"
    "  -h, --help            this text\n";

/* fpay_cli_die with the command's name: "facepay: serve: ...". */
#define die(code, ...) fpay_cli_die((code), "serve: " __VA_ARGS__)

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

/* ------------------------------------------------------ service binding */

static fpay_status ops_enroll(void *ctx, const fpay_request *req,
                              const fpay_capture_source *caps, int n,
                              fpay_service_result *out)
{
    return fpay_service_enroll(ctx, req, caps, n, out);
}

static fpay_status ops_verify(void *ctx, const fpay_request *req,
                              const fpay_capture_source *cap, fpay_service_result *out)
{
    return fpay_service_verify(ctx, req, cap, out);
}

static fpay_status ops_verify_batch(void *ctx, int n, const fpay_request *reqs,
                                    const fpay_capture_source *caps,
                                    fpay_service_result *outs)
{
    return fpay_service_verify_batch(ctx, n, reqs, caps, outs);
}

static fpay_status ops_remove(void *ctx, const fpay_request *req, fpay_service_result *out)
{
    return fpay_service_delete(ctx, req, out);
}

static fpay_status ops_terminal_check(void *ctx, const char *terminal, const char *key)
{
    return fpay_service_terminal_check(ctx, terminal, key);
}

static void observe_batch(void *m, int n)
{
    srv_metrics_batch(m, n);
}

/* Would "auto" (or the named backend) run on an accelerator? Then batching
 * pays; on a CPU a batch only adds its window to every request. */
static int backend_is_accelerator(const char *backend)
{
    if (backend && strcmp(backend, "auto")) {
        const fpay_backend_iface *b = fpay_backend_find(backend);
        return b && (b->caps & FPAY_BACKEND_CAP_ACCELERATOR);
    }
    for (int i = 0; i < fpay_backend_count(); i++) {
        const fpay_backend_iface *b = fpay_backend_get(i);
        char why[160];
        if (b && (b->caps & FPAY_BACKEND_CAP_ACCELERATOR) &&
            (!b->probe || b->probe(why, sizeof why) == FPAY_OK))
            return 1;
    }
    return 0;
}

/* ------------------------------------------------------------- signals */

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    stop_signal = sig;
}

/* --------------------------------------------------------------- serve */

typedef struct serve_opts {
    const char *db, *key_file, *models, *backend, *country, *add_terminal;
    char host[64];
    int port, workers, max_conn, timeout_s, nonce_ttl, metrics_auth, max_batch;
    int request_timeout_s, per_ip;
    long body_budget;   /* 0 = 8 x max_body */
    int profile, liveness;
    float threshold;
    long max_body, max_image;
    double window_ms;   /* < 0 = auto */
} serve_opts;

static int parse_listen(const char *v, serve_opts *o)
{
    const char *colon = strrchr(v, ':');
    if (!colon)
        return -1;
    const char *h = v;
    size_t hl = (size_t)(colon - v);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {  /* [::1]:8080 */
        h++;
        hl -= 2;
    }
    long p;
    if (hl == 0 || hl >= sizeof o->host || parse_long(colon + 1, 0, 65535, &p))
        return -1;
    memcpy(o->host, h, hl);
    o->host[hl] = 0;
    o->port = (int)p;
    return 0;
}

static int parse_args(int argc, char **argv, serve_opts *o)
{
    memset(o, 0, sizeof *o);
    snprintf(o->host, sizeof o->host, "127.0.0.1");
    o->port = 8080;
    o->workers = 2;
    o->max_conn = 64;
    o->timeout_s = 15;
    o->request_timeout_s = SRV_DEFAULT_DEADLINE_S;
    o->per_ip = SRV_DEFAULT_PER_IP_CONNECTIONS;
    o->nonce_ttl = 60;
    o->max_batch = 8;
    o->max_body = 16L << 20;
    o->max_image = 4L << 20;
    o->window_ms = -1;
    o->liveness = -1;
    o->profile = FPAY_CAMERA_DEFAULT;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--metrics-auth")) {
            o->metrics_auth = 1;
            continue;
        }
        if (a[0] != '-' || a[1] != '-')
            return die(EXIT_USAGE, "unexpected argument '%s' (see facepay serve --help)", a);
        if (i + 1 >= argc)
            return die(EXIT_USAGE, "option %s needs a value (see facepay serve --help)", a);
        const char *v = argv[++i];
        long n;
        if (!strcmp(a, "--db")) {
            o->db = v;
        } else if (!strcmp(a, "--key-file")) {
            o->key_file = v;
        } else if (!strcmp(a, "--models")) {
            o->models = v;
        } else if (!strcmp(a, "--backend")) {
            o->backend = v;
        } else if (!strcmp(a, "--country")) {
            o->country = v;
        } else if (!strcmp(a, "--add-terminal")) {
            o->add_terminal = v;
        } else if (!strcmp(a, "--workers")) {
            if (parse_long(v, 1, 64, &n))
                return die(EXIT_USAGE, "--workers wants 1..64, got '%s'", v);
            o->workers = (int)n;
        } else if (!strcmp(a, "--profile")) {
            fpay_camera_profile prof;
            if (fpay_cli_parse_profile(v, &prof))
                return die(EXIT_USAGE, "--profile wants default, kiosk or mobile, got '%s'", v);
            o->profile = (int)prof;
        } else if (!strcmp(a, "--liveness")) {
            if (strcmp(v, "on") && strcmp(v, "off"))
                return die(EXIT_USAGE, "--liveness wants on or off, got '%s'", v);
            o->liveness = !strcmp(v, "on");
        } else if (!strcmp(a, "--threshold")) {
            char *end;
            double t = strtod(v, &end);
            if (end == v || *end || !(t > 0 && t <= 1))
                return die(EXIT_USAGE, "--threshold wants a cosine in (0, 1], got '%s'", v);
            o->threshold = (float)t;
        } else if (!strcmp(a, "--listen")) {
            if (parse_listen(v, o))
                return die(EXIT_USAGE, "--listen wants ADDR:PORT (e.g. 127.0.0.1:8080), got '%s'", v);
        } else if (!strcmp(a, "--port")) {
            if (parse_long(v, 0, 65535, &n))
                return die(EXIT_USAGE, "--port wants 0..65535, got '%s'", v);
            o->port = (int)n;
        } else if (!strcmp(a, "--max-connections")) {
            if (parse_long(v, 1, 4096, &n))
                return die(EXIT_USAGE, "--max-connections wants 1..4096, got '%s'", v);
            o->max_conn = (int)n;
        } else if (!strcmp(a, "--timeout")) {
            if (parse_long(v, 1, 3600, &n))
                return die(EXIT_USAGE, "--timeout wants 1..3600 seconds, got '%s'", v);
            o->timeout_s = (int)n;
        } else if (!strcmp(a, "--request-timeout")) {
            if (parse_long(v, 1, 3600, &n))
                return die(EXIT_USAGE, "--request-timeout wants 1..3600 seconds, got '%s'", v);
            o->request_timeout_s = (int)n;
        } else if (!strcmp(a, "--max-connections-per-ip")) {
            if (parse_long(v, 1, 4096, &n))
                return die(EXIT_USAGE, "--max-connections-per-ip wants 1..4096, got '%s'", v);
            o->per_ip = (int)n;
        } else if (!strcmp(a, "--max-body-memory")) {
            if (parse_long(v, 1024, 1L << 40, &o->body_budget))
                return die(EXIT_USAGE, "--max-body-memory wants 1024..2^40 bytes, got '%s'", v);
        } else if (!strcmp(a, "--max-body-bytes")) {
            if (parse_long(v, 1024, 256L << 20, &o->max_body))
                return die(EXIT_USAGE, "--max-body-bytes wants 1024..268435456, got '%s'", v);
        } else if (!strcmp(a, "--max-image-bytes")) {
            if (parse_long(v, 1024, 64L << 20, &o->max_image))
                return die(EXIT_USAGE, "--max-image-bytes wants 1024..67108864, got '%s'", v);
        } else if (!strcmp(a, "--nonce-ttl")) {
            if (parse_long(v, 1, 3600, &n))
                return die(EXIT_USAGE, "--nonce-ttl wants 1..3600 seconds, got '%s'", v);
            o->nonce_ttl = (int)n;
        } else if (!strcmp(a, "--batch-window-ms")) {
            if (parse_long(v, 0, 1000, &n))
                return die(EXIT_USAGE, "--batch-window-ms wants 0..1000, got '%s'", v);
            o->window_ms = (double)n;
        } else if (!strcmp(a, "--max-batch")) {
            if (parse_long(v, 1, 64, &n))
                return die(EXIT_USAGE, "--max-batch wants 1..64, got '%s'", v);
            o->max_batch = (int)n;
        } else {
            return die(EXIT_USAGE, "unknown option '%s' (see facepay serve --help)", a);
        }
    }
    if (!o->db) {
        const char *e = getenv("FACEPAY_DB");
        o->db = e && *e ? e : "facepay.db";
    }
    if (!o->key_file) {
        const char *e = getenv("FACEPAY_KEY_FILE");
        o->key_file = e && *e ? e : NULL;
    }
    if (!o->models) {
        const char *e = getenv("FACEPAY_MODELS_DIR");
        o->models = e && *e ? e : FACEPAY_DEFAULT_MODELS_DIR;
    }
    return -1;
}

int fpay_cmd_serve(int argc, char **argv)
{
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(serve_help, stdout);
            return 0;
        }
    serve_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0)
        return rc;
    if (sodium_init() < 0)
        return die(1, "libsodium failed to initialise");

    fpay_service_config cfg;
    fpay_service_config_init(&cfg);
    fpay_pipeline_config_init(&cfg.pipeline, (fpay_camera_profile)o.profile);
    cfg.pipeline.models_dir = o.models;
    cfg.pipeline.backend = o.backend;
    if (o.liveness >= 0)
        cfg.pipeline.liveness = o.liveness;
    cfg.db_path = o.db;
    cfg.key_file = o.key_file;
    cfg.default_country_code = o.country;
    cfg.threshold = o.threshold;
    cfg.workers = o.workers;
    /* The pipeline refuses an image above its own limit too; keep both the
     * same so that the terminal gets the 413 of the HTTP layer. */
    cfg.pipeline.limits.max_bytes = (size_t)o.max_image;

    fpay_service *svc = NULL;
    char err[512] = "";
    fpay_status st = fpay_service_open(&cfg, &svc, err, sizeof err);
    if (st != FPAY_OK)
        return die(1, "%s (%s)", err[0] ? err : "cannot open the service", fpay_status_str(st));

    if (o.add_terminal) {
        char key[128];
        st = fpay_service_terminal_add(svc, o.add_terminal, key, sizeof key);
        fpay_service_close(svc);
        if (st != FPAY_OK)
            return die(1, "cannot add terminal '%s' (%s): ids are 1..64 of A-Z a-z 0-9 . _ - :",
                       o.add_terminal, fpay_status_str(st));
        printf("terminal %s key %s\n", o.add_terminal, key);
        sodium_memzero(key, sizeof key);
        return 0;
    }

    /* SIGINT/SIGTERM are blocked before any thread starts, so every thread
     * inherits the mask and only the main thread's sigsuspend takes them
     * (no window between testing the flag and sleeping). SIGPIPE from a
     * client that hung up must not kill us. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    sigset_t block, waitmask;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, &waitmask);
    sigdelset(&waitmask, SIGINT);
    sigdelset(&waitmask, SIGTERM);

    srv_metrics *metrics = srv_metrics_new();
    srv_nonces *nonces = srv_nonces_new(8192, 64, o.nonce_ttl);
    srv_batcher *batcher = NULL;
    double window = o.window_ms >= 0 ? o.window_ms
                                     : backend_is_accelerator(o.backend) ? 3.0 : 0.0;
    if (metrics && nonces && window > 0)
        batcher = srv_batcher_new(ops_verify_batch, svc, o.max_batch, window,
                                  o.max_conn > o.max_batch ? o.max_conn : o.max_batch,
                                  observe_batch, metrics);
    if (!metrics || !nonces || (window > 0 && !batcher)) {
        srv_metrics_free(metrics);
        srv_nonces_free(nonces);
        fpay_service_close(svc);
        return die(1, "out of memory or threads");
    }

    srv_config sc = {
        .ops = {svc, ops_enroll, ops_verify, ops_remove, ops_terminal_check},
        .limits = {(size_t)o.max_body, (size_t)o.max_image, SRV_MAX_ENROLL_IMAGES},
        .country = o.country,
        .metrics_auth = o.metrics_auth,
        .nonces = nonces,
        .metrics = metrics,
        .batcher = batcher,
        .log = stderr,
        .body_budget = (size_t)o.body_budget,
    };
    srv_listen l = {o.host, o.port, o.max_conn, o.timeout_s, 32 * 1024, o.per_ip,
                    o.request_timeout_s};

    int port = 0;
    srv_server *server = srv_server_start(&sc, &l, &port, err, sizeof err);
    if (!server) {
        srv_batcher_free(batcher);
        srv_nonces_free(nonces);
        srv_metrics_free(metrics);
        fpay_service_close(svc);
        return die(1, "%s", err);
    }
    float thr;
    double fmr;
    fpay_service_threshold(svc, &thr, &fmr);
    fprintf(stderr,
            "facepay-serve: workers=%d batching=%s (window %.0f ms, max %d) threshold=%.4f "
            "fmr=%g max_body=%ld max_image=%ld\n",
            o.workers, batcher ? "on" : "off", window, o.max_batch, (double)thr, fmr,
            o.max_body, o.max_image);
    printf("listening on http://%s%s%s:%d\n", strchr(o.host, ':') ? "[" : "", o.host,
           strchr(o.host, ':') ? "]" : "", port);
    fflush(stdout);

    while (!stop_signal)
        sigsuspend(&waitmask);

    fprintf(stderr, "facepay-serve: signal %d: finishing requests in progress\n",
            (int)stop_signal);
    srv_server_stop(server);
    srv_batcher_free(batcher);
    srv_nonces_free(nonces);
    srv_metrics_free(metrics);
    fpay_service_close(svc);
    fprintf(stderr, "facepay-serve: stopped\n");
    return 0;
}
