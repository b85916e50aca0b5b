/*
 * service_commands.c - the checkout commands of the facepay CLI, on
 * facepay/service.h:
 *
 *   facepay keygen PATH
 *   facepay enroll --phone N|--id N IMAGE...
 *   facepay verify --phone N|--id N IMAGE
 *   facepay delete|unlock --phone N|--id N
 *   facepay calibrate --pairs FILE [--pairs FILE...] --root DIR --fmr F
 *   facepay audit verify
 *   facepay terminal add ID
 *   facepay rotate-key NEWKEYFILE
 *
 * Exit codes: 0 done (APPROVE for verify), 3 DECLINE (a decision, with
 * its reason on stdout), 2 usage error, 1 any other failure (including a
 * DECLINE for INTERNAL_ERROR). Errors are one line "facepay: ..." on
 * stderr. The account number is never printed back.
 */
#define _POSIX_C_SOURCE 200809L
#include "cli_util.h"
#include "service_commands.h"

#include "facepay/facepay.h"
#include "facepay/pipeline.h"
#include "facepay/service.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef FACEPAY_DEFAULT_MODELS_DIR
#define FACEPAY_DEFAULT_MODELS_DIR "models"
#endif

#define EXIT_ERROR 1
#define EXIT_USAGE 2
#define EXIT_DECLINE 3
#define MAX_CAPTURES 16
#define MAX_PAIRS_FILES 16
/* Larger than any limit the pipeline accepts; the pipeline's own limit
 * (4 MiB by default) refuses with BAD_IMAGE below this. */
#define MAX_IMAGE_FILE (64u << 20)

const char *const fpay_service_usage =
    "  keygen PATH             new random master key, mode 0600 (never\n"
    "                          overwrites)\n"
    "  enroll --phone N|--id N IMAGE...\n"
    "                          enroll (or re-enroll) an account from 1..5\n"
    "                          photos under the stricter enrollment gates\n"
    "  verify --phone N|--id N IMAGE\n"
    "                          pay-by-face check: APPROVE or DECLINE and why,\n"
    "                          per-stage latency, operator line\n"
    "  delete --phone N|--id N erase the account's template and counters\n"
    "  unlock --phone N|--id N clear failure counters and a hard lock\n"
    "  calibrate --pairs FILE [--pairs FILE] --root DIR --fmr F [--threads N]\n"
    "                          threshold for false-match rate F from LFW-style\n"
    "                          pairs; stored in the database\n"
    "  audit verify            check the audit log's hash chain\n"
    "  terminal add ID         new API key for a terminal (printed once)\n"
    "  rotate-key NEWKEYFILE   re-encrypt every template under a new key\n"
    "  SERVICE OPTS: --db PATH (env FACEPAY_DB, default ./facepay.db)\n"
    "        --key-file PATH (env FACEPAY_KEY_FILE, else FACEPAY_MASTER_KEY)\n"
    "        --models DIR --backend B --country CODE --terminal ID\n"
    "        --profile default|kiosk|mobile --liveness on|off --threshold T\n"
    "  exit codes: 0 done/APPROVE, 3 DECLINE, 2 usage, 1 error\n";

static const char *const common_help =
    "\n"
    "options:\n"
    "  --db PATH           database (env FACEPAY_DB, default ./facepay.db)\n"
    "  --key-file PATH     master key file, mode 0600 (env FACEPAY_KEY_FILE;\n"
    "                      without either, FACEPAY_MASTER_KEY: 64 hex digits)\n"
    "  --models DIR        folder of the .tflite models (env FACEPAY_MODELS_DIR)\n"
    "  --backend B         auto (default), cpu or a plugin name\n"
    "  --country CODE      country calling code for numbers without '+'\n"
    "  --terminal ID       terminal recorded in the audit log (default local)\n"
    "  --profile P         camera profile: default, kiosk or mobile\n"
    "  --liveness on|off   anti-spoofing model (default on; off only for photos\n"
    "                      too small for it, such as LFW's 250x250)\n"
    "  --threshold T       cosine threshold instead of the calibrated one\n"
    "  -h, --help          this text\n"
    "\n"
    "exit codes: 0 done (APPROVE), 3 DECLINE, 2 usage error, 1 other error\n";

