/*
 * service_internal.h - the contract between the checkout logic (service.c,
 * calibrate.c) and the data layer under it: keys, keyed hashes, template
 * envelopes, the store interface, throttling policy and the audit chain.
 * Not installed. Tests include it to reach the store directly (fault
 * injection, tampering).
 */
#ifndef FPAY_SERVICE_INTERNAL_H
#define FPAY_SERVICE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <facepay/service.h>

/* --------------------------------------------------------------- threads */

/* Threads per face-pipeline session for `workers` pipelines when the
 * configuration leaves it at 0, and what an open service uses (tests). */
int fpay_service_auto_threads(int workers);
int fpay_service_pipeline_threads(const fpay_service *svc);

/* ------------------------------------------------------------------ keys */

#define FPAY_KEY_BYTES 32
#define FPAY_HASH_BYTES 32

/* Subkeys derived from the master key (crypto_kdf), one per purpose, so a
 * leaked account-hash key reveals no template and the other way round. */
typedef struct fpay_keys {
    uint8_t id_key[FPAY_KEY_BYTES];        /* keyed hash of account numbers */
    uint8_t template_key[FPAY_KEY_BYTES];  /* XChaCha20-Poly1305 templates */
    uint8_t audit_key[FPAY_KEY_BYTES];     /* audit hash chain */
    uint8_t secret_key[FPAY_KEY_BYTES];    /* API-key hashes, capture hashes */
    char key_id[17];                       /* 16 hex digits naming the master
                                              key (not secret: a hash of it) */
} fpay_keys;

/* Reads the master key (64 hex digits, optional trailing newline) from
 * key_file, or from the environment variable FACEPAY_MASTER_KEY when
 * key_file is NULL. Refuses a file that is group- or world-readable or not
 * a regular file. Derives the subkeys. */
fpay_status fpay_keys_load(const char *key_file, fpay_keys *out, char *err,
                           size_t err_len);
void fpay_keys_wipe(fpay_keys *keys);   /* sodium_memzero */

/* Keyed hash (BLAKE2b-256 under id_key) of a normalised account number,
 * with the kind mixed in so a phone and an ID card never collide. */
void fpay_account_hash(const fpay_keys *keys, fpay_id_kind kind,
                       const char *normalized, uint8_t out[FPAY_HASH_BYTES]);
/* Keyed hash (under secret_key) of arbitrary bytes: API keys, captures. */
void fpay_secret_hash(const fpay_keys *keys, const void *data, size_t len,
                      uint8_t out[FPAY_HASH_BYTES]);
/* Lower-case hex of n bytes into out (2n+1 bytes). */
void fpay_hex(const uint8_t *bytes, size_t n, char *out);

/* ------------------------------------------------------------- envelope */

#define FPAY_TEMPLATE_VERSION 1

/* Encrypts a template (dim floats, little-endian on disk) with
 * XChaCha20-Poly1305 under template_key and a random nonce. The associated
 * data binds the account hash, the model's sha256 (64 hex) and the template
 * version, so a row copied to another account, another model or another
 * version fails to open. *blob is malloc'd (caller frees): nonce || ct. */
fpay_status fpay_template_seal(const fpay_keys *keys,
                               const uint8_t account_hash[FPAY_HASH_BYTES],
                               const char *model_sha256, int version,
                               const float *embedding, int dim,
                               uint8_t **blob, size_t *blob_len);
/* FPAY_OK, or FPAY_INVALID_ARGUMENT when the blob does not authenticate
 * (tampered, swapped, wrong key) or has the wrong size. */
fpay_status fpay_template_open(const fpay_keys *keys,
                               const uint8_t account_hash[FPAY_HASH_BYTES],
                               const char *model_sha256, int version,
                               const uint8_t *blob, size_t blob_len,
                               float *embedding, int dim);

/* ----------------------------------------------------------------- store */

typedef struct fpay_account_row {
    uint8_t account_hash[FPAY_HASH_BYTES];
    char model_sha256[65];
    int template_version;
    char key_id[17];            /* master key the blob is sealed under */
    uint8_t *blob;              /* owned by the row: fpay_account_row_clear */
    size_t blob_len;
    int64_t enrolled_at;        /* unix seconds */
} fpay_account_row;
void fpay_account_row_clear(fpay_account_row *row);

/* Failure counters of one account hash; kept for unknown accounts too, so
 * an unknown number is throttled exactly like a known one. */
typedef struct fpay_counters {
    int consecutive_failures;
    int64_t last_failure;       /* unix seconds, 0 = never */
    int locked;                 /* hard lock: only unlock/re-enroll clears */
} fpay_counters;

