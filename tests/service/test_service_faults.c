/*
 * test_service_faults.c - fault injection under the checkout service
 * fail SQLite's Nth I/O call or Nth allocation during a verify
 * or an enroll, for N = 1, 2, ... until the call no longer meets the fault,
 * and check after every run that
 *   - no store failure ever turns into APPROVE: a call during which any
 *     store operation failed answers DECLINE INTERNAL_ERROR (the wrong face
 *     never approves at all);
 *   - the database is intact (PRAGMA integrity_check through the store's
 *     check), the audit chain verifies, and a record, when the call left
 *     one, says what the call answered (an APPROVE always leaves one);
 *   - faults are not face failures: the account is neither locked nor
 *     throttled, and the right face approves again once the fault is gone;
 *   - an enroll happened wholly or not at all (template and capture hash
 *     together, and a verify of the other photo agrees with the template),
 *     and an APPROVE left the template.
 *
 * The service writes a call's state change (template, counters, terminal
 * failure, erasure) and the audit record of its answer in one store
 * transaction, so the store and the record always agree, and the record
 * agrees with the answer, with one exception SQLite allows: a COMMIT that
 * failed at the WAL fsync after its frames were written (persistent I/O
 * faults) may be kept whole nevertheless, because WAL recovery finds the
 * committed frames at the next open. Then the call answered DECLINE
 * INTERNAL_ERROR while its record says what it would have answered
 * (APPROVE NONE, DECLINE NO_MATCH), and the test checks that the stored
 * state is the one that record describes (template there, counters moved)
 * and that the write carrying the record did fail. Such runs are counted
 * and printed ("kept after a failed commit"); any other disagreement
 * between answer, record and store fails.
 *
 * The service opens its store with SQLite's default VFS, so the fault shim
 * (fault_inject.c) is registered here as the default, and the allocator
 * hook is installed before SQLite initialises: each test's own process
 * (Criterion forks one per test) does both before anything opens SQLite.
 *
 * Which store calls failed is seen through a spy on the store's operation
 * table (service_internal.h's fpay_store is { ops }): a fault that SQLite
 * absorbs (it retries some reads, and some allocations are "benign") fails
 * no store call, and then the call must answer as without the fault.
 *
 * FPAY_FAULTS_MUTATE=1 checks the checks: the spy then hides failed writes
 * of an audit record from the service, which approves after a store
 * failure, and the loops fail. FPAY_FAULTS_TRACE=1 prints every run.
 *
 * LFW photos with liveness off keep each call cheap (test_service.c says
 * why); the fake clock moves past the terminal window before each run so
 * the declines of the wrong-face loop never throttle the terminal.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fault_inject.h"
#include "test_service_util.h"
#include "test_util.h"

#define PACINO_A "faces/Al_Pacino_0001.jpg"       /* enrolls account A */
#define PACINO_B "faces/Al_Pacino_0002.jpg"       /* A's right face */
#define GREENSPAN_A "faces/Alan_Greenspan_0001.jpg" /* A's wrong face; enrolls B */
#define GREENSPAN_B "faces/Alan_Greenspan_0005.jpg" /* B's other photo */

#define PHONE_A "+8613800000001"
#define N_MAX 20000

/* ----------------------------------------------------------- the spy */

/* Store calls made while a fault was armed, and those that failed (a
 * FPAY_NOT_FOUND from a lookup is an answer, not a failure). */
static struct {
    int on;
    long calls, failures;
    fpay_status last;
    char last_op[32];
    char last_err[256];
    /* A write that failed: one carrying a template (enroll), one carrying
     * an audit record (every call's last write). */
    int put_account_failed, audit_append_failed;
} spy;

static const fpay_store_ops *real_ops;
static fpay_store_ops spy_ops;

static fpay_status note(const char *op, fpay_status s, int not_found_ok, const char *err)
{
    if (!spy.on)
        return s;
    spy.calls++;
    if (s != FPAY_OK && !(not_found_ok && s == FPAY_NOT_FOUND)) {
        spy.failures++;
        spy.last = s;
        snprintf(spy.last_op, sizeof spy.last_op, "%s", op);
        snprintf(spy.last_err, sizeof spy.last_err, "%s", err ? err : "");
        spy.put_account_failed |= strcmp(op, "put_account") == 0;
        spy.audit_append_failed |= strcmp(op, "audit_append") == 0;
    }
    return s;
}

