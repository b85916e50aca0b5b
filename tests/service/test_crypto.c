/* Keys, keyed hashes, template envelopes, key files and keygen, throttling
 * and the audit link. */
#include <criterion/criterion.h>

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_store_util.h"

static const char *const MASTER0 =
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

static void write_file(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cr_assert(fd >= 0, "create %s", path);
    size_t n = strlen(text);
    cr_assert_eq(write(fd, text, n), (ssize_t)n);
    close(fd);
    cr_assert_eq(chmod(path, mode), 0);
}

Test(crypto, seal_open_round_trip)
{
    fpay_keys k;
    tsu_keys(&k, 0);
    fpay_account_row row;
    tsu_row(&k, "+8613800138000", 7, &row);
    cr_expect_eq(row.blob_len, 24 + TSU_DIM * 4 + 16);
    cr_expect(tsu_row_is(&k, &row, 7));
    cr_expect(!tsu_row_is(&k, &row, 8), "the check itself can fail");
    /* Two seals of one template differ (random nonce). */
    fpay_account_row again;
    tsu_row(&k, "+8613800138000", 7, &again);
    cr_expect(memcmp(row.blob, again.blob, row.blob_len) != 0);
    fpay_account_row_clear(&row);
    fpay_account_row_clear(&again);
    fpay_keys_wipe(&k);
}

Test(crypto, every_flipped_byte_refused)
{
    fpay_keys k;
    tsu_keys(&k, 0);
    fpay_account_row row;
    tsu_row(&k, "+8613800138000", 1, &row);
    float out[TSU_DIM];
    for (size_t i = 0; i < row.blob_len; i++) {
        for (int bit = 0; bit < 8; bit += 7) {
            row.blob[i] ^= (uint8_t)(1u << bit);
            fpay_status st = fpay_template_open(&k, row.account_hash, row.model_sha256,
                                                row.template_version, row.blob,
                                                row.blob_len, out, TSU_DIM);
            cr_assert_eq(st, FPAY_INVALID_ARGUMENT, "byte %zu bit %d accepted", i, bit);
            for (int j = 0; j < TSU_DIM; j++)
                cr_assert_eq(out[j], 0.0f, "refusal leaves the output zeroed");
            row.blob[i] ^= (uint8_t)(1u << bit);
        }
    }
    cr_expect(tsu_row_is(&k, &row, 1), "untouched blob still opens");
    fpay_account_row_clear(&row);
}

Test(crypto, bound_to_account_model_version_key)
{
    fpay_keys k, k2;
    tsu_keys(&k, 0);
    tsu_keys(&k2, 1);
    fpay_account_row a, b;
    tsu_row(&k, "+8613800138000", 1, &a);
    tsu_row(&k, "+8613800138001", 2, &b);
    float out[TSU_DIM];
    /* Rows swapped between two accounts: each blob under the other hash. */
    cr_expect_eq(fpay_template_open(&k, b.account_hash, a.model_sha256, 1, a.blob,
                                    a.blob_len, out, TSU_DIM),
                 FPAY_INVALID_ARGUMENT);
    cr_expect_eq(fpay_template_open(&k, a.account_hash, b.model_sha256, 1, b.blob,
                                    b.blob_len, out, TSU_DIM),
                 FPAY_INVALID_ARGUMENT);
    /* Another model. */
    char sha[65];
    strcpy(sha, TSU_SHA);
    sha[63] = sha[63] == '0' ? '1' : '0';
    cr_expect_eq(fpay_template_open(&k, a.account_hash, sha, 1, a.blob, a.blob_len, out,
                                    TSU_DIM),
                 FPAY_INVALID_ARGUMENT);
    /* Another version. */
    cr_expect_eq(fpay_template_open(&k, a.account_hash, TSU_SHA, 2, a.blob, a.blob_len,
                                    out, TSU_DIM),
                 FPAY_INVALID_ARGUMENT);
    cr_expect_eq(fpay_template_open(&k, a.account_hash, TSU_SHA, 257, a.blob,
                                    a.blob_len, out, TSU_DIM),
                 FPAY_INVALID_ARGUMENT);
    /* Another key. */
    cr_expect_eq(fpay_template_open(&k2, a.account_hash, TSU_SHA, 1, a.blob, a.blob_len,
                                    out, TSU_DIM),
                 FPAY_INVALID_ARGUMENT);
    /* Truncated, extended, empty, other dimension. */
    for (size_t n = 0; n < a.blob_len; n += 7)
        cr_expect_eq(fpay_template_open(&k, a.account_hash, TSU_SHA, 1, a.blob, n, out,
                                        TSU_DIM),
                     FPAY_INVALID_ARGUMENT, "truncated to %zu", n);
    cr_expect_eq(fpay_template_open(&k, a.account_hash, TSU_SHA, 1, a.blob,
                                    a.blob_len - 1, out, TSU_DIM),
                 FPAY_INVALID_ARGUMENT);
    cr_expect_eq(fpay_template_open(&k, a.account_hash, TSU_SHA, 1, a.blob, a.blob_len,
                                    out, TSU_DIM - 1),
                 FPAY_INVALID_ARGUMENT);
    cr_expect_eq(fpay_template_open(&k, a.account_hash, TSU_SHA, 1, NULL, 0, out,
                                    TSU_DIM),
                 FPAY_INVALID_ARGUMENT);
    /* And the right combination still opens. */
    cr_expect_eq(fpay_template_open(&k, a.account_hash, TSU_SHA, 1, a.blob, a.blob_len,
                                    out, TSU_DIM),
                 FPAY_OK);
    fpay_account_row_clear(&a);
    fpay_account_row_clear(&b);
}

