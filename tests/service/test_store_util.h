/* Helpers shared by the data-layer suites: temporary folders, test keys,
 * sealed rows, raw SQL on a store file (for tampering). */
#ifndef FPAY_TEST_STORE_UTIL_H
#define FPAY_TEST_STORE_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "service/service_internal.h"

#define TSU_DIM 192
#define TSU_SHA "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

/* A fresh folder under $TMPDIR (or /tmp); malloc'd path. tsu_rmdir removes
 * it with the files in it (one level). */
char *tsu_mkdtemp(void);
void tsu_rmdir(char *dir);
/* dir/name into a static buffer (one per call site is enough: copy it). */
void tsu_join(char *out, size_t n, const char *dir, const char *name);

/* Test master keys 0..3 (fixed hex), loaded through FACEPAY_MASTER_KEY. */
void tsu_keys(fpay_keys *k, int which);

/* A deterministic embedding for seed, and a row for account number `id`
 * (phone form) sealed with it. The row's blob is malloc'd. */
void tsu_embedding(float *e, int dim, uint32_t seed);
void tsu_row(const fpay_keys *k, const char *id, uint32_t seed, fpay_account_row *row);
/* 1 when row opens under k (with its own hash) to tsu_embedding(seed). */
int tsu_row_is(const fpay_keys *k, const fpay_account_row *row, uint32_t seed);

fpay_store *tsu_open(const char *path, const char *vfs);
/* Runs SQL on the file through a separate, plain connection (CHECK
 * constraints off). Returns the SQLite result code. */
int tsu_sql(const char *path, const char *sql);

/* Walks the audit chain with fpay_audit_link: records, and the first bad
 * 1-based position (0 when the chain holds). */
void tsu_audit_verify(fpay_store *st, const fpay_keys *k, long *n, long *first_bad);
void tsu_audit_record(fpay_audit_record *rec, const char *terminal, int i);

/* The re-key step both store suites pass through rekey_all: opens the row
 * under old, moves it to a hash derived from the old one (the store holds
 * no account number to hash again), seals it under new_. 0 or -1. */
int tsu_rekey_row(const fpay_keys *old, const fpay_keys *new_, fpay_account_row *row);

#endif