#define RO real_ops

static fpay_status spy_get_account(fpay_store *st, const uint8_t h[FPAY_HASH_BYTES],
                                   fpay_account_row *out, char *err, size_t el)
{
    return note("get_account", RO->get_account(st, h, out, err, el), 1, err);
}
static fpay_status spy_put_account(fpay_store *st, const fpay_account_row *row,
                                   const uint8_t (*caps)[FPAY_HASH_BYTES], int n, char *err,
                                   size_t el)
{
    return note("put_account", RO->put_account(st, row, caps, n, err, el), 0, err);
}
static fpay_status spy_delete_account(fpay_store *st, const uint8_t h[FPAY_HASH_BYTES],
                                      int *existed, char *err, size_t el)
{
    return note("delete_account", RO->delete_account(st, h, existed, err, el), 0, err);
}
static fpay_status spy_capture_seen(fpay_store *st, const uint8_t h[FPAY_HASH_BYTES],
                                    int *seen, char *err, size_t el)
{
    return note("capture_seen", RO->capture_seen(st, h, seen, err, el), 0, err);
}
static fpay_status spy_get_counters(fpay_store *st, const uint8_t h[FPAY_HASH_BYTES],
                                    fpay_counters *c, char *err, size_t el)
{
    return note("get_counters", RO->get_counters(st, h, c, err, el), 0, err);
}
static fpay_status spy_put_counters(fpay_store *st, const uint8_t h[FPAY_HASH_BYTES],
                                    const fpay_counters *c, char *err, size_t el)
{
    return note("put_counters", RO->put_counters(st, h, c, err, el), 0, err);
}
static fpay_status spy_tf_add(fpay_store *st, const char *t, int64_t now, char *err,
                              size_t el)
{
    return note("terminal_failure_add", RO->terminal_failure_add(st, t, now, err, el), 0,
                err);
}
static fpay_status spy_tf_count(fpay_store *st, const char *t, int64_t since, int *n,
                                char *err, size_t el)
{
    return note("terminal_failure_count",
                RO->terminal_failure_count(st, t, since, n, err, el), 0, err);
}
/* FPAY_FAULTS_MUTATE=1 makes this a store that hides a failed write of an
 * audit record from the service (the spy still counts it): the service
 * then approves after a store failure, and the loops must fail. A check of
 * the test. */
static int mutate(void)
{
    const char *m = getenv("FPAY_FAULTS_MUTATE");
    return m && m[0] == '1';
}
static fpay_status spy_audit_append(fpay_store *st, const fpay_keys *k,
                                    fpay_audit_record *rec, char *err, size_t el)
{
    fpay_status s = note("audit_append", RO->audit_append(st, k, rec, err, el), 0, err);
    return mutate() ? FPAY_OK : s;
}
/* The service's writes: a call's state change and its audit record. */
static fpay_status spy_write_batch(fpay_store *st, fpay_store_batch *b, char *err,
                                   size_t el)
{
    fpay_status s = note("write_batch", RO->write_batch(st, b, err, el), 0, err);
    if (s != FPAY_OK && spy.on) {
        spy.put_account_failed |= b->account != NULL;
        spy.audit_append_failed |= b->audit != NULL;
    }
    return b->audit && mutate() ? FPAY_OK : s;
}
static fpay_status spy_setting_get(fpay_store *st, const char *name, char *v, size_t vl,
                                   char *err, size_t el)
{
    return note("setting_get", RO->setting_get(st, name, v, vl, err, el), 1, err);
}

static void spy_install(fpay_service *svc)
{
    fpay_store *st = fpay_service_store(svc);
    cr_assert_not_null(st);
    real_ops = st->ops;
    spy_ops = *real_ops;
    spy_ops.get_account = spy_get_account;
    spy_ops.put_account = spy_put_account;
    spy_ops.delete_account = spy_delete_account;
    spy_ops.capture_seen = spy_capture_seen;
    spy_ops.get_counters = spy_get_counters;
    spy_ops.put_counters = spy_put_counters;
    spy_ops.terminal_failure_add = spy_tf_add;
    spy_ops.terminal_failure_count = spy_tf_count;
    spy_ops.audit_append = spy_audit_append;
    spy_ops.write_batch = spy_write_batch;
    spy_ops.setting_get = spy_setting_get;
    st->ops = &spy_ops;
}