Test(crypto, seal_refuses_bad_input)
{
    fpay_keys k;
    tsu_keys(&k, 0);
    uint8_t h[FPAY_HASH_BYTES] = {0};
    float e[4] = {1, 2, 3, 4};
    uint8_t *blob = (uint8_t *)1;
    size_t len = 99;
    cr_expect_eq(fpay_template_seal(&k, h, "abc", 1, e, 4, &blob, &len),
                 FPAY_INVALID_ARGUMENT);
    cr_expect_null(blob);
    cr_expect_eq(len, 0);
    cr_expect_eq(fpay_template_seal(&k, h, TSU_SHA, 1, e, 0, &blob, &len),
                 FPAY_INVALID_ARGUMENT);
    cr_expect_eq(fpay_template_seal(&k, h, TSU_SHA, -1, e, 4, &blob, &len),
                 FPAY_INVALID_ARGUMENT);
    e[2] = NAN;
    cr_expect_eq(fpay_template_seal(&k, h, TSU_SHA, 1, e, 4, &blob, &len),
                 FPAY_INVALID_ARGUMENT, "NaN template refused");
    cr_expect_null(blob);
}

Test(crypto, keys_distinct_and_stable)
{
    fpay_keys a, b, c;
    tsu_keys(&a, 0);
    tsu_keys(&b, 0);
    tsu_keys(&c, 1);
    cr_expect(memcmp(&a, &b, sizeof a) == 0, "same master, same subkeys");
    cr_expect(memcmp(a.id_key, c.id_key, FPAY_KEY_BYTES) != 0);
    cr_expect(memcmp(a.id_key, a.template_key, FPAY_KEY_BYTES) != 0);
    cr_expect(memcmp(a.audit_key, a.secret_key, FPAY_KEY_BYTES) != 0);
    cr_expect(memcmp(a.id_key, a.secret_key, FPAY_KEY_BYTES) != 0);
    cr_expect_eq(strlen(a.key_id), 16);
    cr_expect_str_neq(a.key_id, c.key_id);
    /* Phone and ID card of the same digits never share a hash. */
    uint8_t h1[32], h2[32], h3[32];
    fpay_account_hash(&a, FPAY_ID_PHONE, "110101199001010023", h1);
    fpay_account_hash(&a, FPAY_ID_CN_RESIDENT, "110101199001010023", h2);
    fpay_account_hash(&c, FPAY_ID_PHONE, "110101199001010023", h3);
    cr_expect(memcmp(h1, h2, 32) != 0);
    cr_expect(memcmp(h1, h3, 32) != 0);
    fpay_secret_hash(&a, "abc", 3, h1);
    fpay_secret_hash(&c, "abc", 3, h2);
    cr_expect(memcmp(h1, h2, 32) != 0);
    char hex[9];
    fpay_hex((const uint8_t *)"\x00\x9f\xa0\xff", 4, hex);
    cr_expect_str_eq(hex, "009fa0ff");
    fpay_keys_wipe(&a);
    uint8_t zero[sizeof a];
    memset(zero, 0, sizeof zero);
    cr_expect(memcmp(&a, zero, sizeof a) == 0);
}

