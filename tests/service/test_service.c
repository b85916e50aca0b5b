/*
 * test_service.c - the checkout flows of facepay/service.h end to end on
 * real photos: enroll then verify (same person APPROVE, another person
 * DECLINE NO_MATCH), the decoy for unknown accounts, throttling with an
 * injected clock, counters across reopen, key rotation, the audit chain,
 * batches. Calibration: test_calibrate.c.
 *
 * Photos (tests/data/faces, see SOURCES.md): obama.jpg / obama1.jpg are
 * large enough for the liveness model and used with liveness on; the LFW
 * photos (250x250) are too small for it (LIVENESS_UNSURE, see
 * docs/pipeline.md) and are used with liveness off. Enrollment photos pass
 * the stricter enrollment gates (eye distance >= 40 px): Al_Pacino_0001,
 * Alan_Greenspan_0001, Tom_Cruise_0001, obama.jpg.
 */
#include <criterion/criterion.h>

#include "test_service_util.h"
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PACINO_A "faces/Al_Pacino_0001.jpg"
#define PACINO_B "faces/Al_Pacino_0002.jpg"
#define GREENSPAN_A "faces/Alan_Greenspan_0001.jpg"
#define GREENSPAN_B "faces/Alan_Greenspan_0005.jpg"
#define CRUISE_A "faces/Tom_Cruise_0001.jpg"

static svc_env env;

static void setup(void) { svc_env_init(&env); }
static void teardown(void) { svc_env_fini(&env); }

TestSuite(service, .init = setup, .fini = teardown);

static void assert_decision(const fpay_service_result *r, fpay_decision d, fpay_reason why)
{
    cr_assert_eq(r->decision, d, "decision %s, want %s (reason %s: %s)",
                 fpay_decision_name(r->decision), fpay_decision_name(d),
                 fpay_reason_name(r->reason), r->message);
    cr_assert_eq(r->reason, why, "reason %s, want %s (%s)", fpay_reason_name(r->reason),
                 fpay_reason_name(why), r->message);
}

Test(service, enroll_then_verify_with_liveness)
{
    fpay_service *svc = svc_open(&env, env.key, 1, 1, 0);
    fpay_service_result r = svc_enroll(svc, "+8613800138000", "faces/obama.jpg");
    assert_decision(&r, FPAY_APPROVE, FPAY_REASON_NONE);
    cr_assert_eq(r.captures_used, 1);

    r = svc_verify(svc, "+8613800138000", "faces/obama1.jpg");
    assert_decision(&r, FPAY_APPROVE, FPAY_REASON_NONE);
    cr_assert_geq(r.score, r.threshold);
    cr_assert(r.times.total > 0 && r.times.detect > 0 && r.times.embed > 0);
    cr_assert(r.times.liveness > 0, "liveness ran");
    /* The national form of the same number is the same account. */
    r = svc_verify(svc, "138 0013 8000", "faces/obama1.jpg");
    assert_decision(&r, FPAY_APPROVE, FPAY_REASON_NONE);

    r = svc_verify(svc, "+8613800138000", "faces/Tom_Cruise_avp_2014_4.jpg");
    assert_decision(&r, FPAY_DECLINE, FPAY_REASON_NO_MATCH);
    cr_assert_lt(r.score, r.threshold);
    /* The message is for a person: never the score, never the number. */
    char score[32];
    snprintf(score, sizeof score, "%.2f", (double)r.score);
    cr_assert_null(strstr(r.message, score));
    cr_assert_null(strstr(r.message, "13800138000"));
    fpay_service_close(svc);
}

/* A liveness refusal tells the terminal what to ask for: SPOOF (present
 * your own face) apart from CAPTURE_UNSURE (hold still), never a score.
 * The LFW photo is too small for the liveness model (unsure); a threshold
 * below every score makes the live photo a spoof. */
