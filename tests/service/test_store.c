/* The SQLite store: every operation, hostile rows and files, schema
 * versions, key rotation, and many threads on one file. */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "test_store_util.h"

#include <sqlite3.h>

#define OPS(st) ((st)->ops)

static char *dir;
static char db[600];
static fpay_keys K;

static void setup(void)
{
    dir = tsu_mkdtemp();
    tsu_join(db, sizeof db, dir, "facepay.db");
    tsu_keys(&K, 0);
}

static void teardown(void)
{
    tsu_rmdir(dir);
    dir = NULL;
}

TestSuite(store, .init = setup, .fini = teardown);

Test(store, account_round_trip)
{
    fpay_store *st = tsu_open(db, NULL);
    char err[256] = "";
    fpay_account_row row, got;
    tsu_row(&K, "+8613800138000", 1, &row);
    cr_expect_eq(OPS(st)->get_account(st, row.account_hash, &got, err, sizeof err),
                 FPAY_NOT_FOUND);
    cr_expect_null(got.blob);

    uint8_t caps[2][FPAY_HASH_BYTES];
    fpay_secret_hash(&K, "capture-1", 9, caps[0]);
    fpay_secret_hash(&K, "capture-2", 9, caps[1]);
    fpay_counters cn = {.consecutive_failures = 3, .last_failure = 99};
    cr_assert_eq(OPS(st)->put_counters(st, row.account_hash, &cn, err, sizeof err), FPAY_OK);
    cr_assert_eq(OPS(st)->put_account(st, &row, (const uint8_t(*)[32])caps, 2, err,
                                      sizeof err),
                 FPAY_OK, "%s", err);
    cr_assert_eq(OPS(st)->get_account(st, row.account_hash, &got, err, sizeof err), FPAY_OK,
                 "%s", err);
    cr_expect(tsu_row_is(&K, &got, 1));
    cr_expect_str_eq(got.key_id, K.key_id);
    cr_expect_eq(got.template_version, FPAY_TEMPLATE_VERSION);
    fpay_account_row_clear(&got);
    cr_assert_eq(OPS(st)->get_counters(st, row.account_hash, &cn, err, sizeof err), FPAY_OK);
    cr_expect_eq(cn.consecutive_failures, 0, "enrollment resets the counters");

    int seen = 0;
    cr_assert_eq(OPS(st)->capture_seen(st, caps[1], &seen, err, sizeof err), FPAY_OK);
    cr_expect_eq(seen, 1);
    uint8_t other[32];
    fpay_secret_hash(&K, "capture-3", 9, other);
    cr_assert_eq(OPS(st)->capture_seen(st, other, &seen, err, sizeof err), FPAY_OK);
    cr_expect_eq(seen, 0);

    /* Re-enrollment replaces the template and keeps the old captures. */
    fpay_account_row row2;
    tsu_row(&K, "+8613800138000", 2, &row2);
    cr_assert_eq(OPS(st)->put_account(st, &row2, NULL, 0, err, sizeof err), FPAY_OK);
    cr_assert_eq(OPS(st)->get_account(st, row.account_hash, &got, err, sizeof err), FPAY_OK);
    cr_expect(tsu_row_is(&K, &got, 2));
    cr_expect(!tsu_row_is(&K, &got, 1));
    fpay_account_row_clear(&got);
    cr_assert_eq(OPS(st)->capture_seen(st, caps[0], &seen, err, sizeof err), FPAY_OK);
    cr_expect_eq(seen, 1);

    long na = -1, nr = -1;
    cr_assert_eq(OPS(st)->check(st, &na, &nr, err, sizeof err), FPAY_OK, "%s", err);
    cr_expect_eq(na, 1);
    cr_expect_eq(nr, 0);

    int existed = -1;
    cn.consecutive_failures = 2;
    cr_assert_eq(OPS(st)->put_counters(st, row.account_hash, &cn, err, sizeof err), FPAY_OK);
    cr_assert_eq(OPS(st)->delete_account(st, row.account_hash, &existed, err, sizeof err),
                 FPAY_OK);
    cr_expect_eq(existed, 1);
    cr_expect_eq(OPS(st)->get_account(st, row.account_hash, &got, err, sizeof err),
                 FPAY_NOT_FOUND);
    cr_assert_eq(OPS(st)->get_counters(st, row.account_hash, &cn, err, sizeof err), FPAY_OK);
    cr_expect_eq(cn.consecutive_failures, 0, "counters erased");
    cr_assert_eq(OPS(st)->capture_seen(st, caps[0], &seen, err, sizeof err), FPAY_OK);
    cr_expect_eq(seen, 0, "capture hashes erased");
    cr_assert_eq(OPS(st)->delete_account(st, row.account_hash, &existed, err, sizeof err),
                 FPAY_OK);
    cr_expect_eq(existed, 0);
    cr_assert_eq(OPS(st)->check(st, &na, &nr, err, sizeof err), FPAY_OK, "%s", err);
    cr_expect_eq(na, 0);

    /* The store survives a reopen. */
    cr_assert_eq(OPS(st)->put_account(st, &row, NULL, 0, err, sizeof err), FPAY_OK);
    OPS(st)->close(st);
    st = tsu_open(db, NULL);
    cr_assert_eq(OPS(st)->get_account(st, row.account_hash, &got, err, sizeof err), FPAY_OK);
    cr_expect(tsu_row_is(&K, &got, 1));
    fpay_account_row_clear(&got);
    fpay_account_row_clear(&row);
    fpay_account_row_clear(&row2);
    OPS(st)->close(st);
}

