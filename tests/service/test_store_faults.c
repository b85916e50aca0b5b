/*
 * Fault injection, the SQLite way (sqlite.org/testing.html): fail the Nth
 * I/O call or the Nth allocation, for N = 1, 2, 3 ... until the operation
 * completes without meeting the fault, and after every run check that the
 * database is intact and the operation happened wholly or not at all.
 *
 * The faults come from fault_inject.c: a VFS shim over the default VFS
 * whose files fail xRead/xWrite/xSync/xTruncate once a countdown reaches
 * zero (registered as "faulty", not as the default: the store here opens
 * it by name), and SQLITE_CONFIG_MALLOC, which must be set before SQLite
 * initialises: hence its own executable, and the configuration at the
 * start of each test (Criterion runs each test in a fresh process).
 *
 * Each fault runs in two modes: transient (only the Nth call fails, as a
 * full disk that frees up) and persistent (every call from the Nth on
 * fails, as a disk that went away).
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "fault_inject.h"
#include "test_store_util.h"

#define OPS(st) ((st)->ops)
#define N_MAX 20000

/* Runs in every test's own process, before anything touches SQLite. */
static void setup(void) { fi_install(0); }

TestSuite(faults, .init = setup, .timeout = 1200);

/* ------------------------------------------------ the operations tested */

static fpay_keys K, K2;
#define N_ACCOUNTS 3
#define OLD_AUDIT 3

static void account_id(int i, char *id, size_t n) { snprintf(id, n, "+86137%08d", i); }

/* A store at its "before" state: N_ACCOUNTS rows sealed under K with seeds
 * 0.., OLD_AUDIT audit records. */
static void fill(fpay_store *st)
{
    char err[256] = "";
    for (int i = 0; i < N_ACCOUNTS; i++) {
        char id[32];
        account_id(i, id, sizeof id);
        fpay_account_row row;
        tsu_row(&K, id, (uint32_t)i, &row);
        cr_assert_eq(OPS(st)->put_account(st, &row, NULL, 0, err, sizeof err), FPAY_OK,
                     "%s", err);
        fpay_counters c = {.consecutive_failures = 2, .last_failure = 9};
        cr_assert_eq(OPS(st)->put_counters(st, row.account_hash, &c, err, sizeof err),
                     FPAY_OK);
        fpay_account_row_clear(&row);
    }
    for (int i = 0; i < OLD_AUDIT; i++) {
        fpay_audit_record rec;
        tsu_audit_record(&rec, "setup", i);
        cr_assert_eq(OPS(st)->audit_append(st, &K, &rec, err, sizeof err), FPAY_OK);
    }
}

/* The operation under test, and its check: `done` says whether the
 * operation's effect is visible; the check asserts it is all or nothing. */
typedef struct op {
    const char *name;
    fpay_status (*run)(fpay_store *st, char *err, size_t el);
    /* 1 when the effect is there, 0 when not; fails the test when half. */
    int (*state)(fpay_store *st);
    /* Runs on a closed store: opens it itself (cold cache, and the open
     * path under fault too). */
    int cold;
} op;

static char g_db[600];

static fpay_status run_put(fpay_store *st, char *err, size_t el)
{
    char id[32];
    account_id(0, id, sizeof id);
    fpay_account_row row;
    tsu_row(&K, id, 100, &row);
    uint8_t caps[3][FPAY_HASH_BYTES];
    for (int i = 0; i < 3; i++)
        fpay_secret_hash(&K, &i, sizeof i, caps[i]);
    fpay_status s = OPS(st)->put_account(st, &row, (const uint8_t(*)[32])caps, 3, err, el);
    fpay_account_row_clear(&row);
    return s;
}

static int state_put(fpay_store *st)
{
    char id[32], err[256] = "";
    account_id(0, id, sizeof id);
    uint8_t h[32];
    fpay_account_hash(&K, FPAY_ID_PHONE, id, h);
    fpay_account_row got;
    cr_assert_eq(OPS(st)->get_account(st, h, &got, err, sizeof err), FPAY_OK, "%s", err);
    int is_new = tsu_row_is(&K, &got, 100);
    int is_old = tsu_row_is(&K, &got, 0);
    fpay_account_row_clear(&got);
    cr_assert(is_new != is_old, "account 0 is neither wholly old nor wholly new");
    fpay_counters c;
    cr_assert_eq(OPS(st)->get_counters(st, h, &c, err, sizeof err), FPAY_OK, "%s", err);
    int seen_all = 1, seen_none = 1;
    for (int i = 0; i < 3; i++) {
        uint8_t cap[32];
        int seen = -1;
        fpay_secret_hash(&K, &i, sizeof i, cap);
        cr_assert_eq(OPS(st)->capture_seen(st, cap, &seen, err, sizeof err), FPAY_OK);
        seen_all &= seen == 1;
        seen_none &= seen == 0;
    }
    if (is_new) {
        cr_assert_eq(c.consecutive_failures, 0, "new template but counters not reset");
        cr_assert(seen_all, "new template without its capture hashes");
    } else {
        cr_assert_eq(c.consecutive_failures, 2, "old template but counters reset");
        cr_assert(seen_none, "old template with the new capture hashes");
    }
    return is_new;
}