static const struct {
    const char *cmd, *text;
} help_texts[] = {
    {"keygen", "usage: facepay keygen PATH\n\n"
               "Writes a new random 256-bit master key (64 hex digits) to PATH with\n"
               "mode 0600. Refuses to overwrite an existing file: a key may be the\n"
               "only thing that opens a database.\n"},
    {"enroll", "usage: facepay enroll [OPTIONS] --phone N|--id N IMAGE...\n\n"
               "Enrolls (or replaces) the account's face template from 1..5 photos.\n"
               "Each photo must pass the enrollment gates, stricter than payment\n"
               "(docs/service.md); a photo that enrolled before is refused\n"
               "(DUPLICATE_CAPTURE). --phone takes a phone number (E.164, or\n"
               "national with --country), --id an 18-character resident ID.\n"},
    {"verify", "usage: facepay verify [OPTIONS] --phone N|--id N IMAGE\n\n"
               "1:1 check of IMAGE against the account. Prints the decision and its\n"
               "reason, the latency of each stage (decode, detect, select, quality,\n"
               "align, liveness, embed, match, total) and an operator line with\n"
               "the score, the threshold and its false-match rate.\n"},
    {"delete", "usage: facepay delete [OPTIONS] --phone N|--id N\n\n"
               "Erases the account's template, counters and capture hashes.\n"
               "Deleting an unknown account is not an error.\n"},
    {"unlock", "usage: facepay unlock [OPTIONS] --phone N|--id N\n\n"
               "Clears the account's failure counters and a hard lock.\n"},
    {"calibrate",
     "usage: facepay calibrate [OPTIONS] --pairs FILE [--pairs FILE...] --root DIR\n"
     "                         --fmr F [--threads N]\n\n"
     "Embeds every image the LFW-style pairs files list (root/name/name_NNNN.jpg)\n"
     "once, scores every pair of images of two different people (impostors) and\n"
     "the same-person pairs (genuines: the listed ones, and every pair of\n"
     "images of the same person), and picks the smallest threshold whose\n"
     "impostor false-match rate is <= F (it needs >= 1/F impostor pairs).\n"
     "Shows its progress on stderr (at most 20 lines when not a terminal).\n"
     "Prints the threshold, the FMR reached, the FNMR there and the counts,\n"
     "and stores them in the database, where every later run finds them.\n"},
    {"audit", "usage: facepay audit [OPTIONS] verify\n\n"
              "Walks the audit log's hash chain and prints the number of records;\n"
              "exit 1 and the first record that does not verify when it is broken.\n"},
    {"terminal", "usage: facepay terminal [OPTIONS] add ID\n\n"
                 "Creates (or replaces) terminal ID's API key for the HTTP server and\n"
                 "prints it once; the database keeps only a keyed hash of it.\n"},
    {"rotate-key", "usage: facepay rotate-key [OPTIONS] NEWKEYFILE\n\n"
                   "Re-encrypts every template under the master key in NEWKEYFILE (made\n"
                   "with keygen), in one transaction. Use NEWKEYFILE from then on: the\n"
                   "database refuses the old key, and every terminal key is revoked\n"
                   "(terminal add gives each terminal a new one).\n"},
};


int fpay_is_service_command(const char *cmd)
{
    for (size_t i = 0; i < sizeof help_texts / sizeof help_texts[0]; i++)
        if (!strcmp(cmd, help_texts[i].cmd))
            return 1;
    return 0;
}

typedef struct sopts {
    const char *db, *key_file, *models, *backend, *country, *terminal;
    fpay_camera_profile profile;
    int liveness;              /* -1 = profile default */
    float threshold;           /* 0 = calibrated */
    const char *phone, *id;
    const char *pairs[MAX_PAIRS_FILES];
    int npairs;
    const char *root;
    double fmr;
    int threads;
    const char *args[MAX_CAPTURES + 1];
    int nargs;
} sopts;

static int parse_double(const char *s, double lo, double hi, double *v)
{
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    if (errno || end == s || *end || !(x >= lo && x <= hi))
        return -1;
    *v = x;
    return 0;
}

/* Parses the options of command cmd. want_account: --phone/--id allowed
 * (and then required); calibrate: --pairs/--root/--fmr/--threads allowed.
 * Returns -1 when parsing went fine, else the exit code (help: 0). */
