/*
 * facepay-load - load client for `facepay serve`.
 *
 *   facepay-load --url http://127.0.0.1:8080 --terminal ID --key KEY
 *                --phone N | --id-card N --image FILE
 *                [--terminals 4] [--duration 20] [--json]
 *
 * N threads, each a terminal on its own keep-alive connection, repeat
 * GET /v1/nonce + POST /v1/verify with the image for the given time and
 * report latency percentiles of the pair (what a payer waits for), the
 * verify alone, throughput and errors. The service refuses a capture it has
 * seen before (DUPLICATE_CAPTURE), so every request carries a unique JPEG
 * comment segment (or trailing bytes for PNG): the pixels stay the same.
 */
#include "server_internal.h"

#include <cjson/cJSON.h>
#include <sodium.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define EXIT_USAGE 2

static const char *const usage =
    "usage: facepay-load --url http://HOST:PORT --terminal ID --key KEY\n"
    "                    --phone N | --id-card N --image FILE\n"
    "                    [--terminals N] [--duration S] [--json]\n"
    "\n"
    "  --terminals N   concurrent terminals (threads, connections): default 4\n"
    "  --duration S    seconds to run: default 20\n"
    "  --json          one JSON object on stdout instead of the text report\n"
    "\n"
    "Each terminal loops GET /v1/nonce + POST /v1/verify. Errors are transport\n"
    "failures and answers other than 200 (a DECLINE is not an error).\n";

typedef struct load_cfg {
    char host[256];
    int port;
    const char *terminal, *key, *field, *account;
    unsigned char *image;
    size_t image_len;
    double duration;
} load_cfg;

typedef struct worker {
    const load_cfg *cfg;
    int index;
    pthread_t thread;
    double *pair_ms, *verify_ms;
    size_t n, cap;
    long errors, approve, decline;
    long status[6];        /* 2xx..5xx by hundreds; [0] transport errors */
    char first_error[200];
} worker;

static double end_time;

static int record(worker *w, double pair, double verify)
{
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 1024;
        double *a = realloc(w->pair_ms, cap * sizeof *a);
        if (!a)
            return -1;
        w->pair_ms = a;
        double *b = realloc(w->verify_ms, cap * sizeof *b);
        if (!b)
            return -1;
        w->verify_ms = b;
        w->cap = cap;
    }
    w->pair_ms[w->n] = pair;
    w->verify_ms[w->n] = verify;
    w->n++;
    return 0;
}

static void note_error(worker *w, const char *what, int status, const char *detail)
{
    w->errors++;
    if (w->first_error[0])
        return;
    if (status)
        snprintf(w->first_error, sizeof w->first_error, "%s: HTTP %d %.150s", what, status,
                 detail ? detail : "");
    else
        snprintf(w->first_error, sizeof w->first_error, "%s: %.150s", what, detail);
}

/* The image with a unique marker, so that no two requests carry the same
 * bytes (the service's replay check hashes them). */