/* Open (migrations, WAL setup, reads of a cold file) and put, all under
 * the fault. */
static fpay_status run_cold_put(fpay_store *unused, char *err, size_t el)
{
    (void)unused;
    fpay_store_options opt = {.path = g_db, .vfs = "faulty", .busy_timeout_ms = 1000};
    fpay_store *st = NULL;
    fpay_status s = fpay_store_sqlite_open(&opt, &st, err, el);
    if (s != FPAY_OK) {
        cr_assert_null(st);
        return s;
    }
    s = run_put(st, err, el);
    OPS(st)->close(st);
    return s;
}

static fpay_status run_audit(fpay_store *st, char *err, size_t el)
{
    fpay_audit_record rec;
    tsu_audit_record(&rec, "under-fault", 99);
    return OPS(st)->audit_append(st, &K, &rec, err, el);
}

static int state_audit(fpay_store *st)
{
    long n, bad;
    tsu_audit_verify(st, &K, &n, &bad);
    cr_assert_eq(bad, 0, "audit chain broken at %ld", bad);
    cr_assert(n == OLD_AUDIT || n == OLD_AUDIT + 1, "%ld audit records", n);
    return n == OLD_AUDIT + 1;
}

struct rekey_ctx {
    const fpay_keys *old, *new_;
};

static int rekey_fn(fpay_account_row *row, void *vctx)
{
    struct rekey_ctx *c = vctx;
    return tsu_rekey_row(c->old, c->new_, row);
}

static fpay_status run_rekey(fpay_store *st, char *err, size_t el)
{
    struct rekey_ctx ctx = {.old = &K, .new_ = &K2};
    return OPS(st)->rekey_all(st, rekey_fn, &ctx, err, el);
}

static int state_rekey(fpay_store *st)
{
    char err[256] = "";
    int old = 0, rotated = 0;
    for (int i = 0; i < N_ACCOUNTS; i++) {
        char id[32];
        account_id(i, id, sizeof id);
        uint8_t oh[32], nh[32];
        fpay_account_hash(&K, FPAY_ID_PHONE, id, oh);
        fpay_secret_hash(&K2, oh, 32, nh);
        fpay_account_row got;
        fpay_status s = OPS(st)->get_account(st, oh, &got, err, sizeof err);
        if (s == FPAY_OK) {
            cr_assert(tsu_row_is(&K, &got, (uint32_t)i), "old row %d does not open", i);
            old++;
            fpay_account_row_clear(&got);
        } else {
            cr_assert_eq(s, FPAY_NOT_FOUND, "%s", err);
        }
        s = OPS(st)->get_account(st, nh, &got, err, sizeof err);
        if (s == FPAY_OK) {
            cr_assert(tsu_row_is(&K2, &got, (uint32_t)i), "rotated row %d does not open", i);
            rotated++;
            fpay_account_row_clear(&got);
            fpay_counters c;
            cr_assert_eq(OPS(st)->get_counters(st, nh, &c, err, sizeof err), FPAY_OK);
            cr_assert_eq(c.consecutive_failures, 2, "counters did not move with row %d", i);
        } else {
            cr_assert_eq(s, FPAY_NOT_FOUND, "%s", err);
        }
    }
    cr_assert((old == N_ACCOUNTS && rotated == 0) || (old == 0 && rotated == N_ACCOUNTS),
              "half-rotated store: %d old, %d rotated", old, rotated);
    return rotated == N_ACCOUNTS;
}

/* -------------------------------------------------------- the harness */

static void remove_db(const char *db)
{
    char p[700];
    unlink(db);
    snprintf(p, sizeof p, "%s-wal", db);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", db);
    unlink(p);
    snprintf(p, sizeof p, "%s-journal", db);
    unlink(p);
}

static void verify_store(fpay_store *st, const op *o, int must_be_done, int *done)
{
    char err[256] = "";
    long na = -1, nr = -1;
    cr_assert_eq(OPS(st)->check(st, &na, &nr, err, sizeof err), FPAY_OK,
                 "%s: integrity: %s", o->name, err);
    cr_assert_eq(na, N_ACCOUNTS);
    int d = o->state(st);
    if (must_be_done)
        cr_assert(d, "%s returned OK but its effect is missing", o->name);
    *done = d;
}

/* Returns the first N at which the operation ran to completion without
 * meeting the fault. */
