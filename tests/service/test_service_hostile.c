/*
 * test_service_hostile.c - the service under attack and misuse: every bad
 * input declines with the right reason and never crashes; tampered,
 * swapped or foreign stored rows never approve; a wrong master key never
 * approves; many threads at once keep exact counts and an intact store.
 *
 * Raw SQL on the database stands for an attacker with write access to the
 * file but not the master key.
 */
#include <criterion/criterion.h>

#include "test_service_util.h"
#include "test_util.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PACINO_A "faces/Al_Pacino_0001.jpg"
#define PACINO_B "faces/Al_Pacino_0002.jpg"
#define GREENSPAN_A "faces/Alan_Greenspan_0001.jpg"
#define GREENSPAN_B "faces/Alan_Greenspan_0005.jpg"

static svc_env env;

static void setup(void) { svc_env_init(&env); }
static void teardown(void) { svc_env_fini(&env); }

TestSuite(hostile, .init = setup, .fini = teardown);

static void assert_decline(const fpay_service_result *r, fpay_reason why)
{
    cr_assert_eq(r->decision, FPAY_DECLINE, "approved (reason %s)", fpay_reason_name(r->reason));
    cr_assert_eq(r->reason, why, "reason %s, want %s (%s)", fpay_reason_name(r->reason),
                 fpay_reason_name(why), r->message);
}

static fpay_service_result verify_bytes(fpay_service *svc, const char *acct, const void *data,
                                        size_t size, fpay_status *st)
{
    fpay_capture_source s = {.data = data, .size = size};
    fpay_request req = {.id_kind = FPAY_ID_PHONE, .account = acct};
    fpay_service_result r;
    fpay_status x = fpay_service_verify(svc, &req, &s, &r);
    if (st)
        *st = x;
    return r;
}

Test(hostile, null_and_invalid_calls)
{
    fpay_service *svc = svc_open(&env, env.key, 0, 1, 0);
    fpay_capture_source s = svc_src(PACINO_B);
    fpay_request req = {.id_kind = FPAY_ID_PHONE, .account = "+8613800000001"};
    fpay_service_result r;
    cr_assert_eq(fpay_service_verify(NULL, &req, &s, &r), FPAY_INVALID_ARGUMENT);
    cr_assert_eq(r.decision, FPAY_DECLINE);
    cr_assert_eq(fpay_service_verify(svc, NULL, &s, &r), FPAY_INVALID_ARGUMENT);
    cr_assert_eq(r.decision, FPAY_DECLINE);
    cr_assert_eq(fpay_service_verify(svc, &req, NULL, &r), FPAY_INVALID_ARGUMENT);
    cr_assert_eq(r.decision, FPAY_DECLINE);
    cr_assert_eq(fpay_service_verify(svc, &req, &s, NULL), FPAY_INVALID_ARGUMENT);
    cr_assert_eq(fpay_service_enroll(NULL, &req, &s, 1, &r), FPAY_INVALID_ARGUMENT);
    cr_assert_eq(r.decision, FPAY_DECLINE);
    cr_assert_eq(fpay_service_enroll(svc, &req, NULL, 1, &r), FPAY_INVALID_ARGUMENT);
    cr_assert_eq(r.decision, FPAY_DECLINE);
    cr_assert_eq(fpay_service_delete(svc, NULL, &r), FPAY_INVALID_ARGUMENT);
    cr_assert_eq(r.decision, FPAY_DECLINE);
    cr_assert_eq(fpay_service_unlock(NULL, &req, &r), FPAY_INVALID_ARGUMENT);
    cr_assert_eq(fpay_service_verify_batch(svc, -1, &req, &s, &r), FPAY_INVALID_ARGUMENT);
    cr_assert_eq(fpay_service_verify_batch(svc, 1, NULL, &s, &r), FPAY_INVALID_ARGUMENT);
    cr_assert_eq(r.decision, FPAY_DECLINE);
    fpay_service_close(NULL);

    /* Account numbers: garbage, empty, too long, bad ID check digit. */
    const char *bad[] = {"", "abc", "+", "+86 138 0013 8000 0000 0000", "1; DROP TABLE accounts",
                         "+86\n13800138000"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        req.account = bad[i];
        cr_assert_eq(fpay_service_verify(svc, &req, &s, &r), FPAY_INVALID_ARGUMENT, "'%s'",
                     bad[i]);
        assert_decline(&r, FPAY_REASON_INVALID_ACCOUNT);
        cr_assert_eq(fpay_service_enroll(svc, &req, &s, 1, &r), FPAY_INVALID_ARGUMENT);
        assert_decline(&r, FPAY_REASON_INVALID_ACCOUNT);
    }
    req.account = NULL;
    cr_assert_eq(fpay_service_verify(svc, &req, &s, &r), FPAY_INVALID_ARGUMENT);
    assert_decline(&r, FPAY_REASON_INVALID_ACCOUNT);
    fpay_request id = {.id_kind = FPAY_ID_CN_RESIDENT, .account = "11010519491231002Y"};
    cr_assert_eq(fpay_service_verify(svc, &id, &s, &r), FPAY_INVALID_ARGUMENT);
    assert_decline(&r, FPAY_REASON_INVALID_ACCOUNT);
    fpay_request kind = {.id_kind = (fpay_id_kind)7, .account = "+8613800138000"};
    cr_assert_eq(fpay_service_verify(svc, &kind, &s, &r), FPAY_INVALID_ARGUMENT);
    assert_decline(&r, FPAY_REASON_INVALID_ACCOUNT);
    /* Terminal ids are checked too. */
    fpay_request term = {.terminal_id = "a b\n", .id_kind = FPAY_ID_PHONE,
                         .account = "+8613800138000"};
    cr_assert_eq(fpay_service_verify(svc, &term, &s, &r), FPAY_INVALID_ARGUMENT);
    cr_assert_eq(r.decision, FPAY_DECLINE);
    svc_src_free(&s);
    fpay_service_close(svc);
}