typedef struct fpay_audit_record {
    int64_t seq;                /* 1-based, assigned by the store */
    int64_t time_ms;            /* unix milliseconds */
    char terminal_id[64];
    char account_prefix[17];    /* first 16 hex of the account hash */
    char op[16];                /* "enroll", "verify", "delete", "unlock",
                                   "rotate_key" */
    char decision[16];          /* "APPROVE" / "DECLINE" */
    char reason[32];            /* fpay_reason_name */
    double latency_ms;
    uint8_t prev[FPAY_HASH_BYTES];
    uint8_t hash[FPAY_HASH_BYTES];
} fpay_audit_record;

/* The chain link: keyed BLAKE2b under audit_key of prev || the record's
 * fields in a fixed, length-prefixed encoding. */
void fpay_audit_link(const fpay_keys *keys, const fpay_audit_record *rec,
                     uint8_t out[FPAY_HASH_BYTES]);

typedef struct fpay_store fpay_store;

typedef struct fpay_store_options {
    const char *path;           /* database file */
    const char *vfs;            /* SQLite VFS name; NULL = default (tests
                                   pass a fault-injecting one) */
    int busy_timeout_ms;        /* 5000 */
} fpay_store_options;

/* One transaction's worth of writes for fpay_store_ops.write_batch: every
 * part is optional (NULL = absent) and the parts present are applied in the
 * order listed, inside one write transaction. The service puts a call's
 * state change and the audit record of its answer in one batch, so the
 * store never holds one without the other. */
typedef struct fpay_store_batch {
    /* Erase an account: template, counters and capture hashes; existed
     * (out) says whether there was a template. */
    const uint8_t *delete_hash;             /* FPAY_HASH_BYTES */
    int existed;
    /* Insert or replace a template and reset its counters, as put_account
     * (captures: n_captures hashes, may be 0). */
    const fpay_account_row *account;
    const uint8_t (*captures)[FPAY_HASH_BYTES];
    int n_captures;
    /* Set an account hash's counters, as put_counters. */
    const uint8_t *counters_hash;           /* FPAY_HASH_BYTES */
    const fpay_counters *counters;
    /* Record one failure of a terminal, as terminal_failure_add. */
    const char *failure_terminal;
    int64_t failure_at;
    /* Append an audit record, as audit_append (seq, prev and hash filled
     * in); keys is needed with it. */
    fpay_audit_record *audit;
    const fpay_keys *keys;
    /* Remove every terminal's API key (key rotation revokes them). */
    int revoke_terminals;
} fpay_store_batch;

/* Every call is safe from many threads (one connection per thread, or a
 * mutex: the implementation's choice). Each mutating call is atomic: when
 * it succeeds all of it is kept, and when it fails before its COMMIT
 * nothing of it is. One exception no store over a file system can close:
 * a COMMIT that fails at the final sync, after the transaction was written
 * out (SQLite's WAL: the frames are in the -wal file, the fsync failed),
 * reports failure, yet the transaction may be found whole by the recovery
 * at the next open. It is then kept whole, never in part: a caller that
 * reported failure must not assume "nothing happened", only "all or
 * nothing happened" (the service answers DECLINE either way, and since the
 * state change and its audit record share one transaction the stored
 * record still describes the stored state). Errors come back as a status
 * and a line in err (caller-owned; may be NULL). */