/* Arms f at n with the spy on; fault_off disarms both and says whether f
 * fired. */
static void fault_on(fi_fault *f, int n, int persistent)
{
    memset(&spy, 0, sizeof spy);
    spy.on = 1;
    fi_arm(f, n, persistent);
}

static int fault_off(fi_fault *f)
{
    int fired = fi_disarm(f);
    spy.on = 0;
    return fired;
}

/* ------------------------------------------------------- the set-up */

static svc_env env;
static fpay_service *svc;
static int64_t fake_now = 1700000000;
static fpay_capture_source pacino_a, pacino_b, greenspan_a, greenspan_b;

static void setup(void)
{
    /* Before anything opens SQLite: the allocator hook, then the shim as
     * the default VFS the service's store opens its file with. */
    fi_install(1);
    /* Hundreds of fsyncs per loop: memory-backed when there is one. */
    if (access("/dev/shm", W_OK) == 0)
        setenv("TMPDIR", "/dev/shm", 1);
    svc_env_init(&env);
    pacino_a = svc_src(PACINO_A);
    pacino_b = svc_src(PACINO_B);
    greenspan_a = svc_src(GREENSPAN_A);
    greenspan_b = svc_src(GREENSPAN_B);
    svc = svc_open(&env, env.key, 0, 1, 0);
    fpay_service_set_clock(svc, svc_fake_clock, &fake_now);
    spy_install(svc);
    fpay_request req = {.terminal_id = "t1", .id_kind = FPAY_ID_PHONE, .account = PHONE_A};
    fpay_service_result r;
    cr_assert_eq(fpay_service_enroll(svc, &req, &pacino_a, 1, &r), FPAY_OK, "%s", r.message);
    cr_assert_eq(r.decision, FPAY_APPROVE, "enroll A: %s", r.message);
}

static void teardown(void)
{
    if (svc) {
        fpay_service_close(svc);
        svc = NULL;
    }
    svc_src_free(&pacino_a);
    svc_src_free(&pacino_b);
    svc_src_free(&greenspan_a);
    svc_src_free(&greenspan_b);
    svc_env_fini(&env);
}

TestSuite(svc_faults, .init = setup, .fini = teardown, .timeout = 1800);

/* ---------------------------------------------------------- helpers */

static fpay_status verify(const char *phone, const fpay_capture_source *src,
                          fpay_service_result *r)
{
    fpay_request req = {.terminal_id = "t1", .id_kind = FPAY_ID_PHONE, .account = phone};
    return fpay_service_verify(svc, &req, src, r);
}

static fpay_status enroll(const char *phone, const fpay_capture_source *src,
                          fpay_service_result *r)
{
    fpay_request req = {.terminal_id = "t1", .id_kind = FPAY_ID_PHONE, .account = phone};
    return fpay_service_enroll(svc, &req, src, 1, r);
}

static void account_hash(const char *phone, uint8_t h[FPAY_HASH_BYTES])
{
    char norm[FPAY_ACCOUNT_ID_MAX];
    cr_assert_eq(fpay_account_id_normalize(FPAY_ID_PHONE, phone, "86", norm, sizeof norm,
                                           NULL, 0),
                 FPAY_OK);
    fpay_account_hash(fpay_service_keys(svc), FPAY_ID_PHONE, norm, h);
}

static fpay_counters counters_of(const char *phone)
{
    uint8_t h[FPAY_HASH_BYTES];
    account_hash(phone, h);
    fpay_counters c;
    char err[256] = "";
    fpay_store *st = fpay_service_store(svc);
    cr_assert_eq(st->ops->get_counters(st, h, &c, err, sizeof err), FPAY_OK, "%s", err);
    return c;
}

/* 1 when the account has a template, 0 when not. */
static int has_template(const char *phone)
{
    uint8_t h[FPAY_HASH_BYTES];
    account_hash(phone, h);
    fpay_account_row row;
    char err[256] = "";
    fpay_store *st = fpay_service_store(svc);
    fpay_status s = st->ops->get_account(st, h, &row, err, sizeof err);
    cr_assert(s == FPAY_OK || s == FPAY_NOT_FOUND, "get_account: %s", err);
    if (s == FPAY_OK)
        fpay_account_row_clear(&row);
    return s == FPAY_OK;
}