Test(service, liveness_refusals_say_spoof_or_capture_unsure)
{
    fpay_service *svc = svc_open(&env, env.key, 1, 1, 0);
    fpay_service_result r = svc_enroll(svc, "+8613800138000", "faces/obama.jpg");
    assert_decision(&r, FPAY_APPROVE, FPAY_REASON_NONE);
    r = svc_verify(svc, "+8613800138000", "faces/Al_Pacino_0002.jpg");
    assert_decision(&r, FPAY_DECLINE, FPAY_REASON_CAPTURE_UNSURE);
    cr_expect_str_eq(r.message, fpay_reason_str(FPAY_REASON_CAPTURE_UNSURE));
    fpay_service_close(svc);

    fpay_service_config cfg;
    fpay_service_config_init(&cfg);
    cfg.db_path = env.db;
    cfg.key_file = env.key;
    char models[4096];
    snprintf(models, sizeof models, "%s", fpay_test_model_path("pnet.tflite"));
    *strrchr(models, '/') = '\0';
    cfg.pipeline.models_dir = models;
    cfg.pipeline.liveness = 1;
    cfg.pipeline.liveness_threshold = 1e-9f;
    cfg.default_country_code = "86";
    char err[512] = "";
    cr_assert_eq(fpay_service_open(&cfg, &svc, err, sizeof err), FPAY_OK, "%s", err);
    r = svc_verify(svc, "+8613800138000", "faces/obama1.jpg");
    assert_decision(&r, FPAY_DECLINE, FPAY_REASON_SPOOF);
    cr_expect_str_eq(r.message, fpay_reason_str(FPAY_REASON_SPOOF));
    cr_expect_null(strstr(r.message, "score"));
    fpay_service_close(svc);
    /* The operator's audit trail names each. */
    cr_expect_eq(svc_sql_count(&env, "SELECT COUNT(*) FROM audit WHERE reason = 'SPOOF'"), 1);
    cr_expect_eq(svc_sql_count(&env,
                               "SELECT COUNT(*) FROM audit WHERE reason = 'CAPTURE_UNSURE'"), 1);
}

/* A terminal (one pipeline) gives its sessions the idle cores, up to 4; a
 * server's pipelines one thread each; an explicit count is kept. */
Test(service, pipeline_threads_follow_the_workers)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int want = cores < 1 ? 1 : cores > 4 ? 4 : (int)cores;
    cr_expect_eq(fpay_service_auto_threads(1), want);
    cr_expect_eq(fpay_service_auto_threads(2), 1);
    fpay_service *svc = svc_open(&env, env.key, 0, 1, 0);
    cr_expect_eq(fpay_service_pipeline_threads(svc), want);
    fpay_service_close(svc);
    svc = svc_open(&env, env.key, 0, 3, 0);
    cr_expect_eq(fpay_service_pipeline_threads(svc), 1);
    fpay_service_close(svc);
    fpay_service_config cfg;
    fpay_service_config_init(&cfg);
    cr_expect_eq(cfg.pipeline.threads, 0, "the default leaves the choice to the service");
}