Test(hostile, bad_images)
{
    fpay_service *svc = svc_open(&env, env.key, 0, 1, 0);
    const char *acct = "+8613800000002";
    fpay_status st;
    fpay_service_result r;
    /* Enrolled, so a wrong reason cannot hide behind "unknown". */
    r = svc_enroll(svc, acct, PACINO_A);
    cr_assert_eq(r.decision, FPAY_APPROVE);

    r = verify_bytes(svc, acct, NULL, 0, &st);
    assert_decline(&r, FPAY_REASON_BAD_IMAGE);
    r = verify_bytes(svc, acct, "", 0, &st);
    assert_decline(&r, FPAY_REASON_BAD_IMAGE);
    r = verify_bytes(svc, acct, "not an image at all", 19, &st);
    assert_decline(&r, FPAY_REASON_BAD_IMAGE);
    cr_assert_eq(st, FPAY_OK, "a bad image is a decision");

    size_t size = 0;
    uint8_t *jpg = fpay_test_read_file(fpay_test_data_path(PACINO_B), &size);
    cr_assert_not_null(jpg);
    /* Truncated after the headers, and cut to a few bytes. */
    r = verify_bytes(svc, acct, jpg, 300, &st);
    assert_decline(&r, FPAY_REASON_BAD_IMAGE);
    r = verify_bytes(svc, acct, jpg, 4, &st);
    assert_decline(&r, FPAY_REASON_BAD_IMAGE);
    /* Every prefix length that ends inside the scan never approves. */
    for (size_t cut = 400; cut < size; cut += size / 7) {
        r = verify_bytes(svc, acct, jpg, cut, &st);
        cr_assert_eq(r.decision, FPAY_DECLINE, "cut at %zu approved", cut);
    }
    /* Corrupt header: the SOF marker's bytes overwritten. */
    uint8_t *bad = malloc(size);
    memcpy(bad, jpg, size);
    for (size_t i = 2; i + 1 < size; i++)
        if (bad[i] == 0xFF && (bad[i + 1] == 0xC0 || bad[i + 1] == 0xC2)) {
            memset(bad + i + 2, 0xEE, 8);
            break;
        }
    r = verify_bytes(svc, acct, bad, size, &st);
    assert_decline(&r, FPAY_REASON_BAD_IMAGE);
    free(bad);
    free(jpg);

    /* Decompression bombs: headers declaring 4000x4000 and 5000x10. */
    const char *bombs[] = {"images/huge_4000x4000.png", "images/huge_5000x10.png"};
    for (int i = 0; i < 2; i++) {
        fpay_capture_source s = svc_src(bombs[i]);
        r = verify_bytes(svc, acct, s.data, s.size, &st);
        assert_decline(&r, FPAY_REASON_BAD_IMAGE);
        svc_src_free(&s);
    }
    /* No face, two faces. */
    r = svc_verify(svc, acct, "images/quad.png");
    assert_decline(&r, FPAY_REASON_NO_FACE);
    r = svc_verify(svc, acct, "faces/bbt3.jpg");
    assert_decline(&r, FPAY_REASON_AMBIGUOUS_MULTIPLE_FACES);
    /* A face cut by the frame's edge: quality, with its reason bit. */
    r = svc_verify(svc, acct, "faces/amy1.png");
    assert_decline(&r, FPAY_REASON_QUALITY);
    cr_assert(r.quality_reasons & FPAY_QUALITY_CUT_BY_EDGE);
    cr_assert_neq(strstr(r.message, "cut_by_edge"), NULL, "%s", r.message);
    /* None of these counted as a failed attempt on the account. */
    r = svc_verify(svc, acct, PACINO_B);
    cr_assert_eq(r.decision, FPAY_APPROVE, "reason %s", fpay_reason_name(r.reason));
    fpay_service_close(svc);
}