static int parse(const char *cmd, int argc, char **argv, sopts *o, int want_account,
                 int min_args, int max_args)
{
    memset(o, 0, sizeof *o);
    o->liveness = -1;
    o->profile = FPAY_CAMERA_DEFAULT;
    const int calibrate = !strcmp(cmd, "calibrate");
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            for (size_t k = 0; k < sizeof help_texts / sizeof help_texts[0]; k++)
                if (!strcmp(cmd, help_texts[k].cmd))
                    fputs(help_texts[k].text, stdout);
            if (strcmp(cmd, "keygen"))
                fputs(common_help, stdout);
            return 0;
        }
    }
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (a[0] != '-' || a[1] != '-') {
            if (a[0] == '-' && a[1])
                return fpay_cli_die(EXIT_USAGE, "%s: unknown option '%s' (see facepay %s --help)", cmd,
                           a, cmd);
            if (o->nargs == max_args)
                return fpay_cli_die(EXIT_USAGE, "%s: at most %d argument%s (see facepay %s --help)", cmd,
                           max_args, max_args == 1 ? "" : "s", cmd);
            o->args[o->nargs++] = a;
            continue;
        }
        if (!has)
            return fpay_cli_die(EXIT_USAGE, "%s: option %s needs a value (see facepay %s --help)", cmd,
                       a, cmd);
        const char *v = argv[++i];
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
        } else if (!strcmp(a, "--terminal")) {
            o->terminal = v;
        } else if (!strcmp(a, "--profile")) {
            if (fpay_cli_parse_profile(v, &o->profile))
                return fpay_cli_die(EXIT_USAGE, "--profile wants default, kiosk or mobile, got '%s'", v);
        } else if (!strcmp(a, "--liveness")) {
            if (strcmp(v, "on") && strcmp(v, "off"))
                return fpay_cli_die(EXIT_USAGE, "--liveness wants on or off, got '%s'", v);
            o->liveness = !strcmp(v, "on");
        } else if (!strcmp(a, "--threshold")) {
            double t;
            if (parse_double(v, 0.0, 1.0, &t) || !(t > 0.0))
                return fpay_cli_die(EXIT_USAGE, "--threshold wants a cosine in (0, 1], got '%s'", v);
            o->threshold = (float)t;
        } else if (want_account && (!strcmp(a, "--phone") || !strcmp(a, "--id"))) {
            if (o->phone || o->id)
                return fpay_cli_die(EXIT_USAGE, "%s: one --phone or --id, not both", cmd);
            if (!strcmp(a, "--phone"))
                o->phone = v;
            else
                o->id = v;
        } else if (calibrate && !strcmp(a, "--pairs")) {
            if (o->npairs == MAX_PAIRS_FILES)
                return fpay_cli_die(EXIT_USAGE, "calibrate: at most %d --pairs files", MAX_PAIRS_FILES);
            o->pairs[o->npairs++] = v;
        } else if (calibrate && !strcmp(a, "--root")) {
            o->root = v;
        } else if (calibrate && !strcmp(a, "--fmr")) {
            if (parse_double(v, 1e-9, 0.5, &o->fmr))
                return fpay_cli_die(EXIT_USAGE, "--fmr wants a rate in [1e-9, 0.5], got '%s'", v);
        } else if (calibrate && !strcmp(a, "--threads")) {
            double t;
            if (parse_double(v, 1, 64, &t) || t != (int)t)
                return fpay_cli_die(EXIT_USAGE, "--threads wants an integer 1..64, got '%s'", v);
            o->threads = (int)t;
        } else {
            return fpay_cli_die(EXIT_USAGE, "%s: unknown option '%s' (see facepay %s --help)", cmd, a,
                       cmd);
        }
    }
    if (want_account && !o->phone && !o->id)
        return fpay_cli_die(EXIT_USAGE, "%s needs --phone N or --id N (see facepay %s --help)", cmd,
                   cmd);
    if (calibrate && (!o->npairs || !o->root || o->fmr == 0))
        return fpay_cli_die(EXIT_USAGE, "calibrate needs --pairs FILE, --root DIR and --fmr F");
    if (o->nargs < min_args)
        return fpay_cli_die(EXIT_USAGE, "%s needs %s (see facepay %s --help)", cmd,
                   !strcmp(cmd, "enroll") || !strcmp(cmd, "verify") ? "an IMAGE" : "arguments",
                   cmd);
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

static int open_service(const sopts *o, fpay_service **svc)
{
    fpay_service_config cfg;
    fpay_service_config_init(&cfg);
    fpay_pipeline_config_init(&cfg.pipeline, o->profile);
    cfg.pipeline.models_dir = o->models;
    cfg.pipeline.backend = o->backend;
    if (o->liveness >= 0)
        cfg.pipeline.liveness = o->liveness;
    cfg.db_path = o->db;
    cfg.key_file = o->key_file;
    cfg.default_country_code = o->country;
    cfg.threshold = o->threshold;
    char err[512] = "";
    fpay_status st = fpay_service_open(&cfg, svc, err, sizeof err);
    if (st != FPAY_OK)
        return fpay_cli_die(EXIT_ERROR, "%s (%s)%s", err[0] ? err : "cannot open the service",
                            fpay_status_str(st), fpay_cli_next_step(st, err));
    return 0;
}