Test(service, enroll_then_verify_lfw)
{
    fpay_service *svc = svc_open(&env, env.key, 0, 1, 0);
    fpay_service_result r = svc_enroll(svc, "+8613800000001", PACINO_A);
    assert_decision(&r, FPAY_APPROVE, FPAY_REASON_NONE);
    r = svc_enroll(svc, "+8613800000002", GREENSPAN_A);
    assert_decision(&r, FPAY_APPROVE, FPAY_REASON_NONE);

    r = svc_verify(svc, "+8613800000001", PACINO_B);
    assert_decision(&r, FPAY_APPROVE, FPAY_REASON_NONE);
    r = svc_verify(svc, "+8613800000002", GREENSPAN_B);
    assert_decision(&r, FPAY_APPROVE, FPAY_REASON_NONE);
    r = svc_verify(svc, "+8613800000001", GREENSPAN_B);
    assert_decision(&r, FPAY_DECLINE, FPAY_REASON_NO_MATCH);
    r = svc_verify(svc, "+8613800000002", PACINO_B);
    assert_decision(&r, FPAY_DECLINE, FPAY_REASON_NO_MATCH);

    /* Delete: then the account is unknown and declines like one. */
    fpay_request req = {.id_kind = FPAY_ID_PHONE, .account = "+8613800000001"};
    cr_assert_eq(fpay_service_delete(svc, &req, &r), FPAY_OK);
    assert_decision(&r, FPAY_APPROVE, FPAY_REASON_NONE);
    r = svc_verify(svc, "+8613800000001", PACINO_B);
    assert_decision(&r, FPAY_DECLINE, FPAY_REASON_NO_MATCH);
    /* Deleting again is not an error. */
    cr_assert_eq(fpay_service_delete(svc, &req, &r), FPAY_OK);
    fpay_service_close(svc);
}

Test(service, multi_capture_enroll_and_duplicates)
{
    fpay_service *svc = svc_open(&env, env.key, 0, 1, 0);
    fpay_capture_source caps[3] = {svc_src(PACINO_A), svc_src(CRUISE_A), svc_src(PACINO_A)};
    fpay_request req = {.id_kind = FPAY_ID_PHONE, .account = "+8613800000003"};
    fpay_service_result r;
    /* The same bytes twice in one call. */
    cr_assert_eq(fpay_service_enroll(svc, &req, caps, 3, &r), FPAY_OK);
    assert_decision(&r, FPAY_DECLINE, FPAY_REASON_DUPLICATE_CAPTURE);
    /* Too many captures or none: a bad call. */
    cr_assert_eq(fpay_service_enroll(svc, &req, caps, 6, &r), FPAY_INVALID_ARGUMENT);
    cr_assert_eq(r.decision, FPAY_DECLINE);
    cr_assert_eq(fpay_service_enroll(svc, &req, caps, 0, &r), FPAY_INVALID_ARGUMENT);
    cr_assert_eq(r.decision, FPAY_DECLINE);
    /* One photo: enrolls. */
    cr_assert_eq(fpay_service_enroll(svc, &req, caps, 1, &r), FPAY_OK);
    assert_decision(&r, FPAY_APPROVE, FPAY_REASON_NONE);
    /* The same photo for another account: already used. */
    req.account = "+8613800000004";
    cr_assert_eq(fpay_service_enroll(svc, &req, caps, 1, &r), FPAY_OK);
    assert_decision(&r, FPAY_DECLINE, FPAY_REASON_DUPLICATE_CAPTURE);
    /* A photo that fails the stricter enrollment gate (eye distance 38 px,
     * enough to pay with) is refused for enrollment. */
    fpay_capture_source small = svc_src(PACINO_B);
    cr_assert_eq(fpay_service_enroll(svc, &req, &small, 1, &r), FPAY_OK);
    assert_decision(&r, FPAY_DECLINE, FPAY_REASON_QUALITY);
    cr_assert(r.quality_reasons & FPAY_QUALITY_TOO_SMALL);
    /* Two photos of one person: the template is their mean and
     * captures_used says so. */
    fpay_capture_source two[2] = {svc_src("faces/obama.jpg"), svc_src("faces/obama1.jpg")};
    req.account = "+8613800000005";
    cr_assert_eq(fpay_service_enroll(svc, &req, two, 2, &r), FPAY_OK);
    assert_decision(&r, FPAY_APPROVE, FPAY_REASON_NONE);
    cr_assert_eq(r.captures_used, 2);
    svc_src_free(&small);
    for (int i = 0; i < 3; i++)
        svc_src_free(&caps[i]);
    for (int i = 0; i < 2; i++)
        svc_src_free(&two[i]);
    fpay_service_close(svc);
}