Test(store, bad_arguments)
{
    fpay_store *st = tsu_open(db, NULL);
    char err[256];
    fpay_account_row row;
    tsu_row(&K, "+8613800138000", 1, &row);
    fpay_account_row bad = row;
    bad.model_sha256[0] = 'Z';
    cr_expect_eq(OPS(st)->put_account(st, &bad, NULL, 0, err, sizeof err),
                 FPAY_INVALID_ARGUMENT);
    bad = row;
    bad.blob_len = 0;
    cr_expect_eq(OPS(st)->put_account(st, &bad, NULL, 0, err, sizeof err),
                 FPAY_INVALID_ARGUMENT);
    cr_expect_eq(OPS(st)->put_account(st, &row, NULL, 3, err, sizeof err),
                 FPAY_INVALID_ARGUMENT);
    cr_expect_eq(OPS(st)->put_account(st, NULL, NULL, 0, err, sizeof err),
                 FPAY_INVALID_ARGUMENT);
    char longname[100];
    memset(longname, 't', 99);
    longname[99] = '\0';
    cr_expect_eq(OPS(st)->terminal_failure_add(st, longname, 1, err, sizeof err),
                 FPAY_INVALID_ARGUMENT);
    cr_expect_eq(OPS(st)->setting_put(st, "", "x", err, sizeof err), FPAY_INVALID_ARGUMENT);
    fpay_audit_record rec;
    tsu_audit_record(&rec, "t", 1);
    memset(rec.op, 'x', sizeof rec.op); /* unterminated */
    cr_expect_eq(OPS(st)->audit_append(st, &K, &rec, err, sizeof err),
                 FPAY_INVALID_ARGUMENT);
    long na, nr;
    cr_assert_eq(OPS(st)->check(st, &na, &nr, err, sizeof err), FPAY_OK);
    cr_expect_eq(na + nr, 0, "nothing written");
    fpay_account_row_clear(&row);
    OPS(st)->close(st);

    fpay_store_options opt = {.path = NULL};
    fpay_store *none = (fpay_store *)1;
    cr_expect_eq(fpay_store_sqlite_open(&opt, &none, err, sizeof err),
                 FPAY_INVALID_ARGUMENT);
    cr_expect_null(none);
    opt.path = db;
    opt.vfs = "no-such-vfs";
    cr_expect_eq(fpay_store_sqlite_open(&opt, &none, err, sizeof err),
                 FPAY_INVALID_ARGUMENT);
}

/* write_batch: a template, its counters' reset, a terminal failure and an
 * audit record in one transaction; a malformed part writes nothing at all;
 * an erasure with its record says whether there was a template. */
Test(store, write_batch_all_or_nothing)
{
    fpay_store *st = tsu_open(db, NULL);
    char err[256] = "";
    long na = -1, nr = -1;
    fpay_account_row row;
    tsu_row(&K, "+8613800138000", 1, &row);
    fpay_counters cn = {.consecutive_failures = 3, .last_failure = 7};
    cr_assert_eq(OPS(st)->put_counters(st, row.account_hash, &cn, err, sizeof err), FPAY_OK);

    fpay_store_batch empty;
    memset(&empty, 0, sizeof empty);
    cr_expect_eq(OPS(st)->write_batch(st, &empty, err, sizeof err), FPAY_INVALID_ARGUMENT);
    cr_expect_eq(OPS(st)->write_batch(st, NULL, err, sizeof err), FPAY_INVALID_ARGUMENT);

    /* A good template with a malformed record: nothing of it is written. */
    uint8_t cap[1][FPAY_HASH_BYTES];
    fpay_secret_hash(&K, "capture-b", 9, cap[0]);
    fpay_audit_record rec;
    tsu_audit_record(&rec, "batch", 1);
    memset(rec.reason, 'x', sizeof rec.reason); /* unterminated */
    fpay_store_batch b = {.account = &row, .captures = (const uint8_t(*)[32])cap,
                          .n_captures = 1, .failure_terminal = "till-9",
                          .failure_at = 100, .audit = &rec, .keys = &K};
    cr_expect_eq(OPS(st)->write_batch(st, &b, err, sizeof err), FPAY_INVALID_ARGUMENT);
    /* A record without its keys is malformed too. */
    tsu_audit_record(&rec, "batch", 1);
    b.keys = NULL;
    cr_expect_eq(OPS(st)->write_batch(st, &b, err, sizeof err), FPAY_INVALID_ARGUMENT);
    /* Counters without their hash. */
    fpay_store_batch half = {.counters = &cn};
    cr_expect_eq(OPS(st)->write_batch(st, &half, err, sizeof err), FPAY_INVALID_ARGUMENT);
    cr_assert_eq(OPS(st)->check(st, &na, &nr, err, sizeof err), FPAY_OK, "%s", err);
    cr_expect_eq(na + nr, 0, "a refused batch wrote something");
    fpay_counters got;
    cr_assert_eq(OPS(st)->get_counters(st, row.account_hash, &got, err, sizeof err), FPAY_OK);
    cr_expect_eq(got.consecutive_failures, 3);

    /* Whole: every part lands. */
    b.keys = &K;
    cr_assert_eq(OPS(st)->write_batch(st, &b, err, sizeof err), FPAY_OK, "%s", err);
    cr_expect_eq(rec.seq, 1);
    cr_assert_eq(OPS(st)->check(st, &na, &nr, err, sizeof err), FPAY_OK, "%s", err);
    cr_expect_eq(na, 1);
    cr_expect_eq(nr, 1);
    cr_assert_eq(OPS(st)->get_counters(st, row.account_hash, &got, err, sizeof err), FPAY_OK);
    cr_expect_eq(got.consecutive_failures, 0, "the template's write resets the counters");
    int seen = 0, n = 0;
    cr_assert_eq(OPS(st)->capture_seen(st, cap[0], &seen, err, sizeof err), FPAY_OK);
    cr_expect_eq(seen, 1);
    cr_assert_eq(OPS(st)->terminal_failure_count(st, "till-9", 0, &n, err, sizeof err),
                 FPAY_OK);
    cr_expect_eq(n, 1);

    /* Counters and a record; then an erasure and its record. */
    fpay_audit_record r2;
    tsu_audit_record(&r2, "batch", 2);
    fpay_store_batch c2 = {.counters_hash = row.account_hash, .counters = &cn,
                           .audit = &r2, .keys = &K};
    cr_assert_eq(OPS(st)->write_batch(st, &c2, err, sizeof err), FPAY_OK, "%s", err);
    cr_expect_eq(r2.seq, 2);
    cr_assert_eq(OPS(st)->get_counters(st, row.account_hash, &got, err, sizeof err), FPAY_OK);
    cr_expect_eq(got.consecutive_failures, 3);
    fpay_audit_record r3;
    tsu_audit_record(&r3, "batch", 3);
    fpay_store_batch d = {.delete_hash = row.account_hash, .audit = &r3, .keys = &K};
    cr_assert_eq(OPS(st)->write_batch(st, &d, err, sizeof err), FPAY_OK, "%s", err);
    cr_expect_eq(d.existed, 1);
    cr_assert_eq(OPS(st)->write_batch(st, &d, err, sizeof err), FPAY_OK, "%s", err);
    cr_expect_eq(d.existed, 0);
    cr_assert_eq(OPS(st)->check(st, &na, &nr, err, sizeof err), FPAY_OK, "%s", err);
    cr_expect_eq(na, 0);
    cr_expect_eq(nr, 4);
    cr_assert_eq(OPS(st)->capture_seen(st, cap[0], &seen, err, sizeof err), FPAY_OK);
    cr_expect_eq(seen, 0);
    fpay_account_row_clear(&row);
    OPS(st)->close(st);
}