static int capture_seen(const fpay_capture_source *src)
{
    uint8_t h[FPAY_HASH_BYTES];
    fpay_secret_hash(fpay_service_keys(svc), src->data, src->size, h);
    int seen = -1;
    char err[256] = "";
    fpay_store *st = fpay_service_store(svc);
    cr_assert_eq(st->ops->capture_seen(st, h, &seen, err, sizeof err), FPAY_OK, "%s", err);
    return seen;
}

static int keep_last(const fpay_audit_record *rec, void *ctx)
{
    *(fpay_audit_record *)ctx = *rec;
    return 0;
}

/* Integrity, account count, and the audit chain: its length and last
 * record. */
static long consistent(const char *tag, int n, long accounts, fpay_audit_record *last)
{
    char err[256] = "";
    fpay_store *st = fpay_service_store(svc);
    long na = -1, nr = -1;
    cr_assert_eq(st->ops->check(st, &na, &nr, err, sizeof err), FPAY_OK,
                 "%s N=%d: integrity: %s", tag, n, err);
    cr_assert_eq(na, accounts, "%s N=%d: %ld accounts, want %ld", tag, n, na, accounts);
    long entries = -1, bad = -1;
    cr_assert_eq(fpay_service_audit_verify(svc, &entries, &bad, err, sizeof err), FPAY_OK,
                 "%s N=%d: audit chain: %s (first bad %ld)", tag, n, err, bad);
    cr_assert_eq(bad, 0);
    cr_assert_eq(entries, nr, "%s N=%d: audit walk %ld, count %ld", tag, n, entries, nr);
    memset(last, 0, sizeof *last);
    cr_assert_eq(st->ops->audit_each(st, keep_last, last, err, sizeof err), FPAY_OK, "%s",
                 err);
    return entries;
}

/* --------------------------------------------------------- the loops */

typedef enum op_kind { VERIFY_RIGHT, VERIFY_WRONG, ENROLL_B } op_kind;
static const char *const op_name[] = {"verify right", "verify wrong", "enroll"};

/* What a loop saw, for the summary line. */
typedef struct loop_stats {
    int failed;     /* runs where a store call failed (DECLINE each) */
    int absorbed;   /* runs where the fault fired but no store call failed */
    int uncounted;  /* wrong face compared, then a store failure: the
                       failure counter did not move (the answer, DECLINE
                       INTERNAL_ERROR, says nothing of the match) */
    /* The call failed, yet its transaction is there, whole: the write's
     * COMMIT failed at the WAL sync after the frames were written, and
     * SQLite's WAL recovery found them at the next open. The record then
     * says what the call would have answered, and the state agrees. */
    int kept;
} loop_stats;

/* The answer without a fault. */
static void assert_clean(op_kind k, const fpay_service_result *r, fpay_status s, int n,
                         const char *when)
{
    fpay_decision want = k == VERIFY_WRONG ? FPAY_DECLINE : FPAY_APPROVE;
    fpay_reason why = k == VERIFY_WRONG ? FPAY_REASON_NO_MATCH : FPAY_REASON_NONE;
    cr_assert_eq(s, FPAY_OK, "%s N=%d %s: status %d (%s)", op_name[k], n, when, (int)s,
                 r->message);
    cr_assert(r->decision == want && r->reason == why, "%s N=%d %s: %s %s (%s)", op_name[k],
              n, when, fpay_decision_name(r->decision), fpay_reason_name(r->reason),
              r->message);
}

/* N goes 1, 1 + step, ...: every value by default. The allocation loops
 * take some 15 times longer under AddressSanitizer (the face pipeline
 * mostly), so there they step by 7 unless FPAY_FAULTS_STEP says otherwise. */
#if defined(__SANITIZE_ADDRESS__)
#define FPAY_FAULTS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FPAY_FAULTS_ASAN 1
#endif
#endif
static int n_step(const fi_fault *f)
{
    const char *e = getenv("FPAY_FAULTS_STEP");
    if (e && atoi(e) > 0)
        return atoi(e);
#ifdef FPAY_FAULTS_ASAN
    return f == &fi_mem_fault ? 7 : 1;
#else
    (void)f;
    return 1;
#endif
}