Test(hostile, raw_frames)
{
    fpay_service *svc = svc_open(&env, env.key, 0, 1, 0);
    const char *acct = "+8613800000003";
    fpay_service_result r = svc_enroll(svc, acct, PACINO_A);
    cr_assert_eq(r.decision, FPAY_APPROVE);
    fpay_image im = {0};
    char err[256];
    cr_assert_eq(fpay_image_load_file(fpay_test_data_path(PACINO_B), NULL, &im, err, sizeof err),
                 FPAY_OK);
    fpay_frame fr = {.format = FPAY_PIX_RGB24, .width = im.width, .height = im.height,
                     .data = im.pixels, .size = (size_t)im.stride * (size_t)im.height,
                     .stride = im.stride};
    fpay_capture_source src = {.frame = &fr};
    fpay_request req = {.id_kind = FPAY_ID_PHONE, .account = acct};
    cr_assert_eq(fpay_service_verify(svc, &req, &src, &r), FPAY_OK);
    cr_assert_eq(r.decision, FPAY_APPROVE, "reason %s", fpay_reason_name(r.reason));
    /* Lying sizes: a stride below the row, a buffer too short. */
    fpay_frame bad = fr;
    bad.stride = 3;
    src.frame = &bad;
    cr_assert_eq(fpay_service_verify(svc, &req, &src, &r), FPAY_OK);
    assert_decline(&r, FPAY_REASON_BAD_IMAGE);
    bad = fr;
    bad.size = 100;
    cr_assert_eq(fpay_service_verify(svc, &req, &src, &r), FPAY_OK);
    assert_decline(&r, FPAY_REASON_BAD_IMAGE);
    bad = fr;
    bad.width = -1;
    cr_assert_eq(fpay_service_verify(svc, &req, &src, &r), FPAY_OK);
    assert_decline(&r, FPAY_REASON_BAD_IMAGE);

    /* A tiny face: the photo scaled to 64x64 (eyes ~10 px apart). */
    uint8_t *tiny = malloc(64 * 64 * 3);
    cr_assert_eq(fpay_image_resize_bilinear(&im, 64, 64, tiny), FPAY_OK);
    fpay_frame tf = {.format = FPAY_PIX_RGB24, .width = 64, .height = 64, .data = tiny,
                     .size = 64 * 64 * 3, .stride = 64 * 3};
    src.frame = &tf;
    cr_assert_eq(fpay_service_verify(svc, &req, &src, &r), FPAY_OK);
    cr_assert_eq(r.decision, FPAY_DECLINE);
    cr_assert(r.reason == FPAY_REASON_QUALITY || r.reason == FPAY_REASON_NO_FACE, "reason %s",
              fpay_reason_name(r.reason));
    if (r.reason == FPAY_REASON_QUALITY)
        cr_assert(r.quality_reasons & FPAY_QUALITY_TOO_SMALL);
    /* Enrolling from frames: a replayed frame (same pixels, other stride)
     * is a duplicate. */
    fpay_request req2 = {.id_kind = FPAY_ID_PHONE, .account = "+8613800000004"};
    fpay_image big = {0};
    cr_assert_eq(fpay_image_load_file(fpay_test_data_path(GREENSPAN_A), NULL, &big, err,
                                      sizeof err),
                 FPAY_OK);
    fpay_frame f1 = {.format = FPAY_PIX_RGB24, .width = big.width, .height = big.height,
                     .data = big.pixels, .size = (size_t)big.stride * (size_t)big.height,
                     .stride = big.stride};
    size_t stride2 = (size_t)big.width * 3 + 16;
    uint8_t *padded = calloc(stride2, (size_t)big.height);
    for (int y = 0; y < big.height; y++)
        memcpy(padded + (size_t)y * stride2, big.pixels + (size_t)y * (size_t)big.stride,
               (size_t)big.width * 3);
    fpay_frame f2 = f1;
    f2.data = padded;
    f2.stride = (int)stride2;
    f2.size = stride2 * (size_t)big.height;
    fpay_capture_source caps[2] = {{.frame = &f1}, {.frame = &f2}};
    cr_assert_eq(fpay_service_enroll(svc, &req2, caps, 2, &r), FPAY_OK);
    assert_decline(&r, FPAY_REASON_DUPLICATE_CAPTURE);
    cr_assert_eq(fpay_service_enroll(svc, &req2, caps, 1, &r), FPAY_OK);
    cr_assert_eq(r.decision, FPAY_APPROVE, "reason %s", fpay_reason_name(r.reason));
    free(padded);
    fpay_image_free(&big);
    free(tiny);
    fpay_image_free(&im);
    fpay_service_close(svc);
}

