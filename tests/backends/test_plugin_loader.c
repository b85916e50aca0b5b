/*
 * test_plugin_loader.c - run-time plugin loading against fixtures
 * (tests/backends/fixtures): ctest points FACEPAY_BACKEND_PATH at the folder
 * holding one good plugin and four broken ones. Each broken one must be
 * refused with its own reason, the good one registered with its path as the
 * origin, and sessions must work either way. Criterion runs every test in a
 * fresh process, so each sees its own first (and only) load.
 */
#include "test_util.h"

#include "facepay/backend.h"
#include "facepay/facepay.h"

#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *reason_for(const char *fixture)
{
    char file[128];
    snprintf(file, sizeof file, "/libfacepay-backend-fixture-%s.so", fixture);
    for (int i = 0; i < fpay_backend_rejected_count(); i++) {
        const char *path = NULL, *reason = NULL;
        cr_assert_eq(fpay_backend_rejected(i, &path, &reason), FPAY_OK);
        size_t n = strlen(path), m = strlen(file);
        if (n >= m && strcmp(path + n - m, file) == 0)
            return reason;
    }
    return NULL;
}

static void expect_reason(const char *fixture, const char *needle)
{
    const char *r = reason_for(fixture);
    cr_assert_not_null(r, "fixture-%s was not rejected", fixture);
    cr_expect(strstr(r, needle) != NULL, "fixture-%s: reason '%s' lacks '%s'", fixture, r,
              needle);
}

Test(plugin_loader, broken_plugins_are_rejected_with_their_reason)
{
    cr_assert_not_null(getenv("FACEPAY_BACKEND_PATH"), "ctest sets FACEPAY_BACKEND_PATH");
    expect_reason("abi", "ABI version 999");
    expect_reason("noentry", "no symbol 'fpay_backend_entry'");
    expect_reason("null", "fpay_backend_entry() returned NULL");
    expect_reason("probe", "probe failed: fixture probe says no");
    cr_expect_eq(fpay_backend_rejected_count(), 4);
    cr_expect_null(fpay_backend_find("fixture-abi"));
    cr_expect_null(fpay_backend_find("fixture-probe"));
    const char *p, *r;
    cr_expect_eq(fpay_backend_rejected(4, &p, &r), FPAY_NOT_FOUND);
    cr_expect_eq(fpay_backend_rejected(-1, &p, &r), FPAY_NOT_FOUND);
}

Test(plugin_loader, good_plugin_is_registered_and_auto_prefers_it)
{
    const fpay_backend_iface *ok = fpay_backend_find("fixture-ok");
    cr_assert_not_null(ok);
    cr_expect_str_eq(ok->version, "fixture-1");
    int n = fpay_backend_count();
    cr_assert_geq(n, 2);
    cr_expect_str_eq(fpay_backend_get(0)->name, "cpu");
    cr_expect_str_eq(fpay_backend_origin(0), "built-in");
    int idx = -1;
    for (int i = 0; i < n; i++)
        if (fpay_backend_get(i) == ok)
            idx = i;
    cr_assert_geq(idx, 0);
    cr_expect(strstr(fpay_backend_origin(idx), "libfacepay-backend-fixture-ok.so") != NULL,
              "%s", fpay_backend_origin(idx));
    cr_expect_null(fpay_backend_origin(n));

    /* "auto" prefers the last registered accelerator: the plugin. Its RESHAPE runs
     * on it, the rest falls back to the CPU, and the result is unchanged. */
    char err[256];
    fpay_model *m = NULL;
    cr_assert_eq(fpay_model_load_file(fpay_test_model_path("MobileFaceNet.tflite"), 0, &m,
                                      err, sizeof err), FPAY_OK, "%s", err);
    fpay_session *s = NULL, *c = NULL;
    fpay_session_options o;
    fpay_session_options_init(&o);
    cr_assert_eq(fpay_session_create(m, &o, &s, err, sizeof err), FPAY_OK, "%s", err);
    cr_expect_str_eq(fpay_session_backend(s), "fixture-ok");
    o.backend = "cpu";
    cr_assert_eq(fpay_session_create(m, &o, &c, err, sizeof err), FPAY_OK, "%s", err);
    fpay_tensor_info in;
    fpay_session_input_info(s, 0, &in);
    float *x = malloc(in.count * sizeof(float));
    fpay_test_rng rng;
    fpay_test_rng_seed(&rng, 11);
    for (size_t i = 0; i < in.count; i++)
        x[i] = fpay_test_rng_uniform(&rng, -1, 1);
    int on_plugin = 0;
    for (int i = 0; fpay_session_node_backend(s, i); i++)
        on_plugin += strcmp(fpay_session_node_backend(s, i), "fixture-ok") == 0;
    cr_expect_eq(on_plugin, 1, "the model's one RESHAPE runs on the plugin");
    fpay_session *both[2] = {s, c};
    const float *y[2];
    size_t cnt[2];
    for (int k = 0; k < 2; k++) {
        cr_assert_eq(fpay_session_set_input(both[k], 0, x, in.count), FPAY_OK);
        cr_assert_eq(fpay_session_run(both[k]), FPAY_OK, "%s", fpay_session_errmsg(both[k]));
        cr_assert_eq(fpay_session_output(both[k], 0, &y[k], &cnt[k]), FPAY_OK);
    }
    cr_assert_eq(cnt[0], cnt[1]);
    cr_expect_eq(memcmp(y[0], y[1], cnt[0] * sizeof(float)), 0);
    free(x);
    fpay_session_free(s);
    fpay_session_free(c);
    fpay_model_free(m);
}

Test(plugin_loader, disable_variable_skips_a_plugin)
{
    setenv("FACEPAY_DISABLE_FIXTURE_OK", "1", 1);
    cr_expect_null(fpay_backend_find("fixture-ok"));
    expect_reason("ok", "disabled by FACEPAY_DISABLE_FIXTURE_OK");
    cr_expect_eq(fpay_backend_rejected_count(), 5);
    cr_expect_eq(fpay_backend_count(), 1, "only the CPU backend is left");
}

Test(plugin_loader, application_backend_registers_after_plugins)
{
    /* fpay_backend_register loads plugins first, so a test double the
     * application registers comes last (it is no accelerator: "auto" skips it). */
    static const fpay_backend_iface *ok;
    ok = fpay_backend_find("fixture-ok");
    cr_assert_not_null(ok);
    fpay_backend_iface dbl = *ok;
    dbl.name = "app-double";
    static fpay_backend_iface keep;
    keep = dbl;
    char err[128];
    cr_assert_eq(fpay_backend_register(&keep, err, sizeof err), FPAY_OK, "%s", err);
    int n = fpay_backend_count();
    cr_expect_str_eq(fpay_backend_get(n - 1)->name, "app-double");
    cr_expect_str_eq(fpay_backend_origin(n - 1), "registered by the application");
    cr_expect_eq(fpay_backend_register(&keep, err, sizeof err), FPAY_INVALID_ARGUMENT);
}