static unsigned char *unique_image(const load_cfg *c, int thread, long seq, size_t *len)
{
    char tag[48];
    int tl = snprintf(tag, sizeof tag, "facepay-load %d %ld", thread, seq);
    unsigned char *p = malloc(c->image_len + 4 + (size_t)tl);
    if (!p)
        return NULL;
    if (c->image_len > 2 && c->image[0] == 0xFF && c->image[1] == 0xD8) {
        /* SOI, then a COM segment (length counts its own two bytes). */
        p[0] = 0xFF, p[1] = 0xD8, p[2] = 0xFF, p[3] = 0xFE;
        p[4] = (unsigned char)((tl + 2) >> 8), p[5] = (unsigned char)((tl + 2) & 255);
        memcpy(p + 6, tag, (size_t)tl);
        memcpy(p + 6 + tl, c->image + 2, c->image_len - 2);
        *len = c->image_len + 4 + (size_t)tl;
    } else {
        memcpy(p, c->image, c->image_len);
        memcpy(p + c->image_len, tag, (size_t)tl);
        *len = c->image_len + (size_t)tl;
    }
    return p;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    const load_cfg *c = w->cfg;
    char err[256] = "";
    srv_http_conn *conn = srv_http_connect(c->host, c->port, 30, err, sizeof err);
    if (!conn) {
        note_error(w, "connect", 0, err);
        w->status[0]++;
        return NULL;
    }
    char auth[512];
    snprintf(auth, sizeof auth, "X-Terminal-Id: %s\r\nAuthorization: Bearer %s\r\n", c->terminal,
             c->key);
    size_t b64cap = sodium_base64_ENCODED_LEN(c->image_len + 64, sodium_base64_VARIANT_ORIGINAL);
    char *b64 = malloc(b64cap);
    char *body = malloc(b64cap + 512);
    for (long seq = 0; b64 && body && srv_now_s() < end_time; seq++) {
        double t0 = srv_now_s();
        srv_http_response r;
        err[0] = 0;
        if (srv_http_request(conn, "GET", "/v1/nonce", auth, NULL, NULL, 0, &r, err, sizeof err)) {
            note_error(w, "nonce", 0, err);
            w->status[0]++;
            continue;
        }
        cJSON *j = r.status == 200 ? cJSON_Parse(r.body) : NULL;
        const cJSON *nonce = cJSON_GetObjectItemCaseSensitive(j, "nonce");
        if (!cJSON_IsString(nonce) || strlen(nonce->valuestring) > 64) {
            note_error(w, "nonce", r.status, r.body);
            w->status[r.status / 100 <= 5 ? r.status / 100 : 0]++;
            cJSON_Delete(j);
            srv_http_response_free(&r);
            continue;
        }
        size_t img_len;
        unsigned char *img = unique_image(c, w->index, seq, &img_len);
        if (!img)
            break;
        sodium_bin2base64(b64, b64cap, img, img_len, sodium_base64_VARIANT_ORIGINAL);
        free(img);
        int blen = snprintf(body, b64cap + 512, "{\"%s\":\"%s\",\"nonce\":\"%s\",\"image\":\"%s\"}",
                            c->field, c->account, nonce->valuestring, b64);
        cJSON_Delete(j);
        srv_http_response_free(&r);
        double t1 = srv_now_s();
        if (srv_http_request(conn, "POST", "/v1/verify", auth, "application/json", body,
                             (size_t)blen, &r, err, sizeof err)) {
            note_error(w, "verify", 0, err);
            w->status[0]++;
            continue;
        }
        double t2 = srv_now_s();
        w->status[r.status / 100 >= 1 && r.status / 100 <= 5 ? r.status / 100 : 0]++;
        if (r.status != 200) {
            note_error(w, "verify", r.status, r.body);
        } else {
            if (strstr(r.body, "\"APPROVE\""))
                w->approve++;
            else
                w->decline++;
            if (record(w, (t2 - t0) * 1e3, (t2 - t1) * 1e3))
                break;
        }
        srv_http_response_free(&r);
    }
    free(b64);
    free(body);
    srv_http_close(conn);
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *v, size_t n, double p)
{
    if (!n)
        return 0;
    size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

static int read_file(const char *path, unsigned char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    size_t cap = 1 << 16, n = 0;
    unsigned char *p = malloc(cap);
    while (p) {
        size_t r = fread(p + n, 1, cap - n, f);
        n += r;
        if (n < cap)
            break;
        if (cap >= (64u << 20)) {
            free(p);
            p = NULL;
            break;
        }
        unsigned char *q = realloc(p, cap * 2);
        if (!q) {
            free(p);
            p = NULL;
        }
        p = q;
        cap *= 2;
    }
    fclose(f);
    if (!p || n == 0) {
        free(p);
        return -1;
    }
    *out = p;
    *len = n;
    return 0;
}

int main(int argc, char **argv)
{
    load_cfg c;
    memset(&c, 0, sizeof c);
    int terminals = 4, json = 0;
    c.duration = 20;
    const char *url = NULL, *image = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage, stdout);
            return 0;
        }
        if (!strcmp(a, "--json")) {
            json = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "facepay-load: %s needs a value\n%s", a, usage);
            return EXIT_USAGE;
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--url"))
            url = v;
        else if (!strcmp(a, "--terminal"))
            c.terminal = v;
        else if (!strcmp(a, "--key"))
            c.key = v;
        else if (!strcmp(a, "--phone") || !strcmp(a, "--id-card")) {
            c.field = !strcmp(a, "--phone") ? "phone" : "id_card";
            c.account = v;
        } else if (!strcmp(a, "--image"))
            image = v;
        else if (!strcmp(a, "--terminals"))
            terminals = atoi(v);
        else if (!strcmp(a, "--duration"))
            c.duration = atof(v);
        else {
            fprintf(stderr, "facepay-load: unknown option '%s'\n%s", a, usage);
            return EXIT_USAGE;
        }
    }
    if (!url || !c.terminal || !c.key || !c.account || !image || terminals < 1 ||
        terminals > 1024 || !(c.duration > 0 && c.duration <= 3600)) {
        fprintf(stderr, "facepay-load: --url, --terminal, --key, --phone/--id-card and --image "
                        "are required; --terminals 1..1024, --duration 0..3600\n%s", usage);
        return EXIT_USAGE;
    }
    /* Strings go into JSON and headers as they are: refuse what would need
     * escaping rather than escape it. */
    for (const char *s = c.account; *s; s++)
        if (*s == '"' || *s == '\\' || (unsigned char)*s < 0x20) {
            fprintf(stderr, "facepay-load: the account has a character it cannot send\n");
            return EXIT_USAGE;
        }
    if (strchr(c.terminal, '\r') || strchr(c.terminal, '\n') || strchr(c.key, '\r') ||
        strchr(c.key, '\n')) {
        fprintf(stderr, "facepay-load: line breaks in --terminal or --key\n");
        return EXIT_USAGE;
    }
    if (strncmp(url, "http://", 7) != 0) {
        fprintf(stderr, "facepay-load: --url must be http://HOST:PORT\n");
        return EXIT_USAGE;
    }
    const char *hp = url + 7;
    const char *colon = strrchr(hp, ':');
    size_t hl = colon ? (size_t)(colon - hp) : strlen(hp);
    if (hl == 0 || hl >= sizeof c.host) {
        fprintf(stderr, "facepay-load: bad host in --url\n");
        return EXIT_USAGE;
    }
    memcpy(c.host, hp, hl);
    c.host[hl] = 0;
    if (c.host[0] == '[' && hl > 2 && c.host[hl - 1] == ']') {
        memmove(c.host, c.host + 1, hl - 2);
        c.host[hl - 2] = 0;
    }
    c.port = colon ? atoi(colon + 1) : 80;
    if (c.port < 1 || c.port > 65535) {
        fprintf(stderr, "facepay-load: bad port in --url\n");
        return EXIT_USAGE;
    }
    if (sodium_init() < 0 || read_file(image, &c.image, &c.image_len)) {
        fprintf(stderr, "facepay-load: cannot read %s: %s\n", image, strerror(errno));
        return 1;
    }

    worker *w = calloc((size_t)terminals, sizeof *w);
    if (!w)
        return 1;
    double start = srv_now_s();
    end_time = start + c.duration;
    int started = 0;
    for (int i = 0; i < terminals; i++) {
        w[i].cfg = &c;
        w[i].index = i;
        if (pthread_create(&w[i].thread, NULL, worker_main, &w[i]))
            break;
        started++;
    }
    size_t total = 0;
    long errors = 0, approve = 0, decline = 0, status[6] = {0};
    const char *first_error = "";
    for (int i = 0; i < started; i++) {
        pthread_join(w[i].thread, NULL);
        total += w[i].n;
        errors += w[i].errors;
        approve += w[i].approve;
        decline += w[i].decline;
        for (int k = 0; k < 6; k++)
            status[k] += w[i].status[k];
        if (!first_error[0] && w[i].first_error[0])
            first_error = w[i].first_error;
    }
    double elapsed = srv_now_s() - start;
    double *pair = malloc((total + 1) * sizeof *pair), *ver = malloc((total + 1) * sizeof *ver);
    size_t k = 0;
    for (int i = 0; pair && ver && i < started; i++)
        for (size_t j = 0; j < w[i].n; j++, k++) {
            pair[k] = w[i].pair_ms[j];
            ver[k] = w[i].verify_ms[j];
        }
    if (!pair || !ver)
        return 1;
    qsort(pair, total, sizeof *pair, cmp_double);
    qsort(ver, total, sizeof *ver, cmp_double);
    double tput = elapsed > 0 ? (double)total / elapsed : 0;
    if (json) {
        printf("{\"terminals\":%d,\"duration_s\":%.3f,\"requests\":%zu,\"errors\":%ld,"
               "\"approve\":%ld,\"decline\":%ld,\"throughput_rps\":%.3f,"
               "\"latency_ms\":{\"p50\":%.2f,\"p90\":%.2f,\"p99\":%.2f,\"max\":%.2f},"
               "\"verify_latency_ms\":{\"p50\":%.2f,\"p90\":%.2f,\"p99\":%.2f},"
               "\"status\":{\"transport\":%ld,\"2xx\":%ld,\"4xx\":%ld,\"5xx\":%ld}}\n",
               started, elapsed, total, errors, approve, decline, tput, pct(pair, total, 50),
               pct(pair, total, 90), pct(pair, total, 99), total ? pair[total - 1] : 0,
               pct(ver, total, 50), pct(ver, total, 90), pct(ver, total, 99), status[0],
               status[2], status[4], status[5]);
    } else {
        printf("terminals %d, %.1f s: %zu verifies answered 200 (%ld APPROVE, %ld DECLINE), "
               "%ld errors\n",
               started, elapsed, total, approve, decline, errors);
        printf("throughput %.2f verifies/s\n", tput);
        printf("nonce+verify latency ms: p50 %.1f  p90 %.1f  p99 %.1f  max %.1f\n",
               pct(pair, total, 50), pct(pair, total, 90), pct(pair, total, 99),
               total ? pair[total - 1] : 0);
        printf("verify latency ms:       p50 %.1f  p90 %.1f  p99 %.1f\n", pct(ver, total, 50),
               pct(ver, total, 90), pct(ver, total, 99));
        if (first_error[0])
            printf("first error: %s\n", first_error);
    }
    for (int i = 0; i < terminals; i++) {
        free(w[i].pair_ms);
        free(w[i].verify_ms);
    }
    free(w);
    free(pair);
    free(ver);
    free(c.image);
    return errors ? 1 : 0;
}