static int same_public(const fpay_service_result *a, const fpay_service_result *b)
{
    return a->decision == b->decision && a->reason == b->reason &&
           a->quality_reasons == b->quality_reasons && a->retry_after_s == b->retry_after_s &&
           memcmp(a->message, b->message, sizeof a->message) == 0;
}

Test(service, unknown_account_answers_like_wrong_face)
{
    fpay_service *svc = svc_open(&env, env.key, 0, 1, 0);
    fpay_service_result r = svc_enroll(svc, "+8613800000010", PACINO_A);
    assert_decision(&r, FPAY_APPROVE, FPAY_REASON_NONE);

    fpay_service_counts c0, c1, c2;
    fpay_service_counts_get(svc, &c0);
    fpay_service_result known = svc_verify(svc, "+8613800000010", GREENSPAN_B);
    fpay_service_counts_get(svc, &c1);
    fpay_service_result unknown = svc_verify(svc, "+8613800000011", GREENSPAN_B);
    fpay_service_counts_get(svc, &c2);

    assert_decision(&known, FPAY_DECLINE, FPAY_REASON_NO_MATCH);
    cr_assert(same_public(&known, &unknown), "known: %s / unknown: %s", known.message,
              unknown.message);
    /* Both paths opened one template and compared once. */
    cr_assert_eq(c1.template_opens - c0.template_opens, 1);
    cr_assert_eq(c1.compares - c0.compares, 1);
    cr_assert_eq(c2.template_opens - c1.template_opens, 1);
    cr_assert_eq(c2.compares - c1.compares, 1);
    /* The unknown number compared against something (the decoy). */
    cr_assert_gt(unknown.score, -2.0f);

    /* Throttling treats both alike too: 5 failures each, then both wait
     * the same. */
    int64_t now = 1700000000;
    fpay_service_set_clock(svc, svc_fake_clock, &now);
    for (int i = 0; i < 4; i++) {
        known = svc_verify(svc, "+8613800000010", GREENSPAN_B);
        unknown = svc_verify(svc, "+8613800000011", GREENSPAN_B);
        cr_assert(same_public(&known, &unknown));
    }
    known = svc_verify(svc, "+8613800000010", GREENSPAN_B);
    unknown = svc_verify(svc, "+8613800000011", GREENSPAN_B);
    assert_decision(&known, FPAY_DECLINE, FPAY_REASON_THROTTLED);
    cr_assert(same_public(&known, &unknown), "known: %s / unknown: %s", known.message,
              unknown.message);
    fpay_service_close(svc);
}

Test(service, lockout_sequence)
{
    fpay_service *svc = svc_open(&env, env.key, 0, 1, 0);
    int64_t now = 1700000000;
    fpay_service_set_clock(svc, svc_fake_clock, &now);
    const char *acct = "+8613800000020";
    fpay_service_result r = svc_enroll(svc, acct, PACINO_A);
    assert_decision(&r, FPAY_APPROVE, FPAY_REASON_NONE);

    for (int i = 0; i < 5; i++) {
        r = svc_verify(svc, acct, GREENSPAN_B);
        assert_decision(&r, FPAY_DECLINE, FPAY_REASON_NO_MATCH);
        now += 1;
    }
    /* Five failures: the sixth attempt waits, even with the right face. */
    r = svc_verify(svc, acct, PACINO_B);
    assert_decision(&r, FPAY_DECLINE, FPAY_REASON_THROTTLED);
    cr_assert_geq(r.retry_after_s, 29); /* 30 s after the last failure, 1 s ago */
    cr_assert_eq(r.score, -2.0f, "a throttled attempt compares nothing");
    /* Each further failure doubles the wait. */
    int prev_wait = 30;
    int failures = 5;
    while (failures < 50) {
        r = svc_verify(svc, acct, GREENSPAN_B);
        if (r.reason == FPAY_REASON_THROTTLED) {
            cr_assert_gt(r.retry_after_s, 0);
            now += r.retry_after_s;
            continue;
        }
        assert_decision(&r, FPAY_DECLINE, FPAY_REASON_NO_MATCH);
        failures++;
        if (failures < 50) {
            fpay_service_result t = svc_verify(svc, acct, GREENSPAN_B);
            assert_decision(&t, FPAY_DECLINE, FPAY_REASON_THROTTLED);
            if (failures <= 10) {
                cr_assert_geq(t.retry_after_s, 2 * prev_wait - 1, "failure %d: wait %d after %d",
                              failures, t.retry_after_s, prev_wait);
                prev_wait = t.retry_after_s;
            }
            cr_assert_leq(t.retry_after_s, 86400);
        }
    }
    /* 50 failures: a hard lock, whatever the time and the face. */
    now += 10 * 86400;
    r = svc_verify(svc, acct, PACINO_B);
    assert_decision(&r, FPAY_DECLINE, FPAY_REASON_LOCKED);
    cr_assert_eq(r.score, -2.0f);
    /* Unlock clears it. */
    fpay_request req = {.id_kind = FPAY_ID_PHONE, .account = acct};
    cr_assert_eq(fpay_service_unlock(svc, &req, &r), FPAY_OK);
    assert_decision(&r, FPAY_APPROVE, FPAY_REASON_NONE);
    r = svc_verify(svc, acct, PACINO_B);
    assert_decision(&r, FPAY_APPROVE, FPAY_REASON_NONE);
    fpay_service_close(svc);
}

