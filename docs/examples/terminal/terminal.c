/*
 * terminal - what a checkout terminal does with libfacepay, start to end:
 *
 *   1. at boot, open the service once: it loads the five models, opens the
 *      local encrypted template store and reads the master key;
 *   2. per customer, take the phone number typed on the keypad and one NV21
 *      frame from the camera, and ask for a 1:1 verification;
 *   3. show the decision (APPROVE, or DECLINE with a reason a person can
 *      act on). The score stays in the operator's log, never on the screen.
 *
 *   terminal [OPTIONS] FRAME.nv21 PHONE      one customer
 *   terminal [OPTIONS] < requests            one "PHONE FRAME.nv21" a line
 *
 * OPTIONS: --models DIR --db FILE --key-file FILE --country CC --width W
 * --height H --terminal-id ID --threads N (0, the default: the cores the
 * checkout leaves idle, up to 4) --liveness on|off, and --enroll
 * (enroll the frame under the number instead of verifying: bring-up of a
 * test store).
 *
 * Here the "camera" is a file of width*height*3/2 bytes (make_nv21 makes one
 * from a photo); on a real terminal the frame comes from the camera HAL
 * (Android ImageReader, V4L2) in the same layout, and stays borrowed only
 * for the duration of the call.
 */
#define _POSIX_C_SOURCE 200809L
#include <facepay/facepay.h>
#include <facepay/pipeline.h>
#include <facepay/service.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

typedef struct terminal_opts {
    const char *models, *db, *key, *country, *terminal_id;
    int width, height, threads, enroll, liveness;
} terminal_opts;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Reads exactly width*height*3/2 bytes: one NV21 frame. */
static uint8_t *read_frame(const char *path, const terminal_opts *o, size_t *size)
{
    const size_t want = (size_t)o->width * (size_t)o->height * 3 / 2;
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "terminal: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    uint8_t *buf = malloc(want + 1);
    size_t got = buf ? fread(buf, 1, want + 1, f) : 0;
    fclose(f);
    if (!buf || got != want) {
        fprintf(stderr, "terminal: %s: want one %dx%d NV21 frame (%zu bytes), got %zu\n",
                path, o->width, o->height, want, got);
        free(buf);
        return NULL;
    }
    *size = want;
    return buf;
}

/* One customer: returns 0 when a decision was reached (an enrollment: when
 * the face was enrolled), 1 otherwise. */
static int checkout(fpay_service *svc, const terminal_opts *o, const char *phone,
                    const char *frame_path)
{
    size_t size = 0;
    uint8_t *pixels = read_frame(frame_path, o, &size);
    if (!pixels)
        return 1;
    const fpay_frame frame = {
        .format = FPAY_PIX_NV21,
        .width = o->width,
        .height = o->height,
        .data = pixels,
        .size = size,
        .stride = o->width,
        .uv = NULL, /* the V,U plane follows the Y plane */
        .range = FPAY_YUV_BT601_LIMITED,
    };
    const fpay_capture_source capture = {.frame = &frame};
    const fpay_request req = {
        .terminal_id = o->terminal_id,
        .id_kind = FPAY_ID_PHONE,
        .account = phone,
    };
    fpay_service_result res;
    memset(&res, 0, sizeof res);
    double t0 = now_ms();
    fpay_status st = o->enroll ? fpay_service_enroll(svc, &req, &capture, 1, &res)
                               : fpay_service_verify(svc, &req, &capture, &res);
    double t1 = now_ms();
    free(pixels);
    if (st != FPAY_OK) {
        /* A bad call or an internal failure: the result still says DECLINE. */
        printf("decision: DECLINE (%s)\n", res.message[0] ? res.message : fpay_status_str(st));
        fprintf(stderr, "terminal: %s: %s\n", o->enroll ? "enroll" : "verify",
                fpay_status_str(st));
        return 1;
    }
    /* What the customer sees. An enrollment either enrolled the face or
     * says why not; the bring-up script must see the refusal. */
    if (o->enroll && res.decision == FPAY_APPROVE)
        printf("enrollment: ENROLLED\n");
    else if (o->enroll)
        printf("enrollment: REFUSED (%s: %s)\n", fpay_reason_name(res.reason),
               res.message[0] ? res.message : fpay_reason_str(res.reason));
    else
        printf("decision: %s (%s: %s)\n", fpay_decision_name(res.decision),
               fpay_reason_name(res.reason),
               res.message[0] ? res.message : fpay_reason_str(res.reason));
    /* What the operator's log gets. */
    fprintf(stderr, "[log] account %s score %.4f threshold %.4f (FMR %g) ms: detect %.1f "
                    "liveness %.1f embed %.1f match %.1f total %.1f (call %.1f)\n",
            res.account_hash_prefix, (double)res.score, (double)res.threshold, res.fmr,
            res.times.detect, res.times.liveness, res.times.embed, res.times.match,
            res.times.total, t1 - t0);
    return o->enroll && res.decision != FPAY_APPROVE;
}