Test(store, counters_settings_terminals)
{
    fpay_store *st = tsu_open(db, NULL);
    char err[256] = "";
    uint8_t h[32];
    fpay_account_hash(&K, FPAY_ID_PHONE, "+15550001111", h);
    fpay_counters c = {.consecutive_failures = 7, .last_failure = 12345, .locked = 1};
    cr_assert_eq(OPS(st)->put_counters(st, h, &c, err, sizeof err), FPAY_OK, "%s", err);
    fpay_counters got = {0};
    cr_assert_eq(OPS(st)->get_counters(st, h, &got, err, sizeof err), FPAY_OK);
    cr_expect_eq(got.consecutive_failures, 7);
    cr_expect_eq(got.last_failure, 12345);
    cr_expect_eq(got.locked, 1);
    c = (fpay_counters){0};
    cr_assert_eq(OPS(st)->put_counters(st, h, &c, err, sizeof err), FPAY_OK);
    cr_assert_eq(OPS(st)->get_counters(st, h, &got, err, sizeof err), FPAY_OK);
    cr_expect_eq(got.consecutive_failures + got.locked + got.last_failure, 0);

    char v[32];
    cr_expect_eq(OPS(st)->setting_get(st, "threshold", v, sizeof v, err, sizeof err),
                 FPAY_NOT_FOUND);
    cr_assert_eq(OPS(st)->setting_put(st, "threshold", "0.4123", err, sizeof err), FPAY_OK);
    cr_assert_eq(OPS(st)->setting_put(st, "threshold", "0.5", err, sizeof err), FPAY_OK);
    cr_assert_eq(OPS(st)->setting_get(st, "threshold", v, sizeof v, err, sizeof err),
                 FPAY_OK);
    cr_expect_str_eq(v, "0.5");
    cr_expect_eq(OPS(st)->setting_get(st, "threshold", v, 3, err, sizeof err),
                 FPAY_LIMIT_EXCEEDED);

    uint8_t kh[32], kg[32];
    fpay_secret_hash(&K, "api-key", 7, kh);
    cr_expect_eq(OPS(st)->terminal_get(st, "till-1", kg, err, sizeof err), FPAY_NOT_FOUND);
    cr_assert_eq(OPS(st)->terminal_put(st, "till-1", kh, err, sizeof err), FPAY_OK);
    cr_assert_eq(OPS(st)->terminal_get(st, "till-1", kg, err, sizeof err), FPAY_OK);
    cr_expect(memcmp(kh, kg, 32) == 0);

    int n = -1;
    for (int t = 0; t < 5; t++)
        cr_assert_eq(OPS(st)->terminal_failure_add(st, "till-1", 1000 + t * 100, err,
                                                   sizeof err),
                     FPAY_OK);
    cr_assert_eq(OPS(st)->terminal_failure_add(st, "till-2", 1400, err, sizeof err), FPAY_OK);
    cr_assert_eq(OPS(st)->terminal_failure_count(st, "till-1", 1200, &n, err, sizeof err),
                 FPAY_OK);
    cr_expect_eq(n, 3, "failures at 1200, 1300, 1400");
    cr_assert_eq(OPS(st)->terminal_failure_count(st, "till-1", 0, &n, err, sizeof err),
                 FPAY_OK);
    cr_expect_eq(n, 5);
    /* A day later the old rows are pruned. */
    cr_assert_eq(OPS(st)->terminal_failure_add(st, "till-1", 1000 + 86400 + 150, err,
                                               sizeof err),
                 FPAY_OK);
    cr_assert_eq(OPS(st)->terminal_failure_count(st, "till-1", 0, &n, err, sizeof err),
                 FPAY_OK);
    cr_expect_eq(n, 4, "two rows older than a day were pruned");
    OPS(st)->close(st);
}