typedef struct fpay_store_ops {
    int version;                /* FPAY_STORE_OPS_VERSION */
    const char *name;           /* "sqlite" */
    void (*close)(fpay_store *st);

    /* FPAY_NOT_FOUND when the account has no template. */
    fpay_status (*get_account)(fpay_store *st,
                               const uint8_t hash[FPAY_HASH_BYTES],
                               fpay_account_row *out, char *err, size_t el);
    /* Insert or replace the template, and reset the account's counters, in
     * one transaction; capture_hashes (n of them, may be 0) are remembered
     * so the same capture cannot enroll again. */
    fpay_status (*put_account)(fpay_store *st, const fpay_account_row *row,
                               const uint8_t (*capture_hashes)[FPAY_HASH_BYTES],
                               int n_captures, char *err, size_t el);
    /* Removes template, counters and capture hashes; *existed says whether
     * there was a template. */
    fpay_status (*delete_account)(fpay_store *st,
                                  const uint8_t hash[FPAY_HASH_BYTES],
                                  int *existed, char *err, size_t el);
    /* *seen = 1 when this capture hash enrolled any account before. */
    fpay_status (*capture_seen)(fpay_store *st,
                                const uint8_t hash[FPAY_HASH_BYTES], int *seen,
                                char *err, size_t el);

    /* Counters: absent = all zero. */
    fpay_status (*get_counters)(fpay_store *st,
                                const uint8_t hash[FPAY_HASH_BYTES],
                                fpay_counters *out, char *err, size_t el);
    fpay_status (*put_counters)(fpay_store *st,
                                const uint8_t hash[FPAY_HASH_BYTES],
                                const fpay_counters *c, char *err, size_t el);

    /* Failures of a terminal inside [since, now]: record one, count them. */
    fpay_status (*terminal_failure_add)(fpay_store *st, const char *terminal,
                                        int64_t now, char *err, size_t el);
    fpay_status (*terminal_failure_count)(fpay_store *st, const char *terminal,
                                          int64_t since, int *count,
                                          char *err, size_t el);

    /* API keys: store / read the keyed hash of a terminal's key. */
    fpay_status (*terminal_put)(fpay_store *st, const char *terminal,
                                const uint8_t key_hash[FPAY_HASH_BYTES],
                                char *err, size_t el);
    fpay_status (*terminal_get)(fpay_store *st, const char *terminal,
                                uint8_t key_hash[FPAY_HASH_BYTES], char *err,
                                size_t el);

    /* Appends rec (seq, prev and hash are filled in by the store under its
     * write lock, with fpay_audit_link, so the chain has no forks). */
    fpay_status (*audit_append)(fpay_store *st, const fpay_keys *keys,
                                fpay_audit_record *rec, char *err, size_t el);
    /* Calls fn on every record in seq order until fn returns non-zero. */
    fpay_status (*audit_each)(fpay_store *st,
                              int (*fn)(const fpay_audit_record *rec,
                                        void *ctx),
                              void *ctx, char *err, size_t el);

    /* Small named settings (calibrated threshold, its FMR, ...). get gives
     * FPAY_NOT_FOUND when absent. */
    fpay_status (*setting_get)(fpay_store *st, const char *name, char *value,
                               size_t value_len, char *err, size_t el);
    fpay_status (*setting_put)(fpay_store *st, const char *name,
                               const char *value, char *err, size_t el);

    /* Key rotation: calls fn on every account row inside one write
     * transaction; fn rewrites the row in place (new hash, new blob, new
     * key_id; the old blob is freed by fn). Counters and capture hashes
     * move with the account (map old hash -> new hash through fn's result).
     * Any failure rolls everything back. */
    fpay_status (*rekey_all)(fpay_store *st,
                             int (*fn)(fpay_account_row *row, void *ctx),
                             void *ctx, char *err, size_t el);

    /* Applies every part of b in one transaction (see fpay_store_batch):
     * all of it or, on failure, nothing (the contract above says when a
     * failed COMMIT is kept whole). FPAY_INVALID_ARGUMENT, with nothing
     * written, when b holds no part or a part is malformed. The single
     * calls above (put_account, delete_account, put_counters,
     * terminal_failure_add, audit_append) are one-part batches. */
    fpay_status (*write_batch)(fpay_store *st, fpay_store_batch *b, char *err,
                               size_t el);

    /* PRAGMA integrity_check == "ok" and the counts (for tests). */
    fpay_status (*check)(fpay_store *st, long *accounts, long *audit_records,
                         char *err, size_t el);
} fpay_store_ops;

/* 2: write_batch (a call's state change and its audit record in one
 * transaction). */
#define FPAY_STORE_OPS_VERSION 2

struct fpay_store {
    const fpay_store_ops *ops;
};

/* The SQLite store (store_sqlite.c): one file, WAL, schema version in
 * PRAGMA user_version with migrations applied at open. */
fpay_status fpay_store_sqlite_open(const fpay_store_options *opt,
                                   fpay_store **out, char *err, size_t el);

/* ------------------------------------------------------------ throttling */

/* NIST SP 800-63B-4 style: after backoff_after consecutive failures each
 * further attempt waits backoff_base_s * 2^(failures - backoff_after),
 * capped at one day; at lock_after failures the account is locked. Returns
 * 0 when an attempt at `now` may proceed, else the seconds to wait (-1 for
 * a hard lock). Pure function: tests drive it with any clock. */
long fpay_throttle_wait(const fpay_service_config *cfg,
                        const fpay_counters *c, int64_t now);
/* Applies one outcome (success resets, failure counts and may lock). */
void fpay_throttle_record(const fpay_service_config *cfg, fpay_counters *c,
                          int success, int64_t now);

/* ---------------------------------------------------- service.c hooks */

/* For tests and the CLI; none of these is part of the public API. */

/* Replaces time(NULL) (throttling, terminal windows, audit times) with
 * now(ctx), unix seconds; NULL restores the real clock. Set it before the
 * service is shared between threads. */
void fpay_service_set_clock(fpay_service *svc, int64_t (*now)(void *ctx),
                            void *ctx);

/* How many templates were opened and compared since open, decoy included:
 * an unknown account must cost one of each, like a known one. */
typedef struct fpay_service_counts {
    long template_opens;
    long compares;
} fpay_service_counts;
void fpay_service_counts_get(fpay_service *svc, fpay_service_counts *out);

/* The service's store and keys (borrowed; keys change on rotate_key). */
fpay_store *fpay_service_store(fpay_service *svc);
const fpay_keys *fpay_service_keys(fpay_service *svc);

/* Replaces the threshold in use (calibrate does this after storing it). */
void fpay_service_set_threshold(fpay_service *svc, float threshold,
                                double fmr);

#endif /* FPAY_SERVICE_INTERNAL_H */
