/* Helpers of the data-layer suites (test_store_util.h). */
#include "test_store_util.h"

#include <criterion/criterion.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

char *tsu_mkdtemp(void)
{
    const char *base = getenv("TMPDIR");
    char tmpl[512];
    snprintf(tmpl, sizeof tmpl, "%s/fpay-store-XXXXXX", base && base[0] ? base : "/tmp");
    char *d = mkdtemp(tmpl);
    cr_assert_not_null(d, "mkdtemp");
    char *out = malloc(strlen(d) + 1);
    cr_assert_not_null(out);
    strcpy(out, d);
    return out;
}

void tsu_rmdir(char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char p[1024];
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
    free(dir);
}

void tsu_join(char *out, size_t n, const char *dir, const char *name)
{
    snprintf(out, n, "%s/%s", dir, name);
}

void tsu_keys(fpay_keys *k, int which)
{
    static const char *const hex[] = {
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
        "f0e1d2c3b4a5968778695a4b3c2d1e0f00112233445566778899aabbccddeeff",
        "5555555555555555555555555555555555555555555555555555555555555555",
        "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90",
    };
    char err[160] = "";
    cr_assert(which >= 0 && which < 4);
    setenv("FACEPAY_MASTER_KEY", hex[which], 1);
    cr_assert_eq(fpay_keys_load(NULL, k, err, sizeof err), FPAY_OK, "%s", err);
    unsetenv("FACEPAY_MASTER_KEY");
}

void tsu_embedding(float *e, int dim, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 12345u;
    for (int i = 0; i < dim; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        e[i] = (float)((int32_t)(x % 2001u) - 1000) / 1000.0f;
    }
}

void tsu_row(const fpay_keys *k, const char *id, uint32_t seed, fpay_account_row *row)
{
    float e[TSU_DIM];
    memset(row, 0, sizeof *row);
    fpay_account_hash(k, FPAY_ID_PHONE, id, row->account_hash);
    strcpy(row->model_sha256, TSU_SHA);
    row->template_version = FPAY_TEMPLATE_VERSION;
    strcpy(row->key_id, k->key_id);
    row->enrolled_at = 1700000000 + (int64_t)seed;
    tsu_embedding(e, TSU_DIM, seed);
    cr_assert_eq(fpay_template_seal(k, row->account_hash, TSU_SHA, FPAY_TEMPLATE_VERSION,
                                    e, TSU_DIM, &row->blob, &row->blob_len),
                 FPAY_OK);
}

int tsu_row_is(const fpay_keys *k, const fpay_account_row *row, uint32_t seed)
{
    float got[TSU_DIM], want[TSU_DIM];
    if (fpay_template_open(k, row->account_hash, row->model_sha256, row->template_version,
                           row->blob, row->blob_len, got, TSU_DIM) != FPAY_OK)
        return 0;
    tsu_embedding(want, TSU_DIM, seed);
    return memcmp(got, want, sizeof got) == 0 &&
           row->enrolled_at == 1700000000 + (int64_t)seed;
}

fpay_store *tsu_open(const char *path, const char *vfs)
{
    fpay_store_options opt = {.path = path, .vfs = vfs, .busy_timeout_ms = 10000};
    fpay_store *st = NULL;
    char err[256] = "";
    fpay_status s = fpay_store_sqlite_open(&opt, &st, err, sizeof err);
    cr_assert_eq(s, FPAY_OK, "open %s: %s", path, err);
    cr_assert_not_null(st);
    return st;
}

int tsu_sql(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(db, 10000);
        rc = sqlite3_exec(db, "PRAGMA ignore_check_constraints = ON", NULL, NULL, NULL);
    }
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    sqlite3_close(db);
    return rc;
}

struct chain {
    const fpay_keys *k;
    long n;
    long first_bad;
    uint8_t prev[FPAY_HASH_BYTES];
};

static int chain_step(const fpay_audit_record *rec, void *ctx)
{
    struct chain *c = ctx;
    uint8_t h[FPAY_HASH_BYTES];
    c->n++;
    fpay_audit_link(c->k, rec, h);
    if (!c->first_bad && (rec->seq != c->n || memcmp(rec->prev, c->prev, sizeof h) != 0 ||
                          memcmp(rec->hash, h, sizeof h) != 0))
        c->first_bad = c->n;
    memcpy(c->prev, rec->hash, sizeof h);
    return 0;
}

void tsu_audit_verify(fpay_store *st, const fpay_keys *k, long *n, long *first_bad)
{
    struct chain c = {.k = k};
    char err[256] = "";
    cr_assert_eq(st->ops->audit_each(st, chain_step, &c, err, sizeof err), FPAY_OK, "%s",
                 err);
    *n = c.n;
    *first_bad = c.first_bad;
}

void tsu_audit_record(fpay_audit_record *rec, const char *terminal, int i)
{
    memset(rec, 0, sizeof *rec);
    rec->time_ms = 1700000000000 + i;
    snprintf(rec->terminal_id, sizeof rec->terminal_id, "%s", terminal);
    snprintf(rec->account_prefix, sizeof rec->account_prefix, "%016x", (unsigned)i);
    snprintf(rec->op, sizeof rec->op, "%s", i % 2 ? "verify" : "enroll");
    snprintf(rec->decision, sizeof rec->decision, "%s", i % 3 ? "DECLINE" : "APPROVE");
    snprintf(rec->reason, sizeof rec->reason, "%s", i % 3 ? "NO_MATCH" : "NONE");
    rec->latency_ms = 12.5 + i;
}

int tsu_rekey_row(const fpay_keys *old, const fpay_keys *new_, fpay_account_row *row)
{
    float e[TSU_DIM];
    if (fpay_template_open(old, row->account_hash, row->model_sha256, row->template_version,
                           row->blob, row->blob_len, e, TSU_DIM) != FPAY_OK)
        return -1;
    uint8_t nh[FPAY_HASH_BYTES];
    fpay_secret_hash(new_, row->account_hash, FPAY_HASH_BYTES, nh);
    uint8_t *blob;
    size_t len;
    if (fpay_template_seal(new_, nh, row->model_sha256, row->template_version, e, TSU_DIM,
                           &blob, &len) != FPAY_OK)
        return -1;
    free(row->blob);
    row->blob = blob;
    row->blob_len = len;
    memcpy(row->account_hash, nh, FPAY_HASH_BYTES);
    strcpy(row->key_id, new_->key_id);
    return 0;
}