struct pick {
    int64_t seq;
    fpay_audit_record rec;
};

static int pick_fn(const fpay_audit_record *rec, void *ctx)
{
    struct pick *p = ctx;
    if (rec->seq != p->seq)
        return 0;
    p->rec = *rec;
    return 1; /* stop: also tests that audit_each stops */
}

Test(store, audit_chain_detects_tampering)
{
    fpay_store *st = tsu_open(db, NULL);
    char err[256] = "";
    for (int i = 0; i < 10; i++) {
        fpay_audit_record rec;
        tsu_audit_record(&rec, "till-1", i);
        cr_assert_eq(OPS(st)->audit_append(st, &K, &rec, err, sizeof err), FPAY_OK, "%s",
                     err);
        cr_expect_eq(rec.seq, i + 1);
    }
    long n, bad;
    tsu_audit_verify(st, &K, &n, &bad);
    cr_expect_eq(n, 10);
    cr_expect_eq(bad, 0);
    fpay_keys other;
    tsu_keys(&other, 1);
    tsu_audit_verify(st, &other, &n, &bad);
    cr_expect_eq(bad, 1, "the chain is keyed");

    /* The store itself refuses to edit history... */
    cr_expect_neq(tsu_sql(db, "UPDATE audit SET reason = 'NONE' WHERE seq = 4"), 0);
    /* ...and the chain catches whoever edits the file around it. */
    cr_assert_eq(tsu_sql(db, "DROP TRIGGER audit_no_update;"
                             "UPDATE audit SET decision = CASE decision"
                             " WHEN 'APPROVE' THEN 'DECLINE' ELSE 'APPROVE' END"
                             " WHERE seq = 4"),
                 0);
    tsu_audit_verify(st, &K, &n, &bad);
    cr_expect_eq(n, 10);
    cr_expect_eq(bad, 4);
    /* Even a forger with the key who rehashes the edited record breaks
     * the link of the next one, unless they rewrite every later record. */
    struct pick p = {.seq = 4};
    cr_assert_eq(OPS(st)->audit_each(st, pick_fn, &p, err, sizeof err), FPAY_OK);
    uint8_t h[32];
    char hex[65], sql[256];
    fpay_audit_link(&K, &p.rec, h);
    fpay_hex(h, 32, hex);
    snprintf(sql, sizeof sql, "UPDATE audit SET hash = x'%s' WHERE seq = 4", hex);
    cr_assert_eq(tsu_sql(db, sql), 0);
    tsu_audit_verify(st, &K, &n, &bad);
    cr_expect_eq(bad, 5);
    OPS(st)->close(st);
}

Test(store, audit_delete_detected)
{
    fpay_store *st = tsu_open(db, NULL);
    char err[256] = "";
    for (int i = 0; i < 6; i++) {
        fpay_audit_record rec;
        tsu_audit_record(&rec, "till-1", i);
        cr_assert_eq(OPS(st)->audit_append(st, &K, &rec, err, sizeof err), FPAY_OK);
    }
    cr_assert_eq(tsu_sql(db, "DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE seq = 3"),
                 0);
    long n, bad;
    tsu_audit_verify(st, &K, &n, &bad);
    cr_expect_eq(n, 5);
    cr_expect_eq(bad, 3);
    OPS(st)->close(st);
}

/* ----------------------------------------------------------- rekeying */

struct rekey_ctx {
    const fpay_keys *old, *new_;
    int calls;
    int fail_at;   /* 1-based call that fails; 0 = none */
};

static int rekey_fn(fpay_account_row *row, void *vctx)
{
    struct rekey_ctx *c = vctx;
    c->calls++;
    if (c->fail_at && c->calls == c->fail_at)
        return -1;
    return tsu_rekey_row(c->old, c->new_, row);
}

static void rekey_fill(fpay_store *st, int n)
{
    char err[256] = "";
    for (int i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof id, "+86138%08d", i);
        fpay_account_row row;
        tsu_row(&K, id, (uint32_t)i, &row);
        uint8_t cap[1][FPAY_HASH_BYTES];
        fpay_secret_hash(&K, id, strlen(id), cap[0]);
        cr_assert_eq(OPS(st)->put_account(st, &row, (const uint8_t(*)[32])cap, 1, err,
                                          sizeof err),
                     FPAY_OK, "%s", err);
        fpay_counters c = {.consecutive_failures = i + 1, .last_failure = 5};
        cr_assert_eq(OPS(st)->put_counters(st, row.account_hash, &c, err, sizeof err),
                     FPAY_OK);
        fpay_account_row_clear(&row);
    }
}