Test(service, counters_survive_reopen)
{
    int64_t now = 1700000000;
    const char *acct = "+8613800000030";
    fpay_service *svc = svc_open(&env, env.key, 0, 1, 0);
    fpay_service_set_clock(svc, svc_fake_clock, &now);
    fpay_service_result r = svc_enroll(svc, acct, PACINO_A);
    assert_decision(&r, FPAY_APPROVE, FPAY_REASON_NONE);
    for (int i = 0; i < 3; i++) {
        r = svc_verify(svc, acct, GREENSPAN_B);
        assert_decision(&r, FPAY_DECLINE, FPAY_REASON_NO_MATCH);
    }
    fpay_service_close(svc);

    svc = svc_open(&env, env.key, 0, 1, 0);
    fpay_service_set_clock(svc, svc_fake_clock, &now);
    for (int i = 0; i < 2; i++) {
        r = svc_verify(svc, acct, GREENSPAN_B);
        assert_decision(&r, FPAY_DECLINE, FPAY_REASON_NO_MATCH);
    }
    /* 3 before the reopen + 2 after = 5: throttled. */
    r = svc_verify(svc, acct, PACINO_B);
    assert_decision(&r, FPAY_DECLINE, FPAY_REASON_THROTTLED);
    /* A success after the wait resets the count. */
    now += r.retry_after_s;
    r = svc_verify(svc, acct, PACINO_B);
    assert_decision(&r, FPAY_APPROVE, FPAY_REASON_NONE);
    r = svc_verify(svc, acct, GREENSPAN_B);
    assert_decision(&r, FPAY_DECLINE, FPAY_REASON_NO_MATCH);
    fpay_service_close(svc);
}