static int usage(FILE *to, int code)
{
    fputs("usage: terminal [--models DIR] [--db FILE] [--key-file FILE] [--country CC]\n"
          "                [--width W] [--height H] [--terminal-id ID] [--threads N]\n"
          "                [--liveness on|off] [--enroll] [FRAME.nv21 PHONE]\n"
          "without FRAME and PHONE: one \"PHONE FRAME.nv21\" per line on stdin\n",
          to);
    return code;
}

int main(int argc, char **argv)
{
    const double t_start = now_ms();
    terminal_opts o = {
        .models = getenv("FACEPAY_MODELS_DIR"),
        .db = "terminal.db",
        .key = NULL, /* NULL: $FACEPAY_MASTER_KEY */
        .country = "86",
        .terminal_id = "lane-1",
        .width = 640,
        .height = 480,
        .threads = 0, /* the service's choice: a terminal's idle cores */
        .liveness = 1,
    };
    const char *pos[2];
    int npos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--enroll")) {
            o.enroll = 1;
            continue;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help"))
            return usage(stdout, 0);
        if (a[0] == '-' && a[1] == '-' && !v)
            return usage(stderr, 2);
        if (!strcmp(a, "--models"))
            o.models = v;
        else if (!strcmp(a, "--db"))
            o.db = v;
        else if (!strcmp(a, "--key-file"))
            o.key = v;
        else if (!strcmp(a, "--country"))
            o.country = v;
        else if (!strcmp(a, "--terminal-id"))
            o.terminal_id = v;
        else if (!strcmp(a, "--width"))
            o.width = atoi(v);
        else if (!strcmp(a, "--height"))
            o.height = atoi(v);
        else if (!strcmp(a, "--threads"))
            o.threads = atoi(v);
        else if (!strcmp(a, "--liveness"))
            o.liveness = strcmp(v, "off") != 0;
        else if (a[0] == '-' && a[1] == '-')
            return usage(stderr, 2);
        else if (npos < 2) {
            pos[npos++] = a;
            continue;
        } else
            return usage(stderr, 2);
        i++;
    }
    if ((npos != 0 && npos != 2) || o.width <= 0 || o.height <= 0 || (o.width | o.height) & 1 ||
        o.threads < 0)
        return usage(stderr, 2);

    /* Boot: once per process. */
    fpay_service_config cfg;
    fpay_service_config_init(&cfg);
    cfg.db_path = o.db;
    cfg.key_file = o.key;
    cfg.default_country_code = o.country;
    cfg.pipeline.models_dir = o.models;
    cfg.pipeline.threads = o.threads;
    /* Off only for emulators and photos too small for the model: a terminal
     * keeps the anti-spoofing check on. */
    cfg.pipeline.liveness = o.liveness;
    cfg.workers = 1;
    fpay_service *svc = NULL;
    char err[320];
    double t0 = now_ms();
    fpay_status st = fpay_service_open(&cfg, &svc, err, sizeof err);
    if (st != FPAY_OK) {
        fprintf(stderr, "terminal: cannot open the service: %s (%s)\n", err, fpay_status_str(st));
        return 1;
    }
    double t_open = now_ms() - t0;
    fprintf(stderr, "[log] libfacepay %s, service open in %.1f ms\n", fpay_version(), t_open);

    int rc = 0, n = 0;
    double t_first = 0;
    if (npos == 2) {
        rc = checkout(svc, &o, pos[1], pos[0]);
        n = 1;
        t_first = now_ms() - t_start;
    } else {
        char line[4608];
        while (fgets(line, sizeof line, stdin)) {
            char phone[64], path[4096];
            if (line[0] == '#' || line[0] == '\n')
                continue;
            if (sscanf(line, "%63s %4095s", phone, path) != 2) {
                fprintf(stderr, "terminal: want \"PHONE FRAME.nv21\", got: %s", line);
                rc = 1;
                continue;
            }
            rc |= checkout(svc, &o, phone, path);
            if (n++ == 0)
                t_first = now_ms() - t_start;
        }
    }
    fpay_service_close(svc);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    fprintf(stderr, "[log] %d request%s, first decision %.1f ms after start, peak RSS %ld KiB\n",
            n, n == 1 ? "" : "s", t_first, ru.ru_maxrss);
    return rc;
}