Test(store, rekey_all_moves_everything)
{
    fpay_store *st = tsu_open(db, NULL);
    char err[256] = "";
    fpay_keys K2;
    tsu_keys(&K2, 1);
    rekey_fill(st, 20);
    uint8_t unknown[32];
    fpay_account_hash(&K, FPAY_ID_PHONE, "+19999999999", unknown);
    fpay_counters c = {.consecutive_failures = 4, .last_failure = 1};
    cr_assert_eq(OPS(st)->put_counters(st, unknown, &c, err, sizeof err), FPAY_OK);

    struct rekey_ctx ctx = {.old = &K, .new_ = &K2};
    cr_assert_eq(OPS(st)->rekey_all(st, rekey_fn, &ctx, err, sizeof err), FPAY_OK, "%s",
                 err);
    cr_expect_eq(ctx.calls, 20);
    for (int i = 0; i < 20; i++) {
        char id[32];
        snprintf(id, sizeof id, "+86138%08d", i);
        uint8_t oh[32], nh[32], cap[32];
        fpay_account_hash(&K, FPAY_ID_PHONE, id, oh);
        fpay_secret_hash(&K2, oh, 32, nh);
        fpay_account_row got;
        cr_expect_eq(OPS(st)->get_account(st, oh, &got, err, sizeof err), FPAY_NOT_FOUND);
        cr_assert_eq(OPS(st)->get_account(st, nh, &got, err, sizeof err), FPAY_OK);
        cr_expect(tsu_row_is(&K2, &got, (uint32_t)i));
        cr_expect_str_eq(got.key_id, K2.key_id);
        fpay_account_row_clear(&got);
        cr_assert_eq(OPS(st)->get_counters(st, nh, &c, err, sizeof err), FPAY_OK);
        cr_expect_eq(c.consecutive_failures, i + 1, "counters moved");
        int existed;
        fpay_secret_hash(&K, id, strlen(id), cap);
        cr_assert_eq(OPS(st)->delete_account(st, nh, &existed, err, sizeof err), FPAY_OK);
        int seen = 1;
        cr_assert_eq(OPS(st)->capture_seen(st, cap, &seen, err, sizeof err), FPAY_OK);
        cr_expect_eq(seen, 0, "capture moved with its account, deleted with it");
    }
    cr_assert_eq(OPS(st)->get_counters(st, unknown, &c, err, sizeof err), FPAY_OK);
    cr_expect_eq(c.consecutive_failures, 4, "counters of unknown accounts kept");
    OPS(st)->close(st);
}

Test(store, rekey_all_rolls_back)
{
    fpay_store *st = tsu_open(db, NULL);
    char err[256] = "";
    fpay_keys K2;
    tsu_keys(&K2, 1);
    rekey_fill(st, 10);
    struct rekey_ctx ctx = {.old = &K, .new_ = &K2, .fail_at = 6};
    cr_expect_neq(OPS(st)->rekey_all(st, rekey_fn, &ctx, err, sizeof err), FPAY_OK);
    cr_expect(err[0] != '\0');
    cr_expect_eq(ctx.calls, 6);
    long na, nr;
    cr_assert_eq(OPS(st)->check(st, &na, &nr, err, sizeof err), FPAY_OK, "%s", err);
    cr_expect_eq(na, 10);
    for (int i = 0; i < 10; i++) {
        char id[32];
        snprintf(id, sizeof id, "+86138%08d", i);
        uint8_t oh[32];
        fpay_account_hash(&K, FPAY_ID_PHONE, id, oh);
        fpay_account_row got;
        cr_assert_eq(OPS(st)->get_account(st, oh, &got, err, sizeof err), FPAY_OK,
                     "account %d lost by a failed rotation", i);
        cr_expect(tsu_row_is(&K, &got, (uint32_t)i), "account %d half-rotated", i);
        cr_expect_str_eq(got.key_id, K.key_id);
        fpay_account_row_clear(&got);
        fpay_counters c;
        cr_assert_eq(OPS(st)->get_counters(st, oh, &c, err, sizeof err), FPAY_OK);
        cr_expect_eq(c.consecutive_failures, i + 1);
    }
    OPS(st)->close(st);
}

/* ------------------------------------------------------- hostile data */

static int count_fn(const fpay_audit_record *rec, void *ctx)
{
    (void)rec;
    ++*(long *)ctx;
    return 0;
}

enum probe { P_ACCOUNT, P_AUDIT, P_AUDIT_APPEND, P_COUNTERS, P_TERMINAL, P_SETTING, P_REKEY };

static fpay_status probe(fpay_store *st, enum probe p, const fpay_account_row *row,
                         char *err, size_t el)
{
    switch (p) {
    case P_ACCOUNT: {
        fpay_account_row got;
        fpay_status s = OPS(st)->get_account(st, row->account_hash, &got, err, el);
        cr_expect(s == FPAY_OK || got.blob == NULL, "no blob handed out on error");
        fpay_account_row_clear(&got);
        return s;
    }
    case P_AUDIT: {
        long n = 0;
        return OPS(st)->audit_each(st, count_fn, &n, err, el);
    }
    case P_AUDIT_APPEND: {
        fpay_audit_record rec;
        tsu_audit_record(&rec, "till", 2);
        return OPS(st)->audit_append(st, &K, &rec, err, el);
    }
    case P_COUNTERS: {
        fpay_counters c;
        return OPS(st)->get_counters(st, row->account_hash, &c, err, el);
    }
    case P_TERMINAL: {
        uint8_t kg[32];
        return OPS(st)->terminal_get(st, "till", kg, err, el);
    }
    case P_SETTING: {
        char v[16];
        return OPS(st)->setting_get(st, "s", v, sizeof v, err, el);
    }
    case P_REKEY: {
        struct rekey_ctx ctx = {.old = &K, .new_ = &K};
        return OPS(st)->rekey_all(st, rekey_fn, &ctx, err, el);
    }
    }
    return FPAY_INTERNAL;
}