Test(service, terminal_failure_limit)
{
    int64_t now = 1700000000;
    fpay_service_config cfg;
    fpay_service *svc = svc_open(&env, env.key, 0, 1, 0);
    fpay_service_set_clock(svc, svc_fake_clock, &now);
    (void)cfg;
    /* 30 failures from one terminal in 5 minutes (on 30 different
     * accounts, so no account throttle applies): the terminal waits. */
    fpay_capture_source s = svc_src(GREENSPAN_B);
    fpay_service_result r;
    for (int i = 0; i < 30; i++) {
        char acct[32];
        snprintf(acct, sizeof acct, "+86138000010%02d", i);
        fpay_request req = {.terminal_id = "kiosk-7", .id_kind = FPAY_ID_PHONE, .account = acct};
        fpay_service_verify(svc, &req, &s, &r);
        assert_decision(&r, FPAY_DECLINE, FPAY_REASON_NO_MATCH);
    }
    fpay_request req = {.terminal_id = "kiosk-7", .id_kind = FPAY_ID_PHONE,
                        .account = "+8613800001099"};
    fpay_service_verify(svc, &req, &s, &r);
    assert_decision(&r, FPAY_DECLINE, FPAY_REASON_THROTTLED);
    cr_assert_gt(r.retry_after_s, 0);
    /* Another terminal is not affected; after the window this one is not
     * either. */
    req.terminal_id = "kiosk-8";
    fpay_service_verify(svc, &req, &s, &r);
    assert_decision(&r, FPAY_DECLINE, FPAY_REASON_NO_MATCH);
    now += 301;
    req.terminal_id = "kiosk-7";
    req.account = "+8613800001098";
    fpay_service_verify(svc, &req, &s, &r);
    assert_decision(&r, FPAY_DECLINE, FPAY_REASON_NO_MATCH);
    svc_src_free(&s);
    fpay_service_close(svc);
}

Test(service, key_rotation)
{
    const char *acct = "+8613800000040";
    fpay_service *svc = svc_open(&env, env.key, 0, 1, 0);
    fpay_service_result r = svc_enroll(svc, acct, PACINO_A);
    assert_decision(&r, FPAY_APPROVE, FPAY_REASON_NONE);
    char key[64];
    cr_assert_eq(fpay_service_terminal_add(svc, "kiosk-1", key, sizeof key), FPAY_OK);
    char err[256] = "";
    /* The same key again is refused. */
    cr_assert_neq(fpay_service_rotate_key(svc, env.key, err, sizeof err), FPAY_OK);
    cr_assert_eq(fpay_service_rotate_key(svc, env.key2, err, sizeof err), FPAY_OK, "%s", err);
    r = svc_verify(svc, acct, PACINO_B);
    assert_decision(&r, FPAY_APPROVE, FPAY_REASON_NONE);
    fpay_service_close(svc);

    /* Every stored row now carries the new key's id. */
    svc = svc_open(&env, env.key2, 0, 1, 0);
    r = svc_verify(svc, acct, PACINO_B);
    assert_decision(&r, FPAY_APPROVE, FPAY_REASON_NONE);
    r = svc_verify(svc, acct, GREENSPAN_B);
    assert_decision(&r, FPAY_DECLINE, FPAY_REASON_NO_MATCH);
    /* Terminal keys were revoked by the rotation (added again, they work);
     * the audit chain survives it. */
    cr_assert_neq(fpay_service_terminal_check(svc, "kiosk-1", key), FPAY_OK);
    char key_new[64];
    cr_assert_eq(fpay_service_terminal_add(svc, "kiosk-1", key_new, sizeof key_new), FPAY_OK);
    cr_assert_eq(fpay_service_terminal_check(svc, "kiosk-1", key_new), FPAY_OK);
    cr_assert_neq(fpay_service_terminal_check(svc, "kiosk-1", key), FPAY_OK);
    long n = 0, bad = -1;
    cr_assert_eq(fpay_service_audit_verify(svc, &n, &bad, err, sizeof err), FPAY_OK, "%s", err);
    cr_assert_eq(bad, 0);
    fpay_service_close(svc);

    /* The old key opens nothing any more: the database refuses it. */
    fpay_service *old = NULL;
    cr_assert_eq(svc_try_open(&env, env.key, 0, &old, err, sizeof err), FPAY_INVALID_ARGUMENT);
    cr_assert_null(old);
    cr_expect_not_null(strstr(err, "not the key of this database"), "'%s'", err);
}

