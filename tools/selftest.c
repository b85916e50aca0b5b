/*
 * selftest.c - `facepay selftest`: every registered backend against the
 * reference kernels on the bundled models, one PASS/FAIL line each, for an
 * operator who installed a build on a new machine (other CPU, other GPU
 * driver) and wants to know before taking payments that it computes what
 * the tests promised.
 *
 * Per model: one fixed pseudo-random input in [-1, 1] (the same on every
 * run), the reference is the CPU backend with FACEPAY_ISA=ref (plain C
 * kernels, themselves checked against the oracle by the test suite), then
 * each backend runs the same input: the CPU backend with the kernels this
 * machine selects, and every plugin. Pass: max |y - ref| <= 1e-4 x max |ref|
 * on every output (the bound of tests/test_golden.c: blocked, reordered
 * and FMA sums over a whole network stay two orders below it, a wrong tap
 * or slope is far above it), and for MobileFaceNet each embedding row's
 * cosine >= 0.99999 (what the match threshold was calibrated with).
 */
#define _POSIX_C_SOURCE 200809L
#include "cli_util.h"
#include "selftest.h"

#include "facepay/backend.h"
#include "facepay/facepay.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef FACEPAY_DEFAULT_MODELS_DIR
#define FACEPAY_DEFAULT_MODELS_DIR "models"
#endif

#define EXIT_USAGE 2
#define TOL_REL 1e-4
#define COS_MIN 0.99999

static const char *const k_models[] = {"MobileFaceNet", "pnet", "rnet", "onet",
                                       "FaceAntiSpoofing"};

const char *const fpay_selftest_help =
    "usage: facepay selftest [--models DIR] [MODEL...]\n"
    "\n"
    "Runs every registered backend (the CPU backend with the kernels this\n"
    "machine selects, and each plugin: see facepay backends) on the bundled\n"
    "models with a fixed input, against the reference kernels (the CPU\n"
    "backend with FACEPAY_ISA=ref), and prints one line per backend and\n"
    "model: PASS when every output is within 1e-4 x its largest value (and\n"
    "MobileFaceNet's embeddings within cosine 0.99999), else FAIL.\n"
    "Exit 0 when every line passed, 1 otherwise.\n"
    "\n"
    "  --models DIR   folder of the five .tflite models (default:\n"
    "                 $FACEPAY_MODELS_DIR, else the build's models/)\n"
    "  MODEL...       only these (MobileFaceNet, pnet, rnet, onet,\n"
    "                 FaceAntiSpoofing)\n"
    "  -h, --help     this text\n";

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* The outputs of one run, copied out of the session. */
typedef struct run_out {
    int n;
    float *data[8];
    size_t count[8];
    double ms;
    int on_backend, nodes; /* nodes the backend ran itself, of all */
} run_out;

static void run_out_free(run_out *r)
{
    for (int i = 0; i < r->n; i++)
        free(r->data[i]);
    memset(r, 0, sizeof *r);
}

/* Deterministic input in [-1, 1]: a 32-bit LCG, the same on every run. */
static void fill_input(float *x, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = (float)((double)(seed >> 8) / (double)(1u << 24) * 2.0 - 1.0);
    }
}

/* Runs model on backend at batch 1 with the fixed input. isa: value for
 * FACEPAY_ISA during session creation (NULL: leave as it is). */
static fpay_status run_model(const fpay_model *m, const char *backend, const char *isa,
                             run_out *r, char *err, size_t err_len)
{
    memset(r, 0, sizeof *r);
    char *saved = NULL;
    const char *old = getenv("FACEPAY_ISA");
    if (isa) {
        if (old && !(saved = strdup(old)))
            return FPAY_OUT_OF_MEMORY;
        setenv("FACEPAY_ISA", isa, 1);
    }
    fpay_session_options o;
    fpay_session_options_init(&o);
    o.backend = backend;
    fpay_session *s = NULL;
    fpay_status st = fpay_session_create(m, &o, &s, err, err_len);
    if (st == FPAY_OK && (st = fpay_session_set_batch(s, 1)) != FPAY_OK)
        snprintf(err, err_len, "%s", fpay_session_errmsg(s));
    if (isa) {
        if (saved)
            setenv("FACEPAY_ISA", saved, 1);
        else
            unsetenv("FACEPAY_ISA");
        free(saved);
    }
    for (int i = 0; st == FPAY_OK && i < fpay_session_input_count(s); i++) {
        fpay_tensor_info info;
        if ((st = fpay_session_input_info(s, i, &info)) != FPAY_OK)
            break;
        float *x = malloc(info.count * sizeof *x);
        if (!x) {
            st = FPAY_OUT_OF_MEMORY;
            break;
        }
        fill_input(x, info.count, 12345u + (uint32_t)i);
        st = fpay_session_set_input(s, i, x, info.count);
        free(x);
        if (st)
            snprintf(err, err_len, "%s", fpay_session_errmsg(s));
    }
    double t0 = now_ms();
    if (st == FPAY_OK && (st = fpay_session_run(s)) != FPAY_OK)
        snprintf(err, err_len, "%s", fpay_session_errmsg(s));
    r->ms = now_ms() - t0;
    for (int i = 0; st == FPAY_OK && i < fpay_session_output_count(s) && i < 8; i++) {
        const float *y;
        size_t n;
        if ((st = fpay_session_output(s, i, &y, &n)) != FPAY_OK)
            break;
        if (!(r->data[i] = malloc(n * sizeof(float)))) {
            st = FPAY_OUT_OF_MEMORY;
            break;
        }
        memcpy(r->data[i], y, n * sizeof(float));
        r->count[i] = n;
        r->n = i + 1;
    }
    for (int k = 0; st == FPAY_OK && k < fpay_model_node_count(m); k++) {
        const char *b = fpay_session_node_backend(s, k);
        r->nodes++;
        r->on_backend += b && !strcmp(b, backend);
    }
    fpay_session_free(s);
    if (st)
        run_out_free(r);
    return st;
}