static int fault_loop(const op *o, fi_fault *f, int persistent, const char *what)
{
    const char *shm = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : NULL;
    if (shm)
        setenv("TMPDIR", shm, 1); /* hundreds of fsyncs per run */
    char *dir = tsu_mkdtemp();
    char *db = g_db;
    tsu_join(g_db, sizeof g_db, dir, "faults.db");
    int failures_seen = 0;
    for (int n = 1; n <= N_MAX; n++) {
        remove_db(db);
        fpay_store *st = tsu_open(db, "faulty");
        fill(st);

        char err[256] = "";
        if (o->cold) {
            OPS(st)->close(st);
            st = NULL;
        }
        fi_arm(f, n, persistent);
        fpay_status s = o->run(st, err, sizeof err);
        int fired = fi_disarm(f);
        if (o->cold)
            st = tsu_open(db, "faulty");
        if (s != FPAY_OK) {
            failures_seen++;
            cr_assert(fired, "%s failed without a fault (N=%d): %s", o->name, n, err);
            cr_assert(err[0] != '\0', "%s: failure without a message (N=%d)", o->name, n);
            cr_assert(s == FPAY_IO_ERROR || s == FPAY_OUT_OF_MEMORY,
                      "%s N=%d: status %d (%s)", o->name, n, (int)s, err);
        }
        /* The same handle recovers once the fault is gone... */
        int done_here = 0, done_after = 0;
        verify_store(st, o, s == FPAY_OK, &done_here);
        OPS(st)->close(st);
        /* ...and a fresh open (recovery from the WAL) agrees with it. */
        st = tsu_open(db, NULL);
        verify_store(st, o, s == FPAY_OK, &done_after);
        cr_assert_eq(done_here, done_after, "%s N=%d: reopen changed the outcome", o->name,
                     n);
        OPS(st)->close(st);

        if (s == FPAY_OK && !fired) {
            printf("fault injection: %-13s %-6s %-10s first succeeded at N=%d "
                   "(%d failed runs before)\n",
                   o->name, what, persistent ? "persistent" : "transient", n,
                   failures_seen);
            fflush(stdout);
            tsu_rmdir(dir);
            return n;
        }
    }
    tsu_rmdir(dir);
    cr_assert_fail("%s never completed within N=%d", o->name, N_MAX);
    return 0;
}

static const op OP_PUT = {"put_account", run_put, state_put, 0};
static const op OP_COLD_PUT = {"open+put", run_cold_put, state_put, 1};
static const op OP_AUDIT = {"audit_append", run_audit, state_audit, 0};
static const op OP_REKEY = {"rekey_all", run_rekey, state_rekey, 0};

static void keys(void)
{
    tsu_keys(&K, 0);
    tsu_keys(&K2, 1);
}

#define FAULT_TESTS(opname, OPV)                                              \
    Test(faults, opname##_io)                                                 \
    {                                                                         \
        keys();                                                               \
        int a = fault_loop(&OPV, &fi_io_fault, 0, "io");                      \
        int b = fault_loop(&OPV, &fi_io_fault, 1, "io");                      \
        cr_expect(a > 1 && b > 1, "the fault was never met: N=%d/%d", a, b);  \
    }                                                                         \
    Test(faults, opname##_malloc)                                             \
    {                                                                         \
        keys();                                                               \
        int a = fault_loop(&OPV, &fi_mem_fault, 0, "malloc");                 \
        int b = fault_loop(&OPV, &fi_mem_fault, 1, "malloc");                 \
        cr_expect(a > 1 && b > 1, "the fault was never met: N=%d/%d", a, b);  \
    }

FAULT_TESTS(put_account, OP_PUT)
FAULT_TESTS(open_put_account, OP_COLD_PUT)
FAULT_TESTS(audit_append, OP_AUDIT)
FAULT_TESTS(rekey_all, OP_REKEY)

/* The harness itself must be able to fail: a fault armed at the first I/O
 * call of a write has to make it fail. */
Test(faults, harness_bites)
{
    keys();
    char *dir = tsu_mkdtemp();
    char db[600], err[256] = "";
    tsu_join(db, sizeof db, dir, "bite.db");
    fpay_store *st = tsu_open(db, "faulty");
    fill(st);
    fi_arm(&fi_io_fault, 1, 1);
    fpay_status s = run_audit(st, err, sizeof err);
    cr_expect(fi_disarm(&fi_io_fault));
    cr_expect_eq(s, FPAY_IO_ERROR, "%s", err);
    cr_expect(strstr(err, "I/O") != NULL || strstr(err, "disk") != NULL, "%s", err);
    fi_arm(&fi_mem_fault, 1, 1);
    s = run_audit(st, err, sizeof err);
    cr_expect(fi_disarm(&fi_mem_fault));
    cr_expect_neq(s, FPAY_OK);
    OPS(st)->close(st);
    tsu_rmdir(dir);
}