Test(service, terminal_keys)
{
    fpay_service *svc = svc_open(&env, env.key, 0, 1, 0);
    char key[64], key2[64];
    cr_assert_eq(fpay_service_terminal_add(svc, "kiosk-1", key, sizeof key), FPAY_OK);
    cr_assert_geq(strlen(key), 40);
    cr_assert_eq(fpay_service_terminal_check(svc, "kiosk-1", key), FPAY_OK);
    cr_assert_eq(fpay_service_terminal_check(svc, "kiosk-2", key), FPAY_NOT_FOUND);
    key[0] = key[0] == 'A' ? 'B' : 'A';
    cr_assert_eq(fpay_service_terminal_check(svc, "kiosk-1", key), FPAY_NOT_FOUND);
    cr_assert_eq(fpay_service_terminal_check(svc, "kiosk-1", ""), FPAY_NOT_FOUND);
    cr_assert_eq(fpay_service_terminal_check(svc, "kiosk-1", NULL), FPAY_NOT_FOUND);
    /* A new key replaces the old one. */
    cr_assert_eq(fpay_service_terminal_add(svc, "kiosk-1", key2, sizeof key2), FPAY_OK);
    cr_assert_eq(fpay_service_terminal_check(svc, "kiosk-1", key2), FPAY_OK);
    /* Bad ids and short buffers. */
    cr_assert_eq(fpay_service_terminal_add(svc, "bad id", key, sizeof key), FPAY_INVALID_ARGUMENT);
    cr_assert_eq(fpay_service_terminal_add(svc, "", key, sizeof key), FPAY_INVALID_ARGUMENT);
    cr_assert_eq(fpay_service_terminal_add(svc, "k", key, 10), FPAY_INVALID_ARGUMENT);
    fpay_service_close(svc);
}

Test(service, audit_chain_and_tamper)
{
    fpay_service *svc = svc_open(&env, env.key, 0, 1, 0);
    const char *acct = "+8613800000050";
    fpay_service_result r = svc_enroll(svc, acct, PACINO_A);
    assert_decision(&r, FPAY_APPROVE, FPAY_REASON_NONE);
    r = svc_verify(svc, acct, PACINO_B);
    r = svc_verify(svc, acct, GREENSPAN_B);
    r = svc_verify(svc, "not a number", GREENSPAN_B);
    long n = 0, bad = -1;
    char err[256] = "";
    cr_assert_eq(fpay_service_audit_verify(svc, &n, &bad, err, sizeof err), FPAY_OK, "%s", err);
    cr_assert_eq(n, 4);
    cr_assert_eq(bad, 0);
    fpay_service_close(svc);

    /* Nothing secret in the log: no number, only the hash prefix. */
    cr_assert_eq(svc_sql_count(&env, "SELECT count(*) FROM audit WHERE terminal LIKE "
                                     "'%13800000050%' OR account_prefix LIKE '%13800000050%'"),
                 0);
    cr_assert_eq(svc_sql_count(&env, "SELECT count(*) FROM audit WHERE length(account_prefix) "
                                     "= 16 AND op = 'verify'"),
                 2);

    /* Turn the failed verification (record 3) into an approval. The
     * append-only triggers stop honest mistakes, not someone with the
     * file, so they go first. */
    svc_sql(&env, "DROP TRIGGER IF EXISTS audit_no_update; DROP TRIGGER IF EXISTS audit_no_delete;");
    svc_sql(&env, "UPDATE audit SET decision = 'APPROVE', reason = 'NONE' WHERE seq = 3;");
    svc = svc_open(&env, env.key, 0, 1, 0);
    cr_assert_neq(fpay_service_audit_verify(svc, &n, &bad, err, sizeof err), FPAY_OK);
    cr_assert_eq(bad, 3);
    fpay_service_close(svc);
}