Test(hostile, tampered_template)
{
    fpay_service *svc = svc_open(&env, env.key, 0, 1, 0);
    const char *acct = "+8613800000010";
    fpay_service_result r = svc_enroll(svc, acct, PACINO_A);
    cr_assert_eq(r.decision, FPAY_APPROVE);
    fpay_service_close(svc);
    /* One byte of the ciphertext flipped. */
    svc_sql(&env, "UPDATE accounts SET blob = substr(blob, 1, 40) || "
                  "CASE WHEN substr(blob, 41, 1) = X'00' THEN X'01' ELSE X'00' END || "
                  "substr(blob, 42);");
    svc = svc_open(&env, env.key, 0, 1, 0);
    r = svc_verify(svc, acct, PACINO_B);
    assert_decline(&r, FPAY_REASON_INTERNAL_ERROR);
    /* Truncated, emptied. */
    svc_sql(&env, "UPDATE accounts SET blob = substr(blob, 1, 20);");
    r = svc_verify(svc, acct, PACINO_B);
    assert_decline(&r, FPAY_REASON_INTERNAL_ERROR);
    svc_sql(&env, "UPDATE accounts SET blob = X'';");
    r = svc_verify(svc, acct, PACINO_B);
    assert_decline(&r, FPAY_REASON_INTERNAL_ERROR);
    fpay_service_close(svc);
}