Test(crypto, key_file_rules)
{
    char *dir = tsu_mkdtemp();
    char path[600], text[200];
    char err[300];
    fpay_keys k, env;
    tsu_join(path, sizeof path, dir, "master.key");
    snprintf(text, sizeof text, "%s\n", MASTER0);

    write_file(path, text, 0600);
    cr_assert_eq(fpay_keys_load(path, &k, err, sizeof err), FPAY_OK, "%s", err);
    tsu_keys(&env, 0);
    cr_expect(memcmp(&k, &env, sizeof k) == 0, "file and environment agree");

    write_file(path, MASTER0, 0400); /* no newline, read-only: fine */
    cr_expect_eq(fpay_keys_load(path, &k, err, sizeof err), FPAY_OK, "%s", err);

    write_file(path, text, 0644);
    err[0] = '\0';
    cr_expect_eq(fpay_keys_load(path, &k, err, sizeof err), FPAY_INVALID_ARGUMENT);
    cr_expect(strstr(err, "chmod 600") != NULL, "message says what to do: %s", err);
    write_file(path, text, 0640);
    cr_expect_eq(fpay_keys_load(path, &k, err, sizeof err), FPAY_INVALID_ARGUMENT);
    write_file(path, text, 0602);
    cr_expect_eq(fpay_keys_load(path, &k, err, sizeof err), FPAY_INVALID_ARGUMENT);

    static const char *const bad[] = {
        "",
        "00",
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e",
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f0",
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n\n",
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1g",
        " 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1",
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        write_file(path, bad[i], 0600);
        err[0] = '\0';
        cr_expect_eq(fpay_keys_load(path, &k, err, sizeof err), FPAY_INVALID_ARGUMENT,
                     "bad key %zu accepted", i);
        cr_expect(err[0] != '\0');
        cr_expect(strstr(err, "0001020304") == NULL, "no key bytes in messages");
    }

    /* Not a regular file, missing file. */
    cr_expect_eq(fpay_keys_load(dir, &k, err, sizeof err), FPAY_INVALID_ARGUMENT);
    char fifo[600];
    tsu_join(fifo, sizeof fifo, dir, "fifo");
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    cr_expect_eq(fpay_keys_load(fifo, &k, err, sizeof err), FPAY_INVALID_ARGUMENT,
                 "a FIFO is refused without hanging");
    tsu_join(path, sizeof path, dir, "absent.key");
    cr_expect_eq(fpay_keys_load(path, &k, err, sizeof err), FPAY_NOT_FOUND);

    /* Environment. */
    unsetenv("FACEPAY_MASTER_KEY");
    cr_expect_eq(fpay_keys_load(NULL, &k, err, sizeof err), FPAY_NOT_FOUND);
    setenv("FACEPAY_MASTER_KEY", "xyz", 1);
    cr_expect_eq(fpay_keys_load(NULL, &k, err, sizeof err), FPAY_INVALID_ARGUMENT);
    unsetenv("FACEPAY_MASTER_KEY");
    tsu_rmdir(dir);
}

Test(crypto, keygen)
{
    char *dir = tsu_mkdtemp();
    char path[600], err[300];
    tsu_join(path, sizeof path, dir, "new.key");
    mode_t old = umask(0);
    cr_assert_eq(fpay_keygen(path, err, sizeof err), FPAY_OK, "%s", err);
    umask(old);
    struct stat sb;
    cr_assert_eq(stat(path, &sb), 0);
    cr_expect_eq(sb.st_mode & 0777, 0600, "mode %o", (unsigned)(sb.st_mode & 0777));
    cr_expect_eq(sb.st_size, 65);
    fpay_keys k1, k2;
    cr_assert_eq(fpay_keys_load(path, &k1, err, sizeof err), FPAY_OK, "%s", err);

    /* Refuses to overwrite, and the key is unchanged. */
    err[0] = '\0';
    cr_expect_eq(fpay_keygen(path, err, sizeof err), FPAY_INVALID_ARGUMENT);
    cr_expect(strstr(err, "exists") != NULL, "%s", err);
    cr_assert_eq(fpay_keys_load(path, &k2, err, sizeof err), FPAY_OK);
    cr_expect(memcmp(&k1, &k2, sizeof k1) == 0);

    /* Two keys are different keys. */
    char path2[600];
    tsu_join(path2, sizeof path2, dir, "other.key");
    cr_assert_eq(fpay_keygen(path2, err, sizeof err), FPAY_OK);
    cr_assert_eq(fpay_keys_load(path2, &k2, err, sizeof err), FPAY_OK);
    cr_expect_str_neq(k1.key_id, k2.key_id);

    tsu_join(path2, sizeof path2, dir, "no/such/dir.key");
    cr_expect_eq(fpay_keygen(path2, err, sizeof err), FPAY_IO_ERROR);
    cr_expect_eq(fpay_keygen(NULL, err, sizeof err), FPAY_INVALID_ARGUMENT);
    tsu_rmdir(dir);
}

/* ------------------------------------------------------------ throttle */

static fpay_service_config policy(void)
{
    fpay_service_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.backoff_after = 5;
    cfg.backoff_base_s = 30;
    cfg.lock_after = 50;
    return cfg;
}