/* Returns the first N at which the call ran without meeting the fault. */
static int fault_loop(op_kind k, fi_fault *f, int persistent, const char *what)
{
    const int step = n_step(f);
    loop_stats ls = {0};
    fpay_audit_record last;
    long accounts = 1;
    long entries = consistent(op_name[k], 0, accounts, &last);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int n = 1; n <= N_MAX; n += step) {
        /* Past the terminal window: earlier declines do not throttle. */
        fake_now += 400;
        char phone_b[32];
        snprintf(phone_b, sizeof phone_b, "+86139%08d", n);
        int failures_before = counters_of(PHONE_A).consecutive_failures;
        cr_assert_eq(failures_before, 0);

        fpay_service_result r;
        fault_on(f, n, persistent);
        fpay_status s = k == VERIFY_RIGHT   ? verify(PHONE_A, &pacino_b, &r)
                        : k == VERIFY_WRONG ? verify(PHONE_A, &greenspan_a, &r)
                                            : enroll(phone_b, &greenspan_a, &r);
        int fired = fault_off(f);
        long sfail = spy.failures;

        /* ---- the answer */
        cr_assert(fired || sfail == 0, "%s N=%d: %s failed without a fault: %s", op_name[k],
                  n, spy.last_op, spy.last_err);
        if (k == VERIFY_WRONG)
            cr_assert_eq(r.decision, FPAY_DECLINE, "%s N=%d: the wrong face APPROVED",
                         op_name[k], n);
        if (sfail > 0) {
            ls.failed++;
            cr_assert_eq(r.decision, FPAY_DECLINE,
                         "%s N=%d: APPROVE although %s failed (%s)", op_name[k], n,
                         spy.last_op, spy.last_err);
            cr_assert_eq(r.reason, FPAY_REASON_INTERNAL_ERROR,
                         "%s N=%d: reason %s after %s failed (%s)", op_name[k], n,
                         fpay_reason_name(r.reason), spy.last_op, spy.last_err);
            cr_assert_neq(s, FPAY_OK, "%s N=%d: status OK after %s failed", op_name[k], n,
                          spy.last_op);
            cr_assert(s == FPAY_IO_ERROR || s == FPAY_OUT_OF_MEMORY,
                      "%s N=%d: status %d after %s failed (%s)", op_name[k], n, (int)s,
                      spy.last_op, spy.last_err);
        } else {
            if (fired)
                ls.absorbed++;
            assert_clean(k, &r, s, n, fired ? "(fault absorbed by SQLite)" : "");
        }
        cr_assert(r.reason != FPAY_REASON_LOCKED && r.reason != FPAY_REASON_THROTTLED,
                  "%s N=%d: %s: a fault counted as a face failure", op_name[k], n,
                  fpay_reason_name(r.reason));

        if (getenv("FPAY_FAULTS_TRACE"))
            printf("  %s %s %s N=%d fired=%d calls=%ld store calls=%ld failed=%ld "
                   "(%s: %s) -> %d %s %s\n",
                   op_name[k], what, persistent ? "persistent" : "transient", n, fired,
                   f->calls, spy.calls, sfail, spy.last_op, spy.last_err, (int)s,
                   fpay_decision_name(r.decision), fpay_reason_name(r.reason));

        /* ---- the database, the audit chain */
        int b_there = k == ENROLL_B ? has_template(phone_b) : 0;
        long now_entries = consistent(op_name[k], n, accounts + b_there, &last);
        cr_assert(now_entries == entries || now_entries == entries + 1,
                  "%s N=%d: %ld audit records after %ld", op_name[k], n, now_entries,
                  entries);
        if (r.decision == FPAY_APPROVE || sfail == 0)
            cr_assert_eq(now_entries, entries + 1, "%s N=%d: %s without an audit record",
                         op_name[k], n, fpay_decision_name(r.decision));
        /* A record that differs from the answer: the failed write kept. */
        int kept = 0;
        if (now_entries == entries + 1) {
            cr_assert_str_eq(last.op, k == ENROLL_B ? "enroll" : "verify");
            kept = strcmp(last.decision, fpay_decision_name(r.decision)) != 0 ||
                   strcmp(last.reason, fpay_reason_name(r.reason)) != 0;
            if (kept) {
                /* Only the record of a write that reported failure, and
                 * only what the call would have answered without it. */
                fpay_decision would = k == VERIFY_WRONG ? FPAY_DECLINE : FPAY_APPROVE;
                fpay_reason why = k == VERIFY_WRONG ? FPAY_REASON_NO_MATCH : FPAY_REASON_NONE;
                cr_assert(spy.audit_append_failed && r.decision == FPAY_DECLINE,
                          "%s N=%d: audit says %s %s, the call %s %s", op_name[k], n,
                          last.decision, last.reason, fpay_decision_name(r.decision),
                          fpay_reason_name(r.reason));
                cr_assert(strcmp(last.decision, fpay_decision_name(would)) == 0 &&
                              strcmp(last.reason, fpay_reason_name(why)) == 0,
                          "%s N=%d: a kept record says %s %s", op_name[k], n,
                          last.decision, last.reason);
                if (++ls.kept <= 3)
                    printf("  %s %s %s N=%d: the failed write (%s) was kept whole: "
                           "record %s %s, the call %s %s\n",
                           op_name[k], what, persistent ? "persistent" : "transient", n,
                           spy.last_err, last.decision, last.reason,
                           fpay_decision_name(r.decision), fpay_reason_name(r.reason));
            }
        }
        const long entries_before_b = entries;
        entries = now_entries;

        /* ---- the account's counters: faults are not face failures */
        fpay_counters ca = counters_of(PHONE_A);
        cr_assert_eq(ca.locked, 0, "%s N=%d: account A locked", op_name[k], n);
        if (k == VERIFY_WRONG && (r.reason == FPAY_REASON_NO_MATCH || kept))
            cr_assert_eq(ca.consecutive_failures, failures_before + 1,
                         "%s N=%d: %s, yet %d failures after %d", op_name[k], n,
                         kept ? "a kept NO_MATCH record" : "NO_MATCH",
                         ca.consecutive_failures, failures_before);
        else if (k == VERIFY_WRONG) {
            /* Counters and the NO_MATCH record are one write: neither. */
            cr_assert_eq(ca.consecutive_failures, failures_before,
                         "%s N=%d: answered %s, no NO_MATCH record, yet the failure "
                         "counter moved", op_name[k], n, fpay_reason_name(r.reason));
            ls.uncounted += r.score > -2.0f;
        } else
            cr_assert_eq(ca.consecutive_failures, 0, "%s N=%d: %d failures counted",
                         op_name[k], n, ca.consecutive_failures);

        /* ---- enroll: wholly or not at all, and as answered */
        if (k == ENROLL_B) {
            int seen = capture_seen(&greenspan_a);
            cr_assert_eq(seen, b_there, "%s N=%d: half an enrollment: template %d, "
                         "capture hash %d", op_name[k], n, b_there, seen);
            fpay_service_result rb;
            cr_assert_eq(verify(phone_b, &greenspan_b, &rb), FPAY_OK, "%s", rb.message);
            cr_assert_eq(rb.decision, b_there ? FPAY_APPROVE : FPAY_DECLINE,
                         "%s N=%d: verify of B %s with the template %s", op_name[k], n,
                         fpay_decision_name(rb.decision), b_there ? "there" : "absent");
            entries++;
            if (r.decision == FPAY_APPROVE)
                cr_assert(b_there, "%s N=%d: APPROVE without a template", op_name[k], n);
            /* The template and the APPROVE record are one write. */
            int approve_rec = now_entries == entries_before_b + 1 &&
                              strcmp(last.decision, "APPROVE") == 0;
            cr_assert_eq(b_there, approve_rec,
                         "%s N=%d: template %s but %s (the call %s %s; %s: %s)",
                         op_name[k], n, b_there ? "stored" : "absent",
                         approve_rec ? "an APPROVE record" : "no APPROVE record",
                         fpay_decision_name(r.decision), fpay_reason_name(r.reason),
                         spy.last_op, spy.last_err);
            if (b_there && r.decision != FPAY_APPROVE)
                cr_assert(kept && spy.put_account_failed,
                          "%s N=%d: enrolled although DECLINE, not a kept write",
                          op_name[k], n);
            /* Erase B, so its photo may enroll again at N + 1. */
            if (b_there) {
                fpay_request req = {.id_kind = FPAY_ID_PHONE, .account = phone_b};
                cr_assert_eq(fpay_service_delete(svc, &req, &rb), FPAY_OK, "%s", rb.message);
                entries++;
                cr_assert_eq(capture_seen(&greenspan_a), 0);
            }
        }

        /* ---- the fault gone, the right face approves again (the enroll
         * loop's verify of B above already went through every store call
         * after the fault: A's every 10th run there, to save time) */
        if (k != ENROLL_B || n % 10 == 0 || !fired) {
            fpay_service_result ra;
            fpay_status sa = verify(PHONE_A, &pacino_b, &ra);
            assert_clean(VERIFY_RIGHT, &ra, sa, n, "after the fault");
            entries++;
        }

        if (!fired) {
            assert_clean(k, &r, s, n, "(fault not met)");
            clock_gettime(CLOCK_MONOTONIC, &t1);
            printf("service fault injection: %-12s %-6s %-10s first succeeded at N=%d "
                   "(%d runs DECLINE after a store failure, %d absorbed by SQLite",
                   op_name[k], what, persistent ? "persistent" : "transient", n, ls.failed,
                   ls.absorbed);
            if (k == VERIFY_WRONG)
                printf(", %d compared but uncounted", ls.uncounted);
            if (ls.kept)
                printf(", %d kept after a failed commit", ls.kept);
            if (step > 1)
                printf("; N in steps of %d", step);
            printf("; %.1f s)\n",
                   (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
            fflush(stdout);
            return n;
        }
    }
    cr_assert_fail("%s never completed within N=%d", op_name[k], N_MAX);
    return 0;
}

#define FAULT_TESTS(name, K)                                                  \
    Test(svc_faults, name##_io)                                               \
    {                                                                         \
        int a = fault_loop(K, &fi_io_fault, 0, "io");                         \
        int b = fault_loop(K, &fi_io_fault, 1, "io");                         \
        cr_expect(a > 1 && b > 1, "the fault was never met: N=%d/%d", a, b);  \
    }                                                                         \
    Test(svc_faults, name##_malloc)                                           \
    {                                                                         \
        int a = fault_loop(K, &fi_mem_fault, 0, "malloc");                    \
        int b = fault_loop(K, &fi_mem_fault, 1, "malloc");                    \
        cr_expect(a > 1 && b > 1, "the fault was never met: N=%d/%d", a, b);  \
    }

FAULT_TESTS(verify_right, VERIFY_RIGHT)
FAULT_TESTS(verify_wrong, VERIFY_WRONG)
FAULT_TESTS(enroll, ENROLL_B)

/* The harness must reach the service's store: a persistent fault from the
 * first I/O call (and from the first allocation) of a verify makes a store
 * call fail, and the right face is then declined. */
Test(svc_faults, harness_bites)
{
    fi_fault *faults[2] = {&fi_io_fault, &fi_mem_fault};
    for (int i = 0; i < 2; i++) {
        fpay_service_result r;
        fault_on(faults[i], 1, 1);
        fpay_status s = verify(PHONE_A, &pacino_b, &r);
        cr_expect(fault_off(faults[i]), "fault %d never fired", i);
        cr_expect_gt(spy.failures, 0, "fault %d failed no store call", i);
        cr_expect_neq(s, FPAY_OK);
        cr_expect_eq(r.decision, FPAY_DECLINE);
        cr_expect_eq(r.reason, FPAY_REASON_INTERNAL_ERROR, "%s", fpay_reason_name(r.reason));
        printf("harness: %s fault from call 1: status %d, %s %s (%s failed: %s)\n",
               i ? "malloc" : "io", (int)s, fpay_decision_name(r.decision),
               fpay_reason_name(r.reason), spy.last_op, spy.last_err);
    }
    fpay_service_result r;
    cr_assert_eq(verify(PHONE_A, &pacino_b, &r), FPAY_OK, "%s", r.message);
    cr_assert_eq(r.decision, FPAY_APPROVE, "%s", r.message);
}
