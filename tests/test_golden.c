/*
 * test_golden.c - every model against the oracle (tests/data/golden).
 *
 * Tolerances: the oracle accumulates in float64; a float32 engine lands
 * within `float32_path_max_abs_diff` of it (recorded per output in the case's
 * JSON, at most 1.6e-5 relative to max_abs). We allow max |err| <= 1e-4 x
 * max_abs: about 10x the float32 path's own distance from the oracle, so
 * summation order may differ but a wrong tap, pad or slope cannot hide. For
 * MobileFaceNet each embedding row must also have cosine >= 0.99999 with the
 * oracle: what matching faces depends on.
 *
 * The optimised graph must also equal the unoptimised one bit for bit: every
 * optimizer rewrite is exact on the reference kernels.
 */
#include "golden_case.h"
#include "test_util.h"

#include "facepay/facepay.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct run_result {
    int n_outputs;
    float *out[4];
    size_t count[4];
} run_result;

static void run_case(cJSON *j, unsigned flags, run_result *r)
{
    char err[256];
    fpay_model *m = fpay_golden_model(j, flags);
    fpay_model_stats stats = {.struct_size = sizeof stats};
    fpay_model_stats_get(m, &stats);
    cr_assert_str_eq(stats.sha256, cJSON_GetObjectItem(j, "model_sha256")->valuestring,
                     "model fingerprint differs from the oracle's");
    fpay_session_options o;
    fpay_session_options_init(&o);
    o.backend = "cpu";
    fpay_session *s = NULL;
    cr_assert_eq(fpay_session_create(m, &o, &s, err, sizeof err), FPAY_OK, "%s", err);

    fpay_golden_feed(s, j);
    cr_assert_eq(fpay_session_run(s), FPAY_OK, "%s", fpay_session_errmsg(s));
    r->n_outputs = fpay_session_output_count(s);
    cr_assert_leq(r->n_outputs, 4);
    for (int i = 0; i < r->n_outputs; i++) {
        const float *data;
        cr_assert_eq(fpay_session_output(s, i, &data, &r->count[i]), FPAY_OK);
        r->out[i] = malloc(r->count[i] * sizeof(float));
        memcpy(r->out[i], data, r->count[i] * sizeof(float));
    }
    fpay_session_free(s);
    fpay_model_free(m);
}

static void free_result(run_result *r)
{
    for (int i = 0; i < r->n_outputs; i++)
        free(r->out[i]);
}

static void check_case(const char *name, int embed_dim)
{
    cJSON *j = fpay_golden_load(name);
    run_result opt = {0}, raw = {0};
    run_case(j, FPAY_LOAD_DEFAULT, &opt);
    run_case(j, FPAY_LOAD_NO_OPTIMIZE, &raw);

    cJSON *outputs = cJSON_GetObjectItem(j, "outputs");
    cr_assert_eq(cJSON_GetArraySize(outputs), opt.n_outputs);
    int k = 0;
    for (cJSON *o = outputs->child; o; o = o->next, k++) {
        size_t count = 0;
        float *want = fpay_golden_expected(o, &count);
        cr_assert_eq(count, opt.count[k], "%s output %d: %zu values, oracle has %zu", name,
                     k, opt.count[k], count);
        double max_abs = cJSON_GetObjectItem(o, "max_abs")->valuedouble;
        double worst = 0;
        for (size_t i = 0; i < count; i++) {
            double e = fabs((double)opt.out[k][i] - want[i]);
            if (!(e <= worst)) /* also catches NaN */
                worst = isnan(e) ? INFINITY : e;
        }
        printf("golden %-20s output %d: max |err| %.3e (%.3e x max_abs %.4g)\n", name, k,
               worst, worst / max_abs, max_abs);
        cr_expect_leq(worst, 1e-4 * max_abs, "%s output %d: max |err| %g > 1e-4 x %g", name,
                      k, worst, max_abs);
        cr_expect_eq(memcmp(opt.out[k], raw.out[k], count * sizeof(float)), 0,
                     "%s output %d: optimised graph differs from the imported graph", name,
                     k);
        if (embed_dim > 0) {
            for (size_t row = 0; row < count / (size_t)embed_dim; row++) {
                double dot = 0, na = 0, nb = 0;
                for (int c = 0; c < embed_dim; c++) {
                    double a = opt.out[k][row * embed_dim + c], b = want[row * embed_dim + c];
                    dot += a * b;
                    na += a * a;
                    nb += b * b;
                }
                double cosine = dot / sqrt(na * nb);
                printf("golden %-20s row %zu: cosine %.9f\n", name, row, cosine);
                cr_expect_geq(cosine, 0.99999, "%s row %zu: cosine %.9f", name, row, cosine);
            }
        }
        free(want);
    }
    free_result(&opt);
    free_result(&raw);
    cJSON_Delete(j);
}

Test(golden, mfn_random) { check_case("mfn_random", 192); }
Test(golden, mfn_face_amy1) { check_case("mfn_face_amy1", 192); }
Test(golden, mfn_face_tomcruise) { check_case("mfn_face_tomcruise", 192); }
Test(golden, pnet_tomcruise_s0) { check_case("pnet_tomcruise_s0", 0); }
Test(golden, rnet_tomcruise) { check_case("rnet_tomcruise", 0); }
Test(golden, onet_tomcruise) { check_case("onet_tomcruise", 0); }
Test(golden, antispoof_obama, .timeout = 900) { check_case("antispoof_obama", 0); }