Test(service, audit_delete_detected)
{
    fpay_service *svc = svc_open(&env, env.key, 0, 1, 0);
    fpay_service_result r = svc_verify(svc, "+8613800000051", GREENSPAN_B);
    r = svc_verify(svc, "+8613800000051", GREENSPAN_B);
    r = svc_verify(svc, "+8613800000051", GREENSPAN_B);
    (void)r;
    fpay_service_close(svc);
    svc_sql(&env, "DROP TRIGGER IF EXISTS audit_no_delete; DELETE FROM audit WHERE seq = 2;");
    svc = svc_open(&env, env.key, 0, 1, 0);
    long n = 0, bad = 0;
    char err[256];
    cr_assert_neq(fpay_service_audit_verify(svc, &n, &bad, err, sizeof err), FPAY_OK);
    cr_assert_eq(bad, 2);
    fpay_service_close(svc);
}

Test(service, verify_batch)
{
    fpay_service *svc = svc_open(&env, env.key, 0, 1, 0);
    fpay_service_result r = svc_enroll(svc, "+8613800000060", PACINO_A);
    assert_decision(&r, FPAY_APPROVE, FPAY_REASON_NONE);
    r = svc_enroll(svc, "+8613800000061", GREENSPAN_A);
    assert_decision(&r, FPAY_APPROVE, FPAY_REASON_NONE);
    fpay_capture_source caps[5] = {svc_src(PACINO_B), svc_src(GREENSPAN_B), svc_src(PACINO_B),
                                   svc_src("faces/bbt3.jpg"), svc_src(GREENSPAN_B)};
    fpay_request reqs[5] = {
        {.id_kind = FPAY_ID_PHONE, .account = "+8613800000060"},
        {.id_kind = FPAY_ID_PHONE, .account = "+8613800000061"},
        {.id_kind = FPAY_ID_PHONE, .account = "+8613800000061"},
        {.id_kind = FPAY_ID_PHONE, .account = "+8613800000060"},
        {.id_kind = FPAY_ID_PHONE, .account = "12"},
    };
    fpay_service_result outs[5];
    cr_assert_eq(fpay_service_verify_batch(svc, 5, reqs, caps, outs), FPAY_INVALID_ARGUMENT,
                 "the invalid number makes the call's status an error");
    assert_decision(&outs[0], FPAY_APPROVE, FPAY_REASON_NONE);
    assert_decision(&outs[1], FPAY_APPROVE, FPAY_REASON_NONE);
    assert_decision(&outs[2], FPAY_DECLINE, FPAY_REASON_NO_MATCH);
    assert_decision(&outs[3], FPAY_DECLINE, FPAY_REASON_AMBIGUOUS_MULTIPLE_FACES);
    assert_decision(&outs[4], FPAY_DECLINE, FPAY_REASON_INVALID_ACCOUNT);
    /* Batch scores equal single-call scores (same model, same crop). */
    fpay_service_result single = svc_verify(svc, "+8613800000060", PACINO_B);
    cr_assert_float_eq(single.score, outs[0].score, 1e-4);
    for (int i = 0; i < 5; i++)
        svc_src_free(&caps[i]);
    fpay_service_close(svc);
}

Test(service, threshold_from_store_and_config)
{
    fpay_service *svc = svc_open(&env, env.key, 0, 1, 0);
    float t;
    double fmr;
    fpay_service_threshold(svc, &t, &fmr);
    cr_assert_float_eq(t, FPAY_DEFAULT_THRESHOLD, 1e-6);
    cr_assert_float_eq(fmr, FPAY_DEFAULT_THRESHOLD_FMR, 1e-12);
    fpay_service_close(svc);

    /* An explicit threshold wins, and is what results report. */
    svc = svc_open(&env, env.key, 0, 1, 0.99f);
    fpay_service_result r = svc_enroll(svc, "+8613800000070", PACINO_A);
    assert_decision(&r, FPAY_APPROVE, FPAY_REASON_NONE);
    r = svc_verify(svc, "+8613800000070", PACINO_B);
    assert_decision(&r, FPAY_DECLINE, FPAY_REASON_NO_MATCH);
    cr_assert_float_eq(r.threshold, 0.99f, 1e-6);
    fpay_service_close(svc);
}

