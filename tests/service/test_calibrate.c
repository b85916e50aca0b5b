/*
 * test_calibrate.c - the verification threshold from labelled photos
 * (core/src/service/calibrate.c, fpay_service_calibrate): the counting rule
 * (every cross-identity pair is an impostor pair, the threshold admits at
 * most FMR x impostors), the refusal of an FMR the data cannot measure, the
 * stored result read back on the next open and ignored for another model,
 * and hostile pairs files.
 */
#include <criterion/criterion.h>

#include "test_service_util.h"
#include "test_util.h"

#include <stdio.h>
#include <string.h>

static svc_env env;

static void setup(void) { svc_env_init(&env); }
static void teardown(void) { svc_env_fini(&env); }

TestSuite(calibrate, .init = setup, .fini = teardown);

/* Calibration on the small LFW layout of tests/data: 2 people, 2 photos
 * each, so 4 impostor pairs and 2 genuine pairs. The counting rule is
 * checked exactly, and the stored result is what the next open uses. */
Test(calibrate, counts_pairs_and_stores_the_threshold)
{
    char pairs[400];
    snprintf(pairs, sizeof pairs, "%s/pairs.txt", env.dir);
    FILE *f = fopen(pairs, "w");
    cr_assert_not_null(f);
    fputs("2\nAl_Pacino\t1\t2\nAlan_Greenspan\t1\t5\n"
          "Al_Pacino\t1\tAlan_Greenspan\t1\nAl_Pacino\t2\tAlan_Greenspan\t5\n", f);
    fclose(f);
    char root[4096];
    snprintf(root, sizeof root, "%s", fpay_test_data_path("faces/lfw_layout"));
    fpay_service *svc = svc_open(&env, env.key, 0, 1, 0);
    const char *files[1] = {pairs};
    fpay_calibration c;
    char err[512] = "";
    /* 4 impostor pairs cannot measure an FMR of 1e-4. */
    cr_assert_eq(fpay_service_calibrate(svc, 1, files, 1, root, 1e-4, &c, err, sizeof err),
                 FPAY_INVALID_ARGUMENT);
    cr_assert_neq(err[0], 0);
    /* 0.25 of 4 impostors: at most 1 may score >= t. */
    cr_assert_eq(fpay_service_calibrate(svc, 1, files, 1, root, 0.25, &c, err, sizeof err),
                 FPAY_OK, "%s", err);
    cr_assert_eq(c.images, 4);
    cr_assert_eq(c.images_unusable, 0);
    cr_assert_eq(c.identities, 2);
    cr_assert_eq(c.impostor_pairs, 4);
    cr_assert_eq(c.genuine_pairs, 2);
    cr_assert_leq(c.impostor_accepts, 1);
    cr_assert_float_eq(c.fmr, (double)c.impostor_accepts / 4.0, 1e-12);
    cr_assert_eq(strlen(c.model_sha256), 64);
    float t;
    double fmr;
    fpay_service_threshold(svc, &t, &fmr);
    cr_assert_eq(t, c.threshold);
    fpay_service_close(svc);
    /* A reopen with threshold 0 reads it back. */
    svc = svc_open(&env, env.key, 0, 1, 0);
    fpay_service_threshold(svc, &t, &fmr);
    cr_assert_eq(t, c.threshold);
    cr_assert_float_eq(fmr, c.fmr, 1e-9);
    fpay_service_close(svc);
    /* A calibration of another model is ignored. */
    svc_sql(&env, "UPDATE settings SET value = 'ab' WHERE name = 'threshold_model_sha256';");
    svc = svc_open(&env, env.key, 0, 1, 0);
    fpay_service_threshold(svc, &t, &fmr);
    cr_assert_float_eq(t, FPAY_DEFAULT_THRESHOLD, 1e-6);
    fpay_service_close(svc);

    /* Hostile pairs files: a name that leaves root, a short file. */
    f = fopen(pairs, "w");
    fputs("1\n../etc\t1\t2\nA\t1\tB\t1\n", f);
    fclose(f);
    svc = svc_open(&env, env.key, 0, 1, 0);
    cr_assert_eq(fpay_service_calibrate(svc, 1, files, 1, root, 0.25, &c, err, sizeof err),
                 FPAY_INVALID_ARGUMENT);
    f = fopen(pairs, "w");
    fputs("3\nAl_Pacino\t1\t2\n", f);
    fclose(f);
    cr_assert_eq(fpay_service_calibrate(svc, 1, files, 1, root, 0.25, &c, err, sizeof err),
                 FPAY_INVALID_ARGUMENT);
    fpay_service_close(svc);
}

typedef struct progress_log {
    int calls, last_done, last_total, backwards;
} progress_log;

static void log_progress(void *ctx, int done, int total)
{
    progress_log *l = ctx;
    l->backwards += done <= l->last_done;
    l->calls++;
    l->last_done = done;
    l->last_total = total;
}

/* Two pairs files over 7 images of 4 people (tests/data/faces/lfw_layout:
 * Al_Pacino, Alan_Greenspan, Albert_Costa with 2 photos, Tom_Cruise with
 * 1). They list 2 same-person pairs; the images hold 3 (Alan_Greenspan's
 * pair is listed only as two "different" lines). Impostors: C(7,2) - 3 =
 * 18. Progress is reported once per image, counting up to 7. */
Test(calibrate, every_same_person_pair_and_progress)
{
    char p1[400], p2[400];
    snprintf(p1, sizeof p1, "%s/p1.txt", env.dir);
    snprintf(p2, sizeof p2, "%s/p2.txt", env.dir);
    FILE *f = fopen(p1, "w");
    cr_assert_not_null(f);
    fputs("1\nAl_Pacino\t1\t2\nAlan_Greenspan\t1\tAlbert_Costa\t2\n", f);
    fclose(f);
    f = fopen(p2, "w");
    cr_assert_not_null(f);
    fputs("1\nAlbert_Costa\t2\t6\nAlan_Greenspan\t5\tTom_Cruise\t1\n", f);
    fclose(f);
    char root[4096];
    snprintf(root, sizeof root, "%s", fpay_test_data_path("faces/lfw_layout"));
    fpay_service *svc = svc_open(&env, env.key, 0, 1, 0);
    const char *files[2] = {p1, p2};
    fpay_calibration c;
    char err[512] = "";
    progress_log log = {0, 0, 0, 0};
    cr_assert_eq(fpay_service_calibrate_progress(svc, 2, files, 2, root, 0.25, log_progress,
                                                 &log, &c, err, sizeof err),
                 FPAY_OK, "%s", err);
    cr_assert_eq(c.images, 7);
    cr_assert_eq(c.images_unusable, 0);
    cr_assert_eq(c.identities, 4);
    cr_assert_eq(c.impostor_pairs, 18);
    cr_assert_leq(c.impostor_accepts, 4); /* floor(0.25 * 18) */
    cr_assert_eq(c.genuine_pairs, 2);
    cr_assert_eq(c.genuine_pairs_all, 3);
    cr_assert_leq(c.genuine_rejects_all, 3);
    cr_assert_float_eq(c.fnmr_all, (double)c.genuine_rejects_all / 3.0, 1e-12);
    cr_assert_eq(log.calls, 7);
    cr_assert_eq(log.last_done, 7);
    cr_assert_eq(log.last_total, 7);
    cr_assert_eq(log.backwards, 0);
    fpay_service_close(svc);
}