Test(hostile, swapped_rows)
{
    fpay_service *svc = svc_open(&env, env.key, 0, 1, 0);
    fpay_service_result a = svc_enroll(svc, "+8613800000020", PACINO_A);
    fpay_service_result b = svc_enroll(svc, "+8613800000021", GREENSPAN_A);
    cr_assert_eq(a.decision, FPAY_APPROVE);
    cr_assert_eq(b.decision, FPAY_APPROVE);
    fpay_service_close(svc);
    /* Each account gets the other's sealed template. */
    svc_sql(&env, "CREATE TEMP TABLE c AS SELECT hash, blob FROM accounts; "
                  "UPDATE accounts SET blob = (SELECT blob FROM c WHERE c.hash <> accounts.hash);");
    svc = svc_open(&env, env.key, 0, 1, 0);
    const char *faces[2] = {PACINO_B, GREENSPAN_B};
    const char *accts[2] = {"+8613800000020", "+8613800000021"};
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) {
            fpay_service_result r = svc_verify(svc, accts[i], faces[j]);
            cr_assert_eq(r.decision, FPAY_DECLINE, "swapped row approved %d/%d", i, j);
            cr_assert_eq(r.reason, FPAY_REASON_INTERNAL_ERROR);
        }
    fpay_service_close(svc);
}

static long rows_written(void)
{
    return svc_sql_count(&env, "SELECT (SELECT count(*) FROM audit) * 1000000 +"
                               " (SELECT count(*) FROM settings) * 1000 +"
                               " (SELECT count(*) FROM counters)");
}

/* A wrong but valid master key: refused at open by the database's key check
 * value, with a clear message and nothing written; a database made before
 * check values is checked against its audit chain instead. */
Test(hostile, wrong_master_key)
{
    fpay_service *svc = svc_open(&env, env.key, 0, 1, 0);
    fpay_service_result r = svc_enroll(svc, "+8613800000030", PACINO_A);
    cr_assert_eq(r.decision, FPAY_APPROVE);
    fpay_service_close(svc);
    long before = rows_written();
    char e1[512] = "";
    fpay_service *wrong = NULL;
    cr_expect_eq(svc_try_open(&env, env.key2, 0, &wrong, e1, sizeof e1), FPAY_INVALID_ARGUMENT);
    cr_expect_null(wrong);
    fpay_service_close(wrong);
    cr_expect_not_null(strstr(e1, "not the key of this database"), "'%s'", e1);
    cr_expect_eq(rows_written(), before, "something was written under the wrong key");
    /* Without the check value (a database from before them): the audit
     * chain decides, and the right key gets the value back. */
    svc_sql(&env, "DELETE FROM settings WHERE name = 'key_check';");
    before = rows_written();
    wrong = NULL;
    cr_expect_eq(svc_try_open(&env, env.key2, 0, &wrong, e1, sizeof e1), FPAY_INVALID_ARGUMENT);
    cr_expect_null(wrong);
    fpay_service_close(wrong);
    cr_expect_not_null(strstr(e1, "audit chain"), "'%s'", e1);
    cr_expect_eq(rows_written(), before, "something was written under the wrong key");
    svc = svc_open(&env, env.key, 0, 1, 0);
    r = svc_verify(svc, "+8613800000030", PACINO_B);
    cr_expect_eq(r.decision, FPAY_APPROVE);
    fpay_service_close(svc);
    cr_expect_eq(svc_sql_count(&env, "SELECT count(*) FROM settings WHERE name = 'key_check'"),
                 1);
    /* No key at all, or an unreadable one: open fails, nothing runs. */
    fpay_service_config cfg;
    fpay_service_config_init(&cfg);
    cfg.db_path = env.db;
    cfg.key_file = "/nonexistent/key";
    fpay_service *none = NULL;
    char err[256];
    cr_assert_neq(fpay_service_open(&cfg, &none, err, sizeof err), FPAY_OK);
    cr_assert_null(none);
    cr_assert_neq(fpay_service_open(NULL, &none, err, sizeof err), FPAY_OK);
    cfg.struct_size = 3;
    cr_assert_neq(fpay_service_open(&cfg, &none, err, sizeof err), FPAY_OK);
}