Test(store, corrupt_rows_are_errors)
{
    fpay_store *st = tsu_open(db, NULL);
    char err[256] = "";
    fpay_account_row row;
    tsu_row(&K, "+8613800138000", 1, &row);

#define NOTRIG "DROP TRIGGER IF EXISTS audit_no_update;"
    static const struct {
        const char *sql;
        enum probe p;
    } cases[] = {
        {"UPDATE accounts SET blob = 'text, not a blob'", P_ACCOUNT},
        {"UPDATE accounts SET blob = x''", P_ACCOUNT},
        {"UPDATE accounts SET blob = zeroblob(2000000)", P_ACCOUNT},
        {"UPDATE accounts SET model_sha256 = 'abc'", P_ACCOUNT},
        {"UPDATE accounts SET model_sha256 = x'3031'", P_ACCOUNT},
        {"UPDATE accounts SET model_sha256 = upper(model_sha256) || ''", P_ACCOUNT},
        {"UPDATE accounts SET key_id = 12", P_ACCOUNT},
        {"UPDATE accounts SET key_id = key_id || '0'", P_ACCOUNT},
        {"UPDATE accounts SET template_version = 'one'", P_ACCOUNT},
        {"UPDATE accounts SET template_version = -1", P_ACCOUNT},
        {"UPDATE accounts SET template_version = 1e12", P_ACCOUNT},
        {"UPDATE accounts SET enrolled_at = 1.5", P_ACCOUNT},
        {"UPDATE accounts SET hash = x'0102'", P_REKEY},
        {"UPDATE accounts SET hash = 'text'", P_REKEY},
        {NOTRIG "UPDATE audit SET hash = x'0011'", P_AUDIT},
        {NOTRIG "UPDATE audit SET hash = x'0011'", P_AUDIT_APPEND},
        {NOTRIG "UPDATE audit SET hash = 'text'", P_AUDIT_APPEND},
        {NOTRIG "UPDATE audit SET prev = zeroblob(33)", P_AUDIT},
        {NOTRIG "UPDATE audit SET op = 'a very long operation name'", P_AUDIT},
        {NOTRIG "UPDATE audit SET latency_ms = 'slow'", P_AUDIT},
        {NOTRIG "UPDATE audit SET time_ms = 'x'", P_AUDIT},
        {NOTRIG "UPDATE audit SET terminal = CAST(x'41004243' AS TEXT)", P_AUDIT},
        {NOTRIG "UPDATE audit SET decision = x'07'", P_AUDIT},
        {"UPDATE counters SET failures = -3", P_COUNTERS},
        {"UPDATE counters SET failures = 1e10", P_COUNTERS},
        {"UPDATE counters SET locked = 7", P_COUNTERS},
        {"UPDATE counters SET last_failure = 'yesterday'", P_COUNTERS},
        {"UPDATE terminals SET key_hash = x'0102'", P_TERMINAL},
        {"UPDATE terminals SET key_hash = 'abc'", P_TERMINAL},
        {"UPDATE settings SET value = x'00'", P_SETTING},
        {"UPDATE settings SET value = CAST(x'410042' AS TEXT)", P_SETTING},
    };
#undef NOTRIG
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        /* Fresh, well-formed content for each case, checked first. */
        cr_assert_eq(tsu_sql(db, "DELETE FROM accounts; DELETE FROM counters;"
                                 "DELETE FROM terminals; DELETE FROM settings;"
                                 "DROP TRIGGER IF EXISTS audit_no_delete;"
                                 "DELETE FROM audit"),
                     0);
        cr_assert_eq(OPS(st)->put_account(st, &row, NULL, 0, err, sizeof err), FPAY_OK,
                     "%s", err);
        fpay_audit_record rec;
        tsu_audit_record(&rec, "till", 1);
        cr_assert_eq(OPS(st)->audit_append(st, &K, &rec, err, sizeof err), FPAY_OK,
                     "case %zu: %s", i, err);
        fpay_counters c = {.consecutive_failures = 2, .last_failure = 3};
        cr_assert_eq(OPS(st)->put_counters(st, row.account_hash, &c, err, sizeof err),
                     FPAY_OK);
        uint8_t kh[32] = {1};
        cr_assert_eq(OPS(st)->terminal_put(st, "till", kh, err, sizeof err), FPAY_OK);
        cr_assert_eq(OPS(st)->setting_put(st, "s", "v", err, sizeof err), FPAY_OK);
        cr_assert_eq(probe(st, cases[i].p, &row, err, sizeof err), FPAY_OK,
                     "case %zu before corruption: %s", i, err);

        cr_assert_eq(tsu_sql(db, cases[i].sql), 0, "case %zu: SQL %s", i, cases[i].sql);
        err[0] = '\0';
        fpay_status s = probe(st, cases[i].p, &row, err, sizeof err);
        cr_expect_eq(s, FPAY_IO_ERROR, "case %zu (%s): status %d, %s", i, cases[i].sql,
                     (int)s, err);
        cr_expect(strstr(err, "corrupt") != NULL, "case %zu: message '%s'", i, err);
    }
    /* A row whose blob is well-formed but wrong: the store hands it over,
     * the envelope refuses it. */
    cr_assert_eq(tsu_sql(db, "UPDATE accounts SET blob = zeroblob(24 + 768 + 16)"), 0);
    fpay_account_row got;
    cr_assert_eq(OPS(st)->get_account(st, row.account_hash, &got, err, sizeof err), FPAY_OK);
    cr_expect(!tsu_row_is(&K, &got, 1));
    fpay_account_row_clear(&got);
    fpay_account_row_clear(&row);
    OPS(st)->close(st);
}