Test(throttle, backoff_doubles_then_caps_then_locks)
{
    fpay_service_config cfg = policy();
    fpay_counters c = {0};
    int64_t now = 1000000;
    for (int i = 0; i < 4; i++)
        fpay_throttle_record(&cfg, &c, 0, now);
    cr_expect_eq(c.consecutive_failures, 4);
    cr_expect_eq(fpay_throttle_wait(&cfg, &c, now), 0, "4 failures: free attempts");
    fpay_throttle_record(&cfg, &c, 0, now);
    cr_expect_eq(fpay_throttle_wait(&cfg, &c, now), 30);
    cr_expect_eq(fpay_throttle_wait(&cfg, &c, now + 10), 20);
    cr_expect_eq(fpay_throttle_wait(&cfg, &c, now + 30), 0);
    fpay_throttle_record(&cfg, &c, 0, now + 30);
    cr_expect_eq(fpay_throttle_wait(&cfg, &c, now + 30), 60);
    fpay_throttle_record(&cfg, &c, 0, now + 90);
    cr_expect_eq(fpay_throttle_wait(&cfg, &c, now + 90), 120);
    while (c.consecutive_failures < 49)
        fpay_throttle_record(&cfg, &c, 0, now);
    cr_expect_eq(fpay_throttle_wait(&cfg, &c, now), 86400, "capped at a day");
    cr_expect_eq(c.locked, 0);
    fpay_throttle_record(&cfg, &c, 0, now);
    cr_expect_eq(c.locked, 1, "locked at lock_after");
    cr_expect_eq(fpay_throttle_wait(&cfg, &c, now + 10 * 86400), -1);
    /* Success clears the count but not a hard lock. */
    fpay_throttle_record(&cfg, &c, 1, now);
    cr_expect_eq(c.consecutive_failures, 0);
    cr_expect_eq(fpay_throttle_wait(&cfg, &c, now), -1);
}

Test(throttle, hostile_counters)
{
    fpay_service_config cfg = policy();
    fpay_counters c = {.consecutive_failures = 10, .last_failure = INT64_MAX};
    /* A last failure in the future waits at most one full delay. */
    long w = fpay_throttle_wait(&cfg, &c, 1000);
    cr_expect(w > 0 && w <= 30 * 32, "wait %ld", w);
    c.consecutive_failures = 1000000;
    cr_expect_eq(fpay_throttle_wait(&cfg, &c, 1000), -1, "over lock_after");
    cfg.lock_after = 0;
    cr_expect_eq(fpay_throttle_wait(&cfg, &c, 1000), 86400);
    c.consecutive_failures = -5;
    c.last_failure = 0;
    cr_expect_eq(fpay_throttle_wait(&cfg, &c, 1000), 0);
    fpay_throttle_record(&cfg, &c, 0, 1000);
    cr_expect_eq(c.consecutive_failures, 1);
    c.consecutive_failures = 0x7fffffff;
    fpay_throttle_record(&cfg, &c, 0, 1000);
    cr_expect_eq(c.consecutive_failures, 0x7fffffff, "saturates");
    cr_expect_eq(fpay_throttle_wait(NULL, &c, 0), -1, "no policy fails closed");
}

/* --------------------------------------------------------------- audit */

Test(audit, link_covers_every_field)
{
    fpay_keys k, k2;
    tsu_keys(&k, 0);
    tsu_keys(&k2, 1);
    fpay_audit_record r;
    tsu_audit_record(&r, "t1", 3);
    r.seq = 3;
    uint8_t base[32], h[32];
    fpay_audit_link(&k, &r, base);
    fpay_audit_link(&k, &r, h);
    cr_expect(memcmp(base, h, 32) == 0, "deterministic");
    fpay_audit_link(&k2, &r, h);
    cr_expect(memcmp(base, h, 32) != 0, "keyed");
#define CHANGED(stmt)                                                         \
    do {                                                                      \
        fpay_audit_record m = r;                                              \
        stmt;                                                                 \
        fpay_audit_link(&k, &m, h);                                           \
        cr_expect(memcmp(base, h, 32) != 0, "not covered: " #stmt);           \
    } while (0)
    CHANGED(m.seq++);
    CHANGED(m.time_ms++);
    CHANGED(m.terminal_id[0] ^= 1);
    CHANGED(m.account_prefix[3] ^= 1);
    CHANGED(m.op[0] ^= 1);
    CHANGED(m.decision[0] ^= 1);
    CHANGED(m.reason[0] ^= 1);
    CHANGED(m.latency_ms += 0.001);
    CHANGED(m.prev[31] ^= 1);
    /* Moving a character across a field boundary changes the hash. */
    CHANGED((strcpy(m.op, "verif"), strcpy(m.decision, "yDECLINE")));
#undef CHANGED
}