/* A cosine threshold at or below 0 approves strangers (-1 approves anyone):
 * an explicit one outside (0, 1] is refused at open, and so is a stored
 * calibration outside it (someone with write access to the file). */
Test(hostile, threshold_outside_0_1_refused)
{
    const float bad[] = {-1.0f, -0.25f, -1e-9f, 1.0001f, 2.0f, NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fpay_service *svc = NULL;
        char err[512] = "";
        cr_expect_eq(svc_try_open(&env, env.key, bad[i], &svc, err, sizeof err), FPAY_INVALID_ARGUMENT,
                     "threshold %g was accepted", (double)bad[i]);
        cr_expect_null(svc);
        cr_expect_not_null(strstr(err, "(0, 1]"), "threshold %g: '%s'", (double)bad[i], err);
        fpay_service_close(svc);
    }
    /* The edges: 1 is allowed, 0 means the calibrated one. */
    fpay_service *svc = svc_open(&env, env.key, 0, 1, 1.0f);
    fpay_service_close(svc);
    svc = svc_open(&env, env.key, 0, 1, 0.0f);
    float t;
    double fmr;
    fpay_service_threshold(svc, &t, &fmr);
    cr_expect_float_eq(t, FPAY_DEFAULT_THRESHOLD, 1e-6);
    fpay_service_result r = svc_enroll(svc, "+8613800000041", PACINO_A);
    cr_assert_eq(r.decision, FPAY_APPROVE);
    fpay_service_close(svc);

    /* A calibration of this model (its sha from the enrolled row) stored
     * with threshold -1. */
    svc_sql(&env, "INSERT OR REPLACE INTO settings (name, value) VALUES ('threshold', '-1'),"
                  " ('threshold_fmr', '0.0001');"
                  "INSERT OR REPLACE INTO settings (name, value)"
                  " SELECT 'threshold_model_sha256', model_sha256 FROM accounts;");
    char err[512] = "";
    svc = NULL;
    cr_expect_eq(svc_try_open(&env, env.key, 0.0f, &svc, err, sizeof err), FPAY_INVALID_ARGUMENT,
                 "a stored threshold of -1 was used");
    cr_expect_null(svc);
    cr_expect_not_null(strstr(err, "(0, 1]"), "'%s'", err);
    fpay_service_close(svc);
    /* An explicit threshold still opens it (it does not read the setting). */
    svc = svc_open(&env, env.key, 0, 1, 0.5f);
    fpay_service_close(svc);
}

static int same_public(const fpay_service_result *a, const fpay_service_result *b)
{
    return a->decision == b->decision && a->reason == b->reason &&
           a->quality_reasons == b->quality_reasons && a->retry_after_s == b->retry_after_s &&
           memcmp(a->message, b->message, sizeof a->message) == 0;
}

/* After a model change an enrolled number cannot be compared: the operator
 * learns RE_ENROLL_REQUIRED (operator_reason, the audit record), the
 * terminal gets exactly the answer of a number nobody enrolled, with the
 * same work (one open, one compare) and the same throttling. */