static void write_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(p, 1, n, f), n);
    fclose(f);
}

static fpay_status try_open(const char *path, char *err, size_t el)
{
    fpay_store_options opt = {.path = path};
    fpay_store *st = (fpay_store *)1;
    fpay_status s = fpay_store_sqlite_open(&opt, &st, err, el);
    if (s == FPAY_OK)
        OPS(st)->close(st);
    else
        cr_expect_null(st);
    return s;
}

Test(store, garbage_file)
{
    uint8_t junk[16384];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)(i * 131 + 7);
    write_bytes(db, junk, sizeof junk);
    char err[256] = "";
    cr_expect_eq(try_open(db, err, sizeof err), FPAY_IO_ERROR);
    cr_expect(strstr(err, "not a database") != NULL, "%s", err);

    /* A real SQLite header over garbage pages. */
    memcpy(junk, "SQLite format 3", 16);
    write_bytes(db, junk, sizeof junk);
    err[0] = '\0';
    cr_expect_neq(try_open(db, err, sizeof err), FPAY_OK);
    cr_expect(err[0] != '\0');

    /* A folder where the file should be. */
    err[0] = '\0';
    cr_expect_neq(try_open(dir, err, sizeof err), FPAY_OK);
    cr_expect(err[0] != '\0');
}

Test(store, schema_versions)
{
    char err[256] = "";
    fpay_store *st = tsu_open(db, NULL);
    OPS(st)->close(st);
    cr_assert_eq(tsu_sql(db, "PRAGMA user_version = 99"), 0);
    cr_expect_eq(try_open(db, err, sizeof err), FPAY_INVALID_ARGUMENT);
    cr_expect(strstr(err, "newer") != NULL, "%s", err);

    /* Another application's database. */
    cr_assert_eq(tsu_sql(db, "PRAGMA user_version = 1; PRAGMA application_id = 7"), 0);
    err[0] = '\0';
    cr_expect_eq(try_open(db, err, sizeof err), FPAY_INVALID_ARGUMENT);
    cr_expect(strstr(err, "not a facepay database") != NULL, "%s", err);

    char other[600];
    tsu_join(other, sizeof other, dir, "other.db");
    write_bytes(other, "", 0);
    cr_assert_eq(tsu_sql(other, "CREATE TABLE t (x)"), 0);
    err[0] = '\0';
    cr_expect_eq(try_open(other, err, sizeof err), FPAY_INVALID_ARGUMENT);
    cr_expect(strstr(err, "not a facepay database") != NULL, "%s", err);
    /* Nothing of ours was written into it. */
    cr_expect_neq(tsu_sql(other, "SELECT * FROM accounts"), 0);

    /* Current version: reopens, WAL in force. */
    cr_assert_eq(tsu_sql(db, "PRAGMA user_version = 1; PRAGMA application_id = 1179664729"),
                 0);
    cr_expect_eq(try_open(db, err, sizeof err), FPAY_OK, "%s", err);
}

/* -------------------------------------------------------- concurrency */

#define THREADS 8
#define ITERS 50

struct worker {
    fpay_store *st;
    int id;
    int failures;
    char err[256];
};

static void *work(void *arg)
{
    struct worker *w = arg;
    fpay_store *st = w->st;
    char err[256];
    for (int j = 0; j < ITERS; j++) {
        char id[32];
        snprintf(id, sizeof id, "+86139%02d%06d", w->id, j);
        fpay_account_row row, got;
        /* tsu_row asserts only on seal failures, which cannot happen here. */
        tsu_row(&K, id, (uint32_t)(w->id * 1000 + j), &row);
        int ok = OPS(st)->put_account(st, &row, NULL, 0, err, sizeof err) == FPAY_OK &&
                 OPS(st)->get_account(st, row.account_hash, &got, err, sizeof err) ==
                     FPAY_OK;
        if (ok) {
            ok = tsu_row_is(&K, &got, (uint32_t)(w->id * 1000 + j));
            fpay_account_row_clear(&got);
        }
        fpay_counters c;
        if (ok)
            ok = OPS(st)->get_counters(st, row.account_hash, &c, err, sizeof err) == FPAY_OK &&
                 c.consecutive_failures == 0;
        c.consecutive_failures = j + 1;
        c.last_failure = j;
        c.locked = 0;
        if (ok)
            ok = OPS(st)->put_counters(st, row.account_hash, &c, err, sizeof err) == FPAY_OK;
        fpay_audit_record rec;
        tsu_audit_record(&rec, "worker", w->id * 1000 + j);
        if (ok)
            ok = OPS(st)->audit_append(st, &K, &rec, err, sizeof err) == FPAY_OK;
        if (!ok && !w->failures)
            snprintf(w->err, sizeof w->err, "%s", err);
        w->failures += !ok;
        fpay_account_row_clear(&row);
    }
    return NULL;
}