static int read_image(const char *path, void **data, size_t *size)
{
    /* A FIFO or a device is refused, not read: one without a writer would
     * hang the command for ever. */
    FILE *f;
    int oe = fpay_open_regular(path, &f);
    if (oe)
        return fpay_cli_die(EXIT_ERROR, "%s: %s", path,
                            oe < 0 ? "not a regular file" : strerror(oe));
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = malloc(cap);
    while (buf) {
        if (n == cap) {
            if (cap >= MAX_IMAGE_FILE) {
                free(buf);
                fclose(f);
                return fpay_cli_die(EXIT_ERROR, "%s: larger than %u MiB", path, MAX_IMAGE_FILE >> 20);
            }
            unsigned char *g = realloc(buf, cap * 2);
            if (!g) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = g;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf)
        return fpay_cli_die(EXIT_ERROR, "%s: out of memory", path);
    if (bad) {
        free(buf);
        return fpay_cli_die(EXIT_ERROR, "%s: read error", path);
    }
    *data = buf;
    *size = n;
    return 0;
}

static void fill_request(const sopts *o, fpay_request *req)
{
    memset(req, 0, sizeof *req);
    req->terminal_id = o->terminal;
    req->id_kind = o->id ? FPAY_ID_CN_RESIDENT : FPAY_ID_PHONE;
    req->account = o->id ? o->id : o->phone;
}

/* The first line: the decision of a verify, or whether an enrollment
 * enrolled the face (ENROLLED, or NOT ENROLLED with the reason: an
 * enrollment is not a payment and says so). */
static void print_decision(const fpay_service_result *r, int enroll)
{
    if (enroll && r->decision == FPAY_APPROVE)
        printf("ENROLLED: %s\n", r->message);
    else if (enroll)
        printf("NOT ENROLLED %s: %s\n", fpay_reason_name(r->reason), r->message);
    else
        printf("%s %s: %s\n", fpay_decision_name(r->decision), fpay_reason_name(r->reason),
               r->message);
}

static int exit_of(const fpay_service_result *r)
{
    if (r->decision == FPAY_APPROVE)
        return 0;
    return r->reason == FPAY_REASON_INTERNAL_ERROR ? EXIT_ERROR : EXIT_DECLINE;
}

static void print_times(const fpay_stage_times *t)
{
    printf("latency ms: decode %.1f  detect %.1f  select %.2f  quality %.2f  align %.1f  "
           "liveness %.1f  embed %.1f  match %.2f  total %.1f\n",
           t->decode, t->detect, t->select, t->quality, t->align, t->liveness, t->embed,
           t->match, t->total);
}

static int cmd_enroll_or_verify(int verify, int argc, char **argv)
{
    const char *cmd = verify ? "verify" : "enroll";
    sopts o;
    int rc = parse(cmd, argc, argv, &o, 1, 1, verify ? 1 : MAX_CAPTURES);
    if (rc >= 0)
        return rc;
    fpay_capture_source caps[MAX_CAPTURES];
    void *bufs[MAX_CAPTURES] = {0};
    memset(caps, 0, sizeof caps);
    fpay_service *svc = NULL;
    for (int i = 0; i < o.nargs && rc < 0; i++) {
        size_t size = 0;
        if (read_image(o.args[i], &bufs[i], &size))
            rc = EXIT_ERROR;
        caps[i].data = bufs[i];
        caps[i].size = size;
    }
    if (rc < 0 && open_service(&o, &svc))
        rc = EXIT_ERROR;
    if (rc < 0) {
        fpay_request req;
        fill_request(&o, &req);
        fpay_service_result r;
        if (verify)
            fpay_service_verify(svc, &req, &caps[0], &r);
        else
            fpay_service_enroll(svc, &req, caps, o.nargs, &r);
        print_decision(&r, !verify);
        print_times(&r.times);
        if (r.score > -2.0f)
            printf("operator: score %.4f threshold %.4f (FMR %.2g) account %s\n", (double)r.score,
                   (double)r.threshold, r.fmr, r.account_hash_prefix);
        else
            printf("operator: not compared; threshold %.4f (FMR %.2g) account %s%s\n",
                   (double)r.threshold, r.fmr,
                   r.account_hash_prefix[0] ? r.account_hash_prefix : "-",
                   verify ? "" : "");
        if (r.operator_reason != r.reason)
            printf("operator: reason %s (a terminal is told %s)\n",
                   fpay_reason_name(r.operator_reason), fpay_reason_name(r.reason));
        if (!verify && r.decision == FPAY_APPROVE)
            printf("captures used: %d\n", r.captures_used);
        rc = exit_of(&r);
    }
    for (int i = 0; i < MAX_CAPTURES; i++)
        free(bufs[i]);
    fpay_service_close(svc);
    return rc;
}

static int cmd_account(int del, int argc, char **argv)
{
    const char *cmd = del ? "delete" : "unlock";
    sopts o;
    int rc = parse(cmd, argc, argv, &o, 1, 0, 0);
    if (rc >= 0)
        return rc;
    fpay_service *svc = NULL;
    if (open_service(&o, &svc))
        return EXIT_ERROR;
    fpay_request req;
    fill_request(&o, &req);
    fpay_service_result r;
    if (del)
        fpay_service_delete(svc, &req, &r);
    else
        fpay_service_unlock(svc, &req, &r);
    print_decision(&r, 0);
    fpay_service_close(svc);
    return exit_of(&r);
}

static int cmd_keygen(int argc, char **argv)
{
    sopts o;
    int rc = parse("keygen", argc, argv, &o, 0, 1, 1);
    if (rc >= 0)
        return rc;
    char err[512];
    fpay_status st = fpay_keygen(o.args[0], err, sizeof err);
    if (st != FPAY_OK)
        return fpay_cli_die(EXIT_ERROR, "%s", err);
    printf("wrote a new master key to %s (mode 0600); keep a copy offline\n", o.args[0]);
    return 0;
}

/* calibrate's progress on stderr: on a terminal one line rewritten about
 * once a second; elsewhere (a log) a line per 5% of the images, so at
 * most 20 lines. */
typedef struct cal_progress {
    int tty;
    int last_step;
    struct timespec last;
} cal_progress;

static void cal_progress_cb(void *ctx, int done, int total)
{
    cal_progress *p = ctx;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (p->tty) {
        double dt = (double)(now.tv_sec - p->last.tv_sec) +
                    (double)(now.tv_nsec - p->last.tv_nsec) / 1e9;
        if (dt < 1.0 && done < total)
            return;
        p->last = now;
        fprintf(stderr, "\rcalibrate: %d / %d images embedded%s", done, total,
                done == total ? "\n" : "");
    } else {
        int step = total > 0 ? (int)(20LL * done / total) : 20;
        if (step == p->last_step)
            return;
        p->last_step = step;
        fprintf(stderr, "calibrate: %d / %d images embedded\n", done, total);
    }
    fflush(stderr);
}

static int cmd_calibrate(int argc, char **argv)
{
    sopts o;
    int rc = parse("calibrate", argc, argv, &o, 0, 0, 0);
    if (rc >= 0)
        return rc;
    fpay_service *svc = NULL;
    if (open_service(&o, &svc))
        return EXIT_ERROR;
    fpay_calibration c;
    char err[600] = "";
    cal_progress prog = {.tty = isatty(STDERR_FILENO), .last_step = 0};
    clock_gettime(CLOCK_MONOTONIC, &prog.last);
    fpay_status st = fpay_service_calibrate_progress(svc, o.threads, o.pairs, o.npairs, o.root,
                                                     o.fmr, cal_progress_cb, &prog, &c, err,
                                                     sizeof err);
    fpay_service_close(svc);
    if (st != FPAY_OK)
        return fpay_cli_die(EXIT_ERROR, "%s (%s)", err, fpay_status_str(st));
    printf("images:     %d listed, %d unusable (unreadable or no face), %d people\n", c.images,
           c.images_unusable, c.identities);
    printf("impostors:  %lld pairs (every pair of usable images of two people)\n",
           c.impostor_pairs);
    printf("genuines:   %ld pairs (the listed same-person pairs)\n", c.genuine_pairs);
    printf("            %lld pairs (every pair of usable images of the same person)\n",
           c.genuine_pairs_all);
    printf("threshold:  %.6f (smallest with impostor FMR <= %g)\n", (double)c.threshold,
           c.target_fmr);
    printf("FMR:        %.3g (%lld of %lld impostor pairs >= threshold)\n", c.fmr,
           c.impostor_accepts, c.impostor_pairs);
    printf("FNMR:       %.4f (%ld of %ld genuine pairs below)\n", c.fnmr, c.genuine_rejects,
           c.genuine_pairs);
    printf("            %.4f (%lld of %lld same-person pairs of the images below)\n", c.fnmr_all,
           c.genuine_rejects_all, c.genuine_pairs_all);
    printf("model:      MobileFaceNet sha256 %s\n", c.model_sha256);
    printf("stored in %s; used by every later run without --threshold\n", o.db);
    return 0;
}

static int cmd_audit(int argc, char **argv)
{
    sopts o;
    int rc = parse("audit", argc, argv, &o, 0, 1, 1);
    if (rc >= 0)
        return rc;
    if (strcmp(o.args[0], "verify"))
        return fpay_cli_die(EXIT_USAGE, "audit knows only 'verify', got '%s'", o.args[0]);
    fpay_service *svc = NULL;
    if (open_service(&o, &svc))
        return EXIT_ERROR;
    long n = 0, bad = 0;
    char err[512] = "";
    fpay_status st = fpay_service_audit_verify(svc, &n, &bad, err, sizeof err);
    fpay_service_close(svc);
    if (st == FPAY_OK) {
        printf("audit chain OK: %ld records\n", n);
        return 0;
    }
    if (bad > 0)
        return fpay_cli_die(EXIT_ERROR, "audit chain BROKEN at record %ld of %ld read", bad, n);
    return fpay_cli_die(EXIT_ERROR, "%s (%s)", err, fpay_status_str(st));
}

static int cmd_terminal(int argc, char **argv)
{
    sopts o;
    int rc = parse("terminal", argc, argv, &o, 0, 2, 2);
    if (rc >= 0)
        return rc;
    if (strcmp(o.args[0], "add"))
        return fpay_cli_die(EXIT_USAGE, "terminal knows only 'add ID', got '%s'", o.args[0]);
    fpay_service *svc = NULL;
    if (open_service(&o, &svc))
        return EXIT_ERROR;
    char key[64];
    fpay_status st = fpay_service_terminal_add(svc, o.args[1], key, sizeof key);
    fpay_service_close(svc);
    if (st == FPAY_INVALID_ARGUMENT)
        return fpay_cli_die(EXIT_USAGE, "terminal id: 1..63 characters of A-Z a-z 0-9 - _ . :");
    if (st != FPAY_OK)
        return fpay_cli_die(EXIT_ERROR, "terminal add: %s", fpay_status_str(st));
    printf("terminal %s key: %s\n", o.args[1], key);
    printf("(shown once; the database keeps only a keyed hash)\n");
    return 0;
}

static int cmd_rotate(int argc, char **argv)
{
    sopts o;
    int rc = parse("rotate-key", argc, argv, &o, 0, 1, 1);
    if (rc >= 0)
        return rc;
    fpay_service *svc = NULL;
    if (open_service(&o, &svc))
        return EXIT_ERROR;
    char err[512] = "";
    fpay_status st = fpay_service_rotate_key(svc, o.args[0], err, sizeof err);
    fpay_service_close(svc);
    if (st != FPAY_OK)
        return fpay_cli_die(EXIT_ERROR, "%s (%s)", err, fpay_status_str(st));
    printf("rotated: every template is now sealed under %s; use it from now on\n"
           "terminal keys revoked: run facepay terminal add ID for each terminal\n",
           o.args[0]);
    return 0;
}

int fpay_cmd_service(const char *cmd, int argc, char **argv)
{
    if (!strcmp(cmd, "keygen"))
        return cmd_keygen(argc, argv);
    if (!strcmp(cmd, "enroll"))
        return cmd_enroll_or_verify(0, argc, argv);
    if (!strcmp(cmd, "verify"))
        return cmd_enroll_or_verify(1, argc, argv);
    if (!strcmp(cmd, "delete"))
        return cmd_account(1, argc, argv);
    if (!strcmp(cmd, "unlock"))
        return cmd_account(0, argc, argv);
    if (!strcmp(cmd, "calibrate"))
        return cmd_calibrate(argc, argv);
    if (!strcmp(cmd, "audit"))
        return cmd_audit(argc, argv);
    if (!strcmp(cmd, "terminal"))
        return cmd_terminal(argc, argv);
    if (!strcmp(cmd, "rotate-key"))
        return cmd_rotate(argc, argv);
    return fpay_cli_die(EXIT_USAGE, "unknown command '%s' (see facepay --help)", cmd);
}