static void stale_answers_like_unknown(const char *stale_acct, const char *unknown_acct)
{
    fpay_service *svc = svc_open(&env, env.key, 0, 1, 0);
    fpay_service_counts c0, c1, c2;
    fpay_service_counts_get(svc, &c0);
    fpay_service_result stale = svc_verify(svc, stale_acct, PACINO_B);
    fpay_service_counts_get(svc, &c1);
    fpay_service_result unknown = svc_verify(svc, unknown_acct, PACINO_B);
    fpay_service_counts_get(svc, &c2);
    assert_decline(&stale, FPAY_REASON_NO_MATCH);
    cr_expect_eq(stale.operator_reason, FPAY_REASON_RE_ENROLL_REQUIRED, "%s",
                 fpay_reason_name(stale.operator_reason));
    cr_expect_eq(unknown.operator_reason, FPAY_REASON_NO_MATCH);
    cr_expect(same_public(&stale, &unknown), "stale: %s %s / unknown: %s %s",
              fpay_reason_name(stale.reason), stale.message, fpay_reason_name(unknown.reason),
              unknown.message);
    cr_expect_eq(c1.template_opens - c0.template_opens, 1);
    cr_expect_eq(c1.compares - c0.compares, 1);
    cr_expect_eq(c2.template_opens - c1.template_opens, 1);
    cr_expect_eq(c2.compares - c1.compares, 1);
    int64_t now = 1700000000;
    fpay_service_set_clock(svc, svc_fake_clock, &now);
    for (int i = 0; i < 5; i++) {
        stale = svc_verify(svc, stale_acct, PACINO_B);
        unknown = svc_verify(svc, unknown_acct, PACINO_B);
        cr_expect(same_public(&stale, &unknown), "attempt %d: %s / %s", i, stale.message,
                  unknown.message);
    }
    cr_expect_eq(stale.reason, FPAY_REASON_THROTTLED, "%s", fpay_reason_name(stale.reason));
    fpay_service_close(svc);
}

Test(hostile, re_enroll_required_answers_like_an_unknown_number)
{
    fpay_service *svc = svc_open(&env, env.key, 0, 1, 0);
    fpay_service_result r = svc_enroll(svc, "+8613800000040", PACINO_A);
    cr_assert_eq(r.decision, FPAY_APPROVE);
    fpay_service_close(svc);
    svc_sql(&env, "UPDATE accounts SET model_sha256 = "
                  "'0000000000000000000000000000000000000000000000000000000000000000';");
    stale_answers_like_unknown("+8613800000040", "+8613800000041");
    cr_expect_geq(svc_sql_count(&env, "SELECT count(*) FROM audit WHERE op = 'verify' AND "
                                      "reason = 'RE_ENROLL_REQUIRED'"),
                  5, "the audit record tells the operator");
    /* Re-enrolling with a new photo fixes it. */
    svc_sql(&env, "DELETE FROM counters;");
    svc = svc_open(&env, env.key, 0, 1, 0);
    r = svc_enroll(svc, "+8613800000040", "faces/Tom_Cruise_0001.jpg");
    cr_assert_eq(r.decision, FPAY_APPROVE, "%s", fpay_reason_name(r.reason));
    r = svc_verify(svc, "+8613800000040", PACINO_B);
    assert_decline(&r, FPAY_REASON_NO_MATCH);
    cr_expect_eq(r.operator_reason, FPAY_REASON_NO_MATCH);
    fpay_service_close(svc);
    /* Another template version: the same. */
    svc_sql(&env, "UPDATE accounts SET template_version = 99; DELETE FROM counters;"
                  "DELETE FROM terminal_failures;");
    stale_answers_like_unknown("+8613800000040", "+8613800000042");
}

Test(hostile, hostile_counter_rows)
{
    fpay_service *svc = svc_open(&env, env.key, 0, 1, 0);
    const char *acct = "+8613800000050";
    fpay_service_result r = svc_enroll(svc, acct, PACINO_A);
    cr_assert_eq(r.decision, FPAY_APPROVE);
    r = svc_verify(svc, acct, GREENSPAN_B);
    assert_decline(&r, FPAY_REASON_NO_MATCH);
    fpay_service_close(svc);
    /* A forged lock in the far future: the wait is capped at a day. */
    svc_sql(&env, "UPDATE counters SET failures = 20, last_failure = 9000000000000;");
    svc = svc_open(&env, env.key, 0, 1, 0);
    r = svc_verify(svc, acct, PACINO_B);
    assert_decline(&r, FPAY_REASON_THROTTLED);
    cr_assert(r.retry_after_s > 0 && r.retry_after_s <= 86400, "%d", r.retry_after_s);
    fpay_service_close(svc);
    /* Negative counts: the store refuses such a row or the policy clamps
     * it; either way the wrong face declines and nothing crashes. */
    svc_sql(&env, "UPDATE counters SET failures = -2147483648, last_failure = -1;");
    svc = svc_open(&env, env.key, 0, 1, 0);
    r = svc_verify(svc, acct, GREENSPAN_B);
    cr_assert_eq(r.decision, FPAY_DECLINE);
    r = svc_verify(svc, acct, PACINO_B);
    cr_assert(r.decision == FPAY_APPROVE || r.reason == FPAY_REASON_INTERNAL_ERROR, "%s",
              fpay_reason_name(r.reason));
    fpay_service_close(svc);
}