/* Worst output's max |y - ref| / max |ref|, and the smallest cosine over
 * rows of `row` values (row 0: none). NaN anywhere gives an infinite error. */
static void compare(const run_out *y, const run_out *ref, int row, double *err, double *min_cos)
{
    *err = 0;
    *min_cos = 1;
    for (int i = 0; i < ref->n; i++) {
        double max_ref = 0, max_diff = 0;
        /* Plain compares, not fmax: aarch64 gcc 12 crashes vectorising an
         * fmax reduction here (internal compiler error at -O3). */
        for (size_t k = 0; k < ref->count[i]; k++) {
            double d = fabs((double)y->data[i][k] - ref->data[i][k]);
            if (d != d)
                d = INFINITY;
            if (d > max_diff)
                max_diff = d;
            double a = fabs((double)ref->data[i][k]);
            if (a > max_ref)
                max_ref = a;
        }
        double e = max_diff / (max_ref > 0 ? max_ref : 1);
        if (e > *err)
            *err = e;
        for (size_t r0 = 0; row > 0 && r0 + (size_t)row <= ref->count[i]; r0 += (size_t)row) {
            double dot = 0, na = 0, nb = 0;
            for (int k = 0; k < row; k++) {
                dot += (double)y->data[i][r0 + k] * ref->data[i][r0 + k];
                na += (double)y->data[i][r0 + k] * y->data[i][r0 + k];
                nb += (double)ref->data[i][r0 + k] * ref->data[i][r0 + k];
            }
            double c = na > 0 && nb > 0 ? dot / sqrt(na * nb) : 0;
            if (!(c >= *min_cos))
                *min_cos = c == c ? c : -1;
        }
    }
}

int fpay_cmd_selftest(int argc, char **argv)
{
    char dir[4096];
    const char *env = getenv("FACEPAY_MODELS_DIR");
    snprintf(dir, sizeof dir, "%s", env && *env ? env : FACEPAY_DEFAULT_MODELS_DIR);
    const char *only[8];
    int n_only = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(fpay_selftest_help, stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--models") && i + 1 < argc) {
            snprintf(dir, sizeof dir, "%s", argv[++i]);
            continue;
        }
        if (argv[i][0] == '-')
            return fpay_cli_die(EXIT_USAGE, "selftest: unknown or incomplete option '%s'",
                                argv[i]);
        int known = 0;
        for (size_t k = 0; k < sizeof k_models / sizeof k_models[0]; k++)
            known |= !strcmp(argv[i], k_models[k]);
        if (!known)
            return fpay_cli_die(EXIT_USAGE,
                                "selftest: no bundled model '%s' (MobileFaceNet, pnet, rnet, "
                                "onet, FaceAntiSpoofing)", argv[i]);
        if (n_only == 8)
            return fpay_cli_die(EXIT_USAGE, "selftest: too many models");
        only[n_only++] = argv[i];
    }
    printf("selftest: %s, %d backend(s), reference: cpu with FACEPAY_ISA=ref\n",
           fpay_build_id(), fpay_backend_count());
    int fails = 0, lines = 0;
    for (size_t k = 0; k < sizeof k_models / sizeof k_models[0]; k++) {
        const char *name = k_models[k];
        int wanted = n_only == 0;
        for (int j = 0; j < n_only; j++)
            wanted |= !strcmp(only[j], name);
        if (!wanted)
            continue;
        char path[4200], err[512] = "";
        snprintf(path, sizeof path, "%s/%s.tflite", dir, name);
        fpay_model *m = NULL;
        fpay_status st = fpay_model_load_file(path, 0, &m, err, sizeof err);
        if (st != FPAY_OK) {
            printf("FAIL  %-16s %-8s cannot load: %s (run tools/fetch_models.sh?)\n", name, "-",
                   err);
            fails++;
            lines++;
            continue;
        }
        run_out ref;
        if ((st = run_model(m, "cpu", "ref", &ref, err, sizeof err)) != FPAY_OK) {
            printf("FAIL  %-16s %-8s reference run: %s (%s)\n", name, "ref", err,
                   fpay_status_str(st));
            fails++;
            lines++;
            fpay_model_free(m);
            continue;
        }
        const int row = !strcmp(name, "MobileFaceNet") ? 192 : 0;
        for (int b = 0; b < fpay_backend_count(); b++) {
            const char *backend = fpay_backend_get(b)->name;
            run_out y;
            lines++;
            if ((st = run_model(m, backend, NULL, &y, err, sizeof err)) != FPAY_OK) {
                printf("FAIL  %-16s %-8s run: %s (%s)\n", name, backend, err,
                       fpay_status_str(st));
                fails++;
                continue;
            }
            double e, c;
            compare(&y, &ref, row, &e, &c);
            int ok = e <= TOL_REL && (!row || c >= COS_MIN);
            fails += !ok;
            printf("%s  %-16s %-8s max err %.2e x max|ref| (bound %.0e)", ok ? "PASS" : "FAIL",
                   name, backend, e, TOL_REL);
            if (row)
                printf(", min cosine %.7f (bound %.5f)", c, COS_MIN);
            printf(", %d/%d nodes on it, first run %.1f ms\n", y.on_backend, y.nodes, y.ms);
            run_out_free(&y);
        }
        run_out_free(&ref);
        fpay_model_free(m);
    }
    printf("selftest: %d passed, %d failed\n", lines - fails, fails);
    return fails ? 1 : 0;
}