Test(store, many_threads_one_file, .timeout = 600)
{
    fpay_store *st = tsu_open(db, NULL);
    pthread_t th[THREADS];
    struct worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){.st = st, .id = i};
        cr_assert_eq(pthread_create(&th[i], NULL, work, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < THREADS; i++)
        cr_expect_eq(w[i].failures, 0, "thread %d: %d failures, first: %s", i,
                     w[i].failures, w[i].err);
    char err[256] = "";
    long na, nr;
    cr_assert_eq(OPS(st)->check(st, &na, &nr, err, sizeof err), FPAY_OK, "%s", err);
    cr_expect_eq(na, THREADS * ITERS);
    cr_expect_eq(nr, THREADS * ITERS);
    long n, bad;
    tsu_audit_verify(st, &K, &n, &bad);
    cr_expect_eq(n, THREADS * ITERS);
    cr_expect_eq(bad, 0, "chain breaks at %ld", bad);
    OPS(st)->close(st);

    /* And from a second store on the same file (another process would see
     * the same). */
    st = tsu_open(db, NULL);
    tsu_audit_verify(st, &K, &n, &bad);
    cr_expect_eq(n, THREADS * ITERS);
    cr_expect_eq(bad, 0);
    OPS(st)->close(st);
}

static unsigned file_mode(const char *path)
{
    struct stat sb;
    cr_assert_eq(stat(path, &sb), 0, "stat %s", path);
    return (unsigned)(sb.st_mode & 0777);
}

/* The database and its -wal and -shm hold sealed templates and the audit
 * chain: created 0600 whatever the umask, an existing one that others may
 * read is restricted, and a FIFO at the path is refused without hanging. */
Test(store, files_are_private, .timeout = 30)
{
    mode_t old = umask(022);
    fpay_store *st = tsu_open(db, NULL);
    char err[256] = "", wal[700], shm[700];
    fpay_account_row row;
    tsu_row(&K, "+8613800138000", 1, &row);
    cr_assert_eq(OPS(st)->put_account(st, &row, NULL, 0, err, sizeof err), FPAY_OK, "%s", err);
    snprintf(wal, sizeof wal, "%s-wal", db);
    snprintf(shm, sizeof shm, "%s-shm", db);
    cr_expect_eq(file_mode(db), 0600u, "database mode %o", file_mode(db));
    cr_expect_eq(file_mode(wal), 0600u, "-wal mode %o", file_mode(wal));
    cr_expect_eq(file_mode(shm), 0600u, "-shm mode %o", file_mode(shm));
    OPS(st)->close(st);
    fpay_account_row_clear(&row);

    cr_assert_eq(chmod(db, 0644), 0);
    st = tsu_open(db, NULL);
    cr_expect_eq(file_mode(db), 0600u, "reopened database mode %o", file_mode(db));
    OPS(st)->close(st);
    umask(old);

    char fifo[700];
    tsu_join(fifo, sizeof fifo, dir, "fifo.db");
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    fpay_store_options opt = {.path = fifo};
    fpay_store *none = (fpay_store *)1;
    cr_expect_eq(fpay_store_sqlite_open(&opt, &none, err, sizeof err), FPAY_INVALID_ARGUMENT);
    cr_expect_null(none);
    cr_expect_not_null(strstr(err, "not a regular file"), "'%s'", err);
    unlink(fifo);
}

static int file_holds(const char *path, const uint8_t *needle, size_t n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    static uint8_t buf[1 << 20];
    size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(buf + i, needle, n) == 0)
            return 1;
    return 0;
}

/* Every connection opened in this process from now on starts with
 * secure_delete off, as in a SQLite built without SQLITE_SECURE_DELETE
 * (Debian's is built with it, which would hide a store that forgot it). */
static int secure_delete_off(sqlite3 *conn, char **errmsg, const void *api)
{
    (void)errmsg;
    (void)api;
    return sqlite3_exec(conn, "PRAGMA secure_delete = OFF", NULL, NULL, NULL);
}

/* An erased template leaves no bytes behind in the file (PRAGMA
 * secure_delete): a copy of the file taken after an erasure does not hold
 * the sealed template any more, whatever the library's default. */
Test(store, erasure_overwrites_the_bytes)
{
    cr_assert_eq(sqlite3_auto_extension((void (*)(void))secure_delete_off), SQLITE_OK);
    fpay_store *st = tsu_open(db, NULL);
    char err[256] = "";
    fpay_account_row row;
    tsu_row(&K, "+8613800138000", 1, &row);
    cr_assert_eq(OPS(st)->put_account(st, &row, NULL, 0, err, sizeof err), FPAY_OK, "%s", err);
    OPS(st)->close(st); /* checkpoint: the row is in the database file */
    cr_assert(file_holds(db, row.blob, 64), "the sealed template is in the file");

    st = tsu_open(db, NULL);
    int existed = 0;
    cr_assert_eq(OPS(st)->delete_account(st, row.account_hash, &existed, err, sizeof err),
                 FPAY_OK, "%s", err);
    cr_assert_eq(existed, 1);
    OPS(st)->close(st);
    char wal[700];
    snprintf(wal, sizeof wal, "%s-wal", db);
    cr_expect_not(file_holds(db, row.blob, 64), "erased template still in the database file");
    cr_expect_not(file_holds(wal, row.blob, 64), "erased template still in the -wal file");
    fpay_account_row_clear(&row);
    sqlite3_reset_auto_extension();
}