/* ------------------------------------------------------------- threads */

#define THREADS 4
#define PER_THREAD 10

typedef struct job {
    fpay_service *svc;
    const fpay_image *im;
    int id;
    int approved, enrolled;
} job;

static void *worker(void *arg)
{
    job *j = arg;
    const fpay_image *im = j->im;
    size_t bytes = (size_t)im->stride * (size_t)im->height;
    uint8_t *px = malloc(bytes);
    if (!px)
        return NULL;
    fpay_capture_source verify_src = svc_src(PACINO_B);
    for (int k = 0; k < PER_THREAD; k++) {
        int n = j->id * PER_THREAD + k;
        char acct[32];
        snprintf(acct, sizeof acct, "+86139000%05d", n);
        /* One changed corner pixel: a new capture for the replay check,
         * the same face for the model. */
        memcpy(px, im->pixels, bytes);
        px[0] = (uint8_t)n;
        px[1] = (uint8_t)(n >> 8);
        px[2] = 0x5a;
        fpay_frame fr = {.format = FPAY_PIX_RGB24, .width = im->width, .height = im->height,
                         .data = px, .size = bytes, .stride = im->stride};
        fpay_capture_source src = {.frame = &fr};
        fpay_request req = {.terminal_id = "load", .id_kind = FPAY_ID_PHONE, .account = acct};
        fpay_service_result r;
        if (fpay_service_enroll(j->svc, &req, &src, 1, &r) == FPAY_OK &&
            r.decision == FPAY_APPROVE)
            j->enrolled++;
        if (fpay_service_verify(j->svc, &req, &verify_src, &r) == FPAY_OK &&
            r.decision == FPAY_APPROVE)
            j->approved++;
    }
    svc_src_free(&verify_src);
    free(px);
    return NULL;
}

Test(hostile, many_threads)
{
    fpay_service *svc = svc_open(&env, env.key, 0, 2, 0);
    fpay_image im = {0};
    char err[256];
    cr_assert_eq(fpay_image_load_file(fpay_test_data_path(PACINO_A), NULL, &im, err, sizeof err),
                 FPAY_OK);
    pthread_t t[THREADS];
    job jobs[THREADS];
    for (int i = 0; i < THREADS; i++) {
        jobs[i] = (job){.svc = svc, .im = &im, .id = i};
        cr_assert_eq(pthread_create(&t[i], NULL, worker, &jobs[i]), 0);
    }
    int enrolled = 0, approved = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        enrolled += jobs[i].enrolled;
        approved += jobs[i].approved;
    }
    cr_assert_eq(enrolled, THREADS * PER_THREAD);
    cr_assert_eq(approved, THREADS * PER_THREAD);
    long accounts = -1, records = -1;
    fpay_store *st = fpay_service_store(svc);
    cr_assert_eq(st->ops->check(st, &accounts, &records, err, sizeof err), FPAY_OK, "%s", err);
    cr_assert_eq(accounts, THREADS * PER_THREAD);
    cr_assert_eq(records, 2 * THREADS * PER_THREAD);
    long n = 0, bad = -1;
    cr_assert_eq(fpay_service_audit_verify(svc, &n, &bad, err, sizeof err), FPAY_OK, "%s", err);
    cr_assert_eq(n, 2 * THREADS * PER_THREAD);
    cr_assert_eq(svc_sql_count(&env, "SELECT count(*) FROM captures"), THREADS * PER_THREAD);
    fpay_image_free(&im);
    fpay_service_close(svc);
}
