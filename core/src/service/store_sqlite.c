/*
 * store_sqlite.c - the store of service_internal.h over one SQLite file.
 *
 * Durability: WAL with synchronous=FULL, because a lost commit here is a
 * lost enrollment, a forgotten failure counter (free guesses) or a hole in
 * the audit log. Every write is one BEGIN IMMEDIATE transaction (the write
 * lock is taken up front, so two writers never deadlock upgrading read
 * locks) and every failure rolls it back. write_batch puts several writes
 * (the service's state change and the audit record of its answer) in one
 * such transaction; the single-write calls are one-part batches.
 *
 * A COMMIT that fails at the WAL fsync, after its frames were written, is
 * reported as a failure, yet WAL recovery at the next open may find the
 * frames and keep the transaction, whole (service_internal.h's contract).
 *
 * Threads: a small pool of connections, each used by one thread at a time
 * (SQLITE_OPEN_NOMUTEX). Readers run in parallel under WAL; writers queue
 * on SQLite's lock with the busy timeout, which also covers other
 * processes (the CLI rotating keys while the server runs). A connection
 * that saw any SQLite error is closed rather than reused: after an I/O or
 * memory failure its state is not worth trusting, and reopening is cheap.
 *
 * The file is outside input. Every value read back is checked for type and
 * size before use (a hash that is not 32 bytes is a corrupt row, not a
 * memcpy), the schema must carry our application_id and a known version,
 * and triggers or views in a planted file cannot call functions
 * (trusted_schema off, defensive mode on).
 */
#include "service_internal.h"

#include "status.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#define POOL_MAX 4
#define APP_ID 0x46504159 /* "FPAY" in PRAGMA application_id */
/* Far above a template (512 floats sealed: 2088 bytes); a larger blob in
 * the file is corruption, and must not become a huge allocation. */
#define BLOB_MAX (1 << 20)
#define NAME_MAX_LEN 63          /* terminal ids and setting names */
#define VALUE_MAX_LEN 4095       /* setting values */
#define CAPTURES_MAX 64
/* Terminal failures older than this are pruned at each insert; it is far
 * longer than any sensible counting window (default 300 s). */
#define FAILURE_KEEP_S 86400

/* Schema migrations: migrations[v] takes a database from user_version v to
 * v + 1. Append only; never edit a shipped step. */
static const char *const migrations[] = {
    /* v0 -> v1 */
    "CREATE TABLE accounts ("
    "  hash BLOB PRIMARY KEY NOT NULL"
    "    CHECK (typeof(hash) = 'blob' AND length(hash) = 32),"
    "  model_sha256 TEXT NOT NULL,"
    "  template_version INTEGER NOT NULL,"
    "  key_id TEXT NOT NULL,"
    "  blob BLOB NOT NULL,"
    "  enrolled_at INTEGER NOT NULL"
    ") WITHOUT ROWID;"
    /* Kept for unknown accounts too, so no foreign key. */
    "CREATE TABLE counters ("
    "  hash BLOB PRIMARY KEY NOT NULL"
    "    CHECK (typeof(hash) = 'blob' AND length(hash) = 32),"
    "  failures INTEGER NOT NULL,"
    "  last_failure INTEGER NOT NULL,"
    "  locked INTEGER NOT NULL"
    ") WITHOUT ROWID;"
    "CREATE TABLE captures ("
    "  hash BLOB PRIMARY KEY NOT NULL"
    "    CHECK (typeof(hash) = 'blob' AND length(hash) = 32),"
    "  account BLOB NOT NULL REFERENCES accounts(hash)"
    "    ON DELETE CASCADE ON UPDATE CASCADE"
    ") WITHOUT ROWID;"
    "CREATE INDEX captures_account ON captures(account);"
    "CREATE TABLE terminal_failures ("
    "  id INTEGER PRIMARY KEY,"
    "  terminal TEXT NOT NULL,"
    "  at INTEGER NOT NULL"
    ");"
    "CREATE INDEX terminal_failures_terminal ON terminal_failures(terminal, at);"
    "CREATE INDEX terminal_failures_at ON terminal_failures(at);"
    "CREATE TABLE terminals ("
    "  id TEXT PRIMARY KEY NOT NULL,"
    "  key_hash BLOB NOT NULL"
    ") WITHOUT ROWID;"
    "CREATE TABLE audit ("
    "  seq INTEGER PRIMARY KEY,"
    "  time_ms INTEGER NOT NULL,"
    "  terminal TEXT NOT NULL,"
    "  account_prefix TEXT NOT NULL,"
    "  op TEXT NOT NULL,"
    "  decision TEXT NOT NULL,"
    "  reason TEXT NOT NULL,"
    "  latency_ms REAL NOT NULL,"
    "  prev BLOB NOT NULL,"
    "  hash BLOB NOT NULL"
    ");"
    /* Append-only against our own bugs; the hash chain is what stands
     * against someone who edits the file. */
    "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit"
    "  BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;"
    "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit"
    "  BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;"
    "CREATE TABLE settings ("
    "  name TEXT PRIMARY KEY NOT NULL,"
    "  value TEXT NOT NULL"
    ") WITHOUT ROWID;",
    /* v1 -> v2 goes here. */
};
#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))

typedef struct sq_store {
    fpay_store base;
    char *path;
    char *vfs;
    int busy_ms;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    sqlite3 *idle[POOL_MAX];
    int n_idle;
    int n_open;   /* idle + lent out */
} sq_store;

/* One store call: the connection it borrowed and where errors go. */
typedef struct call {
    sq_store *s;
    sqlite3 *db;
    int broken;   /* close the connection instead of returning it */
    char *err;
    size_t el;
} call;

/* ------------------------------------------------------------ errors */

static fpay_status map_rc(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_NOMEM: return FPAY_OUT_OF_MEMORY;
    case SQLITE_IOERR:
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_READONLY:
    case SQLITE_PROTOCOL:
    case SQLITE_PERM:
    case SQLITE_AUTH: return FPAY_IO_ERROR;
    default: return FPAY_INTERNAL;
    }
}

static fpay_status sq_fail(call *c, int rc, const char *what)
{
    c->broken = 1;
    fpay_set_err(c->err, c->el, "store %s: %s: %s", c->s->path, what,
                 c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
    return map_rc(rc);
}

/* A value in the file that is not what we wrote: corruption or tampering. */
static fpay_status bad_row(call *c, const char *table, const char *what)
{
    fpay_set_err(c->err, c->el, "store %s: corrupt %s row: %s", c->s->path,
                 table, what);
    return FPAY_IO_ERROR;
}

static fpay_status bad_arg(char *err, size_t el, const char *what)
{
    fpay_set_err(err, el, "store: %s", what);
    return FPAY_INVALID_ARGUMENT;
}

/* ------------------------------------------------------ small helpers */

static fpay_status prep(call *c, const char *sql, sqlite3_stmt **st)
{
    *st = NULL;
    int rc = sqlite3_prepare_v2(c->db, sql, -1, st, NULL);
    if (rc != SQLITE_OK) {
        sqlite3_finalize(*st);
        *st = NULL;
        return sq_fail(c, rc, "prepare");
    }
    return FPAY_OK;
}

static fpay_status exec(call *c, const char *sql, const char *what)
{
    int rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? FPAY_OK : sq_fail(c, rc, what);
}

/* Runs a statement that returns no row; finalizes it. */
static fpay_status step_done(call *c, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? FPAY_OK : sq_fail(c, rc, what);
}

static int bind_hash(sqlite3_stmt *st, int i, const uint8_t *h)
{
    return sqlite3_bind_blob(st, i, h, FPAY_HASH_BYTES, SQLITE_STATIC);
}

static int bind_text(sqlite3_stmt *st, int i, const char *s)
{
    return sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
}

/* 1 when column i is a blob of exactly n bytes, copied to out; 0 when it
 * is anything else; -1 when SQLite ran out of memory fetching it. */
static int col_blob_exact(sqlite3_stmt *st, int i, uint8_t *out, int n)
{
    if (sqlite3_column_type(st, i) != SQLITE_BLOB)
        return 0;
    const void *p = sqlite3_column_blob(st, i);
    int len = sqlite3_column_bytes(st, i);
    if (len != n)
        return 0;
    if (!p)
        return -1;
    memcpy(out, p, (size_t)n);
    return 1;
}

/* Text column into out (cap bytes with the NUL): 1 ok, 0 wrong type, too
 * long or with an embedded NUL, -1 out of memory. */
static int col_text(sqlite3_stmt *st, int i, char *out, size_t cap)
{
    if (sqlite3_column_type(st, i) != SQLITE_TEXT)
        return 0;
    const unsigned char *p = sqlite3_column_text(st, i);
    int len = sqlite3_column_bytes(st, i);
    if (!p)
        return -1;
    if (len < 0 || (size_t)len >= cap || strlen((const char *)p) != (size_t)len)
        return 0;
    memcpy(out, p, (size_t)len + 1);
    return 1;
}

static int is_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')))
            return 0;
    }
    return s[n] == '\0';
}

static int name_ok(const char *s)
{
    return s && s[0] && strnlen(s, NAME_MAX_LEN + 1) <= NAME_MAX_LEN;
}

/* ------------------------------------------------------- connections */

static fpay_status conn_configure(call *c)
{
    sqlite3_extended_result_codes(c->db, 1);
    sqlite3_busy_timeout(c->db, c->s->busy_ms);
    sqlite3_db_config(c->db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL);
    sqlite3_db_config(c->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, (int *)NULL);
    fpay_status st = exec(c,
                          "PRAGMA foreign_keys = ON;"
                          "PRAGMA secure_delete = ON;"
                          "PRAGMA synchronous = FULL;",
                          "configure");
    if (st != FPAY_OK)
        return st;
    /* journal_mode answers with the mode in force: a filesystem without
     * shared memory silently stays in rollback mode, which we refuse. */
    sqlite3_stmt *q;
    if ((st = prep(c, "PRAGMA journal_mode = WAL", &q)) != FPAY_OK)
        return st;
    int rc = sqlite3_step(q);
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(q);
        return sq_fail(c, rc, "journal_mode");
    }
    const unsigned char *mode = sqlite3_column_text(q, 0);
    int wal = mode && strcmp((const char *)mode, "wal") == 0;
    sqlite3_finalize(q);
    if (!wal) {
        c->broken = 1;
        fpay_set_err(c->err, c->el,
                     "store %s: cannot use the WAL journal on this filesystem",
                     c->s->path);
        return FPAY_IO_ERROR;
    }
    return FPAY_OK;
}

/* The database holds sealed templates and the audit chain: only its owner
 * may read it. SQLite creates files with 0644 less the umask, and gives the
 * -wal, -shm and -journal files the mode of the database; so the database is
 * created here, 0600, before SQLite sees it, and an existing database, -wal
 * or -shm that group or others may read is restricted to its owner (or
 * refused when that fails). A path that is not a regular file (a FIFO, a
 * device) is refused; O_NONBLOCK keeps a FIFO from hanging the open. */
static fpay_status private_file(const char *path, const char *what, int create,
                                char *err, size_t el)
{
    int fd = open(path, O_RDWR | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | (create ? O_CREAT : 0),
                  0600);
    if (fd < 0) {
        if (!create && errno == ENOENT)
            return FPAY_OK;
        fpay_set_err(err, el, "store %s: cannot open%s: %s", path, what, strerror(errno));
        return FPAY_IO_ERROR;
    }
    struct stat sb;
    fpay_status st = FPAY_OK;
    if (fstat(fd, &sb) != 0) {
        fpay_set_err(err, el, "store %s: cannot stat%s: %s", path, what, strerror(errno));
        st = FPAY_IO_ERROR;
    } else if (!S_ISREG(sb.st_mode)) {
        fpay_set_err(err, el, "store %s:%s not a regular file", path, what);
        st = FPAY_INVALID_ARGUMENT;
    } else if ((sb.st_mode & 077) && fchmod(fd, sb.st_mode & 0700) != 0) {
        fpay_set_err(err, el,
                     "store %s:%s readable or writable by group or others and "
                     "cannot be restricted (chmod 600 it): %s",
                     path, what, strerror(errno));
        st = FPAY_INVALID_ARGUMENT;
    }
    close(fd);
    return st;
}

static fpay_status private_files(const char *path, char *err, size_t el)
{
    fpay_status st = private_file(path, "", 1, err, el);
    static const char *const side[] = {"-wal", "-shm", "-journal"};
    char p[4200];
    for (size_t i = 0; st == FPAY_OK && i < sizeof side / sizeof side[0]; i++) {
        if ((size_t)snprintf(p, sizeof p, "%s%s", path, side[i]) >= sizeof p) {
            fpay_set_err(err, el, "store: database path too long");
            return FPAY_INVALID_ARGUMENT;
        }
        char what[16];
        snprintf(what, sizeof what, " its %s", side[i] + 1);
        st = private_file(p, what, 0, err, el);
    }
    return st;
}

static fpay_status conn_open(sq_store *s, sqlite3 **out, char *err, size_t el)
{
    call c = {.s = s, .err = err, .el = el};
    int rc = sqlite3_open_v2(s->path, &c.db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                                 SQLITE_OPEN_NOMUTEX,
                             s->vfs);
    fpay_status st = rc == SQLITE_OK ? conn_configure(&c) : sq_fail(&c, rc, "open");
    if (st != FPAY_OK) {
        sqlite3_close_v2(c.db);
        *out = NULL;
        return st;
    }
    *out = c.db;
    return FPAY_OK;
}

static fpay_status acquire(fpay_store *base, call *c, char *err, size_t el)
{
    sq_store *s = (sq_store *)base;
    memset(c, 0, sizeof *c);
    c->s = s;
    c->err = err;
    c->el = el;
    pthread_mutex_lock(&s->mu);
    while (s->n_idle == 0 && s->n_open >= POOL_MAX)
        pthread_cond_wait(&s->cv, &s->mu);
    if (s->n_idle > 0) {
        c->db = s->idle[--s->n_idle];
        pthread_mutex_unlock(&s->mu);
        return FPAY_OK;
    }
    s->n_open++;
    pthread_mutex_unlock(&s->mu);
    fpay_status st = conn_open(s, &c->db, err, el);
    if (st != FPAY_OK) {
        pthread_mutex_lock(&s->mu);
        s->n_open--;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
    }
    return st;
}

static void release(call *c)
{
    sq_store *s = c->s;
    if (!c->broken && !sqlite3_get_autocommit(c->db))
        c->broken = 1; /* a transaction left open is a bug: do not reuse */
    if (c->broken)
        sqlite3_close_v2(c->db);
    pthread_mutex_lock(&s->mu);
    if (c->broken)
        s->n_open--;
    else
        s->idle[s->n_idle++] = c->db;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    c->db = NULL;
}

/* ------------------------------------------------------- transactions */

static fpay_status begin(call *c)
{
    return exec(c, "BEGIN IMMEDIATE", "begin");
}

static void rollback(call *c)
{
    /* SQLite already rolled back after some errors (I/O, full, no
     * memory); ROLLBACK then would fail with "no transaction". */
    if (!sqlite3_get_autocommit(c->db) &&
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL) != SQLITE_OK)
        c->broken = 1; /* closing the connection rolls back */
}

/* Commits when st is FPAY_OK, else rolls back; returns the final status. */
static fpay_status finish(call *c, fpay_status st)
{
    if (st == FPAY_OK)
        st = exec(c, "COMMIT", "commit");
    if (st != FPAY_OK)
        rollback(c);
    return st;
}

/* -------------------------------------------------------- migrations */

static fpay_status pragma_int(call *c, const char *sql, int64_t *v)
{
    sqlite3_stmt *q;
    fpay_status st = prep(c, sql, &q);
    if (st != FPAY_OK)
        return st;
    int rc = sqlite3_step(q);
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(q);
        return sq_fail(c, rc, sql);
    }
    *v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return FPAY_OK;
}

static fpay_status check_version(call *c, int64_t uv)
{
    if (uv > SCHEMA_VERSION) {
        fpay_set_err(c->err, c->el,
                     "store %s: schema version %lld is newer than this build "
                     "knows (%d): use a newer facepay",
                     c->s->path, (long long)uv, SCHEMA_VERSION);
        return FPAY_INVALID_ARGUMENT;
    }
    if (uv < 0) {
        fpay_set_err(c->err, c->el, "store %s: negative schema version",
                     c->s->path);
        return FPAY_INVALID_ARGUMENT;
    }
    return FPAY_OK;
}

static fpay_status migrate(call *c)
{
    int64_t uv = 0, app = 0, objects = 0;
    fpay_status st = pragma_int(c, "PRAGMA user_version", &uv);
    if (st == FPAY_OK)
        st = check_version(c, uv);
    if (st == FPAY_OK)
        st = pragma_int(c, "PRAGMA application_id", &app);
    if (st != FPAY_OK)
        return st;
    if (uv > 0 && app != APP_ID) {
        fpay_set_err(c->err, c->el, "store %s: not a facepay database "
                                    "(application_id differs)", c->s->path);
        return FPAY_INVALID_ARGUMENT;
    }
    if (uv == SCHEMA_VERSION)
        return FPAY_OK;

    if ((st = begin(c)) != FPAY_OK)
        return st;
    /* Again under the write lock: another process may have migrated. */
    st = pragma_int(c, "PRAGMA user_version", &uv);
    if (st == FPAY_OK)
        st = check_version(c, uv);
    if (st == FPAY_OK && uv == 0) {
        st = pragma_int(c, "SELECT count(*) FROM sqlite_schema", &objects);
        if (st == FPAY_OK && objects != 0) {
            fpay_set_err(c->err, c->el,
                         "store %s: has tables but no facepay schema version: "
                         "not a facepay database", c->s->path);
            st = FPAY_INVALID_ARGUMENT;
        }
    }
    for (int64_t v = uv; st == FPAY_OK && v < SCHEMA_VERSION; v++)
        st = exec(c, migrations[v], "migrate");
    if (st == FPAY_OK && uv < SCHEMA_VERSION) {
        char sql[96];
        snprintf(sql, sizeof sql,
                 "PRAGMA application_id = %d; PRAGMA user_version = %d;",
                 APP_ID, SCHEMA_VERSION);
        st = exec(c, sql, "set schema version");
    }
    return finish(c, st);
}

/* ----------------------------------------------------------- accounts */

static fpay_status check_row(const fpay_account_row *row, char *err, size_t el)
{
    if (!row || !row->blob || row->blob_len == 0 || row->blob_len > BLOB_MAX)
        return bad_arg(err, el, "account row without a blob or blob too large");
    if (!is_hex(row->model_sha256, 64) || !is_hex(row->key_id, 16))
        return bad_arg(err, el, "account row: model_sha256 or key_id not hex");
    if (row->template_version < 0)
        return bad_arg(err, el, "account row: negative template version");
    return FPAY_OK;
}

/* Reads the account with hash h into *out (blob malloc'd). */
static fpay_status read_account(call *c, const uint8_t *h, fpay_account_row *out)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *q;
    fpay_status st = prep(c,
                          "SELECT model_sha256, template_version, key_id, blob,"
                          " enrolled_at FROM accounts WHERE hash = ?1",
                          &q);
    if (st != FPAY_OK)
        return st;
    if (bind_hash(q, 1, h) != SQLITE_OK) {
        sqlite3_finalize(q);
        return sq_fail(c, sqlite3_errcode(c->db), "bind");
    }
    int rc = sqlite3_step(q);
    if (rc == SQLITE_DONE) {
        sqlite3_finalize(q);
        fpay_set_err(c->err, c->el, "store: no such account");
        return FPAY_NOT_FOUND;
    }
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(q);
        return sq_fail(c, rc, "read account");
    }
    int r1 = col_text(q, 0, out->model_sha256, sizeof out->model_sha256);
    int r2 = col_text(q, 2, out->key_id, sizeof out->key_id);
    if (r1 < 0 || r2 < 0) {
        sqlite3_finalize(q);
        return sq_fail(c, SQLITE_NOMEM, "read account");
    }
    const char *why = NULL;
    if (!r1 || !is_hex(out->model_sha256, 64))
        why = "model_sha256 is not 64 hex digits";
    else if (!r2 || !is_hex(out->key_id, 16))
        why = "key_id is not 16 hex digits";
    else if (sqlite3_column_type(q, 1) != SQLITE_INTEGER ||
             sqlite3_column_int64(q, 1) < 0 ||
             sqlite3_column_int64(q, 1) > INT_MAX)
        why = "template_version is not a small integer";
    else if (sqlite3_column_type(q, 4) != SQLITE_INTEGER)
        why = "enrolled_at is not an integer";
    else if (sqlite3_column_type(q, 3) != SQLITE_BLOB)
        why = "template is not a blob";
    if (why) {
        sqlite3_finalize(q);
        memset(out, 0, sizeof *out);
        return bad_row(c, "accounts", why);
    }
    out->template_version = (int)sqlite3_column_int64(q, 1);
    out->enrolled_at = sqlite3_column_int64(q, 4);
    const void *p = sqlite3_column_blob(q, 3);
    int len = sqlite3_column_bytes(q, 3);
    if (len <= 0 || len > BLOB_MAX) {
        sqlite3_finalize(q);
        memset(out, 0, sizeof *out);
        return bad_row(c, "accounts", "template blob empty or too large");
    }
    out->blob = p ? malloc((size_t)len) : NULL;
    if (!out->blob) {
        sqlite3_finalize(q);
        memset(out, 0, sizeof *out);
        if (!p)
            return sq_fail(c, SQLITE_NOMEM, "read account");
        fpay_set_err(c->err, c->el, "store: out of memory");
        return FPAY_OUT_OF_MEMORY;
    }
    memcpy(out->blob, p, (size_t)len);
    out->blob_len = (size_t)len;
    memcpy(out->account_hash, h, FPAY_HASH_BYTES);
    sqlite3_finalize(q);
    return FPAY_OK;
}

static fpay_status sq_get_account(fpay_store *base, const uint8_t hash[FPAY_HASH_BYTES],
                                  fpay_account_row *out, char *err, size_t el)
{
    if (!out)
        return bad_arg(err, el, "get_account: NULL argument");
    memset(out, 0, sizeof *out);
    if (!hash)
        return bad_arg(err, el, "get_account: NULL argument");
    call c;
    fpay_status st = acquire(base, &c, err, el);
    if (st != FPAY_OK)
        return st;
    st = read_account(&c, hash, out);
    release(&c);
    return st;
}

/* The writes of each batch part, inside the caller's transaction. */
static fpay_status put_account_in(call *c, const fpay_account_row *row,
                                  const uint8_t (*captures)[FPAY_HASH_BYTES],
                                  int n_captures)
{
    sqlite3_stmt *q;
    fpay_status st;
    /* An upsert, not INSERT OR REPLACE: REPLACE deletes the old row first,
     * and the foreign key would take the capture hashes with it. */
    if ((st = prep(c,
                   "INSERT INTO accounts (hash, model_sha256, template_version,"
                   " key_id, blob, enrolled_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
                   " ON CONFLICT (hash) DO UPDATE SET"
                   " model_sha256 = excluded.model_sha256,"
                   " template_version = excluded.template_version,"
                   " key_id = excluded.key_id, blob = excluded.blob,"
                   " enrolled_at = excluded.enrolled_at",
                   &q)) == FPAY_OK) {
        if (bind_hash(q, 1, row->account_hash) || bind_text(q, 2, row->model_sha256) ||
            sqlite3_bind_int(q, 3, row->template_version) ||
            bind_text(q, 4, row->key_id) ||
            sqlite3_bind_blob(q, 5, row->blob, (int)row->blob_len, SQLITE_STATIC) ||
            sqlite3_bind_int64(q, 6, row->enrolled_at)) {
            sqlite3_finalize(q);
            st = sq_fail(c, sqlite3_errcode(c->db), "bind");
        } else {
            st = step_done(c, q, "write account");
        }
    }
    if (st == FPAY_OK && (st = prep(c, "DELETE FROM counters WHERE hash = ?1",
                                    &q)) == FPAY_OK) {
        bind_hash(q, 1, row->account_hash);
        st = step_done(c, q, "reset counters");
    }
    for (int i = 0; st == FPAY_OK && i < n_captures; i++) {
        /* DO NOTHING: a capture stays attributed to the account it first
         * enrolled; the service refuses reuse before it gets here. */
        if ((st = prep(c,
                       "INSERT INTO captures (hash, account) VALUES (?1, ?2)"
                       " ON CONFLICT (hash) DO NOTHING",
                       &q)) != FPAY_OK)
            break;
        bind_hash(q, 1, captures[i]);
        bind_hash(q, 2, row->account_hash);
        st = step_done(c, q, "remember capture");
    }
    return st;
}

static fpay_status sq_write_batch(fpay_store *base, fpay_store_batch *b, char *err,
                                  size_t el);

static fpay_status sq_put_account(fpay_store *base, const fpay_account_row *row,
                                  const uint8_t (*captures)[FPAY_HASH_BYTES],
                                  int n_captures, char *err, size_t el)
{
    if (!row)
        return bad_arg(err, el, "put_account: NULL argument");
    fpay_store_batch b = {.account = row, .captures = captures, .n_captures = n_captures};
    return sq_write_batch(base, &b, err, el);
}

static fpay_status delete_by_hash(call *c, const char *sql, const uint8_t *h,
                                  int *changes)
{
    sqlite3_stmt *q;
    fpay_status st = prep(c, sql, &q);
    if (st != FPAY_OK)
        return st;
    bind_hash(q, 1, h);
    st = step_done(c, q, "delete");
    if (st == FPAY_OK && changes)
        *changes = sqlite3_changes(c->db);
    return st;
}

static fpay_status delete_account_in(call *c, const uint8_t *hash, int *existed)
{
    int n = 0;
    /* Captures first: the cascade would do it, but not if foreign keys
     * were ever off on some connection. */
    fpay_status st = delete_by_hash(c, "DELETE FROM captures WHERE account = ?1", hash,
                                    NULL);
    if (st == FPAY_OK)
        st = delete_by_hash(c, "DELETE FROM accounts WHERE hash = ?1", hash, &n);
    if (st == FPAY_OK)
        st = delete_by_hash(c, "DELETE FROM counters WHERE hash = ?1", hash, NULL);
    *existed = n > 0;
    return st;
}

static fpay_status sq_delete_account(fpay_store *base, const uint8_t hash[FPAY_HASH_BYTES],
                                     int *existed, char *err, size_t el)
{
    if (existed)
        *existed = 0;
    if (!hash)
        return bad_arg(err, el, "delete_account: NULL argument");
    fpay_store_batch b = {.delete_hash = hash};
    fpay_status st = sq_write_batch(base, &b, err, el);
    if (st == FPAY_OK && existed)
        *existed = b.existed;
    return st;
}

static fpay_status sq_capture_seen(fpay_store *base, const uint8_t hash[FPAY_HASH_BYTES],
                                   int *seen, char *err, size_t el)
{
    if (!hash || !seen)
        return bad_arg(err, el, "capture_seen: NULL argument");
    *seen = 0;
    call c;
    fpay_status st = acquire(base, &c, err, el);
    if (st != FPAY_OK)
        return st;
    sqlite3_stmt *q;
    if ((st = prep(&c, "SELECT 1 FROM captures WHERE hash = ?1", &q)) == FPAY_OK) {
        bind_hash(q, 1, hash);
        int rc = sqlite3_step(q);
        sqlite3_finalize(q);
        if (rc == SQLITE_ROW)
            *seen = 1;
        else if (rc != SQLITE_DONE)
            st = sq_fail(&c, rc, "read capture");
    }
    release(&c);
    return st;
}

/* ----------------------------------------------------------- counters */

static fpay_status sq_get_counters(fpay_store *base, const uint8_t hash[FPAY_HASH_BYTES],
                                   fpay_counters *out, char *err, size_t el)
{
    if (!hash || !out)
        return bad_arg(err, el, "get_counters: NULL argument");
    memset(out, 0, sizeof *out);
    call c;
    fpay_status st = acquire(base, &c, err, el);
    if (st != FPAY_OK)
        return st;
    sqlite3_stmt *q;
    if ((st = prep(&c,
                   "SELECT failures, last_failure, locked FROM counters"
                   " WHERE hash = ?1",
                   &q)) == FPAY_OK) {
        bind_hash(q, 1, hash);
        int rc = sqlite3_step(q);
        if (rc == SQLITE_ROW) {
            int64_t f = sqlite3_column_int64(q, 0);
            int64_t locked = sqlite3_column_int64(q, 2);
            if (sqlite3_column_type(q, 0) != SQLITE_INTEGER ||
                sqlite3_column_type(q, 1) != SQLITE_INTEGER ||
                sqlite3_column_type(q, 2) != SQLITE_INTEGER || f < 0 ||
                f > INT_MAX || (locked != 0 && locked != 1)) {
                st = bad_row(&c, "counters", "values out of range");
            } else {
                out->consecutive_failures = (int)f;
                out->last_failure = sqlite3_column_int64(q, 1);
                out->locked = (int)locked;
            }
        } else if (rc != SQLITE_DONE) {
            st = sq_fail(&c, rc, "read counters");
        }
        sqlite3_finalize(q);
    }
    release(&c);
    return st;
}

static fpay_status put_counters_in(call *c, const uint8_t *hash, const fpay_counters *cn)
{
    sqlite3_stmt *q;
    fpay_status st;
    if (cn->consecutive_failures == 0 && !cn->locked) {
        /* All zero is what an absent row means: keep the table small. */
        return delete_by_hash(c, "DELETE FROM counters WHERE hash = ?1", hash, NULL);
    }
    if ((st = prep(c,
                   "INSERT INTO counters (hash, failures, last_failure,"
                   " locked) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (hash)"
                   " DO UPDATE SET failures = excluded.failures,"
                   " last_failure = excluded.last_failure,"
                   " locked = excluded.locked",
                   &q)) != FPAY_OK)
        return st;
    bind_hash(q, 1, hash);
    sqlite3_bind_int(q, 2, cn->consecutive_failures);
    sqlite3_bind_int64(q, 3, cn->last_failure);
    sqlite3_bind_int(q, 4, cn->locked ? 1 : 0);
    return step_done(c, q, "write counters");
}

static fpay_status sq_put_counters(fpay_store *base, const uint8_t hash[FPAY_HASH_BYTES],
                                   const fpay_counters *cn, char *err, size_t el)
{
    if (!hash || !cn)
        return bad_arg(err, el, "put_counters: NULL argument or negative count");
    fpay_store_batch b = {.counters_hash = hash, .counters = cn};
    return sq_write_batch(base, &b, err, el);
}

/* ---------------------------------------------------------- terminals */

static fpay_status terminal_failure_in(call *c, const char *terminal, int64_t now)
{
    sqlite3_stmt *q;
    fpay_status st;
    if ((st = prep(c, "INSERT INTO terminal_failures (terminal, at) VALUES (?1, ?2)",
                   &q)) == FPAY_OK) {
        bind_text(q, 1, terminal);
        sqlite3_bind_int64(q, 2, now);
        st = step_done(c, q, "record terminal failure");
    }
    if (st == FPAY_OK &&
        (st = prep(c, "DELETE FROM terminal_failures WHERE at < ?1", &q)) == FPAY_OK) {
        sqlite3_bind_int64(q, 1, now - FAILURE_KEEP_S);
        st = step_done(c, q, "prune terminal failures");
    }
    return st;
}

static fpay_status sq_terminal_failure_add(fpay_store *base, const char *terminal,
                                           int64_t now, char *err, size_t el)
{
    if (!name_ok(terminal))
        return bad_arg(err, el, "terminal id missing or longer than 63 bytes");
    fpay_store_batch b = {.failure_terminal = terminal, .failure_at = now};
    return sq_write_batch(base, &b, err, el);
}

static fpay_status sq_terminal_failure_count(fpay_store *base, const char *terminal,
                                             int64_t since, int *count, char *err,
                                             size_t el)
{
    if (!count)
        return bad_arg(err, el, "terminal_failure_count: NULL argument");
    *count = 0;
    if (!name_ok(terminal))
        return bad_arg(err, el, "terminal id missing or longer than 63 bytes");
    call c;
    fpay_status st = acquire(base, &c, err, el);
    if (st != FPAY_OK)
        return st;
    sqlite3_stmt *q;
    if ((st = prep(&c,
                   "SELECT count(*) FROM terminal_failures"
                   " WHERE terminal = ?1 AND at >= ?2",
                   &q)) == FPAY_OK) {
        bind_text(q, 1, terminal);
        sqlite3_bind_int64(q, 2, since);
        int rc = sqlite3_step(q);
        if (rc == SQLITE_ROW) {
            int64_t n = sqlite3_column_int64(q, 0);
            *count = n > INT_MAX ? INT_MAX : (int)n;
        } else {
            st = sq_fail(&c, rc, "count terminal failures");
        }
        sqlite3_finalize(q);
    }
    release(&c);
    return st;
}

static fpay_status sq_terminal_put(fpay_store *base, const char *terminal,
                                   const uint8_t key_hash[FPAY_HASH_BYTES],
                                   char *err, size_t el)
{
    if (!name_ok(terminal) || !key_hash)
        return bad_arg(err, el, "terminal id missing or longer than 63 bytes");
    call c;
    fpay_status st = acquire(base, &c, err, el);
    if (st != FPAY_OK)
        return st;
    sqlite3_stmt *q;
    st = begin(&c);
    if (st == FPAY_OK &&
        (st = prep(&c,
                   "INSERT INTO terminals (id, key_hash) VALUES (?1, ?2)"
                   " ON CONFLICT (id) DO UPDATE SET key_hash = excluded.key_hash",
                   &q)) == FPAY_OK) {
        bind_text(q, 1, terminal);
        bind_hash(q, 2, key_hash);
        st = step_done(&c, q, "write terminal");
    }
    st = finish(&c, st);
    release(&c);
    return st;
}

static fpay_status sq_terminal_get(fpay_store *base, const char *terminal,
                                   uint8_t key_hash[FPAY_HASH_BYTES], char *err,
                                   size_t el)
{
    if (!key_hash)
        return bad_arg(err, el, "terminal_get: NULL argument");
    memset(key_hash, 0, FPAY_HASH_BYTES);
    if (!name_ok(terminal))
        return bad_arg(err, el, "terminal id missing or longer than 63 bytes");
    call c;
    fpay_status st = acquire(base, &c, err, el);
    if (st != FPAY_OK)
        return st;
    sqlite3_stmt *q;
    if ((st = prep(&c, "SELECT key_hash FROM terminals WHERE id = ?1", &q)) == FPAY_OK) {
        bind_text(q, 1, terminal);
        int rc = sqlite3_step(q);
        if (rc == SQLITE_ROW) {
            int r = col_blob_exact(q, 0, key_hash, FPAY_HASH_BYTES);
            if (r < 0)
                st = sq_fail(&c, SQLITE_NOMEM, "read terminal");
            else if (r == 0)
                st = bad_row(&c, "terminals", "key hash is not 32 bytes");
        } else if (rc == SQLITE_DONE) {
            fpay_set_err(err, el, "store: no such terminal");
            st = FPAY_NOT_FOUND;
        } else {
            st = sq_fail(&c, rc, "read terminal");
        }
        sqlite3_finalize(q);
        if (st != FPAY_OK)
            memset(key_hash, 0, FPAY_HASH_BYTES);
    }
    release(&c);
    return st;
}

/* -------------------------------------------------------------- audit */

#define AUDIT_COLUMNS                                                         \
    "seq, time_ms, terminal, account_prefix, op, decision, reason,"           \
    " latency_ms, prev, hash"

static int fits(const char *s, size_t cap) { return strnlen(s, cap) < cap; }

static int audit_ok(const fpay_audit_record *rec)
{
    return rec && fits(rec->terminal_id, sizeof rec->terminal_id) &&
           fits(rec->account_prefix, sizeof rec->account_prefix) &&
           fits(rec->op, sizeof rec->op) && fits(rec->decision, sizeof rec->decision) &&
           fits(rec->reason, sizeof rec->reason);
}

static fpay_status audit_append_in(call *c, const fpay_keys *keys, fpay_audit_record *rec)
{
    sqlite3_stmt *q;
    fpay_status st;
    /* Read the head under the write lock: no other append can slip in
     * between, so the chain never forks. */
    if ((st = prep(c, "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", &q)) !=
        FPAY_OK)
        return st;
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        int r = col_blob_exact(q, 1, rec->prev, FPAY_HASH_BYTES);
        int64_t seq = sqlite3_column_int64(q, 0);
        if (r < 0)
            st = sq_fail(c, SQLITE_NOMEM, "read audit head");
        else if (r == 0 || seq < 1 || seq == INT64_MAX)
            st = bad_row(c, "audit", "last record's hash or seq is invalid");
        else
            rec->seq = seq + 1;
    } else if (rc == SQLITE_DONE) {
        memset(rec->prev, 0, FPAY_HASH_BYTES);
        rec->seq = 1;
    } else {
        st = sq_fail(c, rc, "read audit head");
    }
    sqlite3_finalize(q);
    if (st != FPAY_OK)
        return st;
    fpay_audit_link(keys, rec, rec->hash);
    if ((st = prep(c, "INSERT INTO audit (" AUDIT_COLUMNS ") VALUES"
                      " (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                   &q)) != FPAY_OK)
        return st;
    sqlite3_bind_int64(q, 1, rec->seq);
    sqlite3_bind_int64(q, 2, rec->time_ms);
    bind_text(q, 3, rec->terminal_id);
    bind_text(q, 4, rec->account_prefix);
    bind_text(q, 5, rec->op);
    bind_text(q, 6, rec->decision);
    bind_text(q, 7, rec->reason);
    sqlite3_bind_double(q, 8, rec->latency_ms);
    bind_hash(q, 9, rec->prev);
    bind_hash(q, 10, rec->hash);
    return step_done(c, q, "append audit record");
}

static fpay_status sq_audit_append(fpay_store *base, const fpay_keys *keys,
                                   fpay_audit_record *rec, char *err, size_t el)
{
    if (!keys || !audit_ok(rec))
        return bad_arg(err, el, "audit_append: NULL argument or unterminated field");
    fpay_store_batch b = {.audit = rec, .keys = keys};
    return sq_write_batch(base, &b, err, el);
}

/* ------------------------------------------------------------- batches */

/* Every part is checked before the transaction starts: a malformed batch
 * writes nothing and costs no lock. */
static fpay_status check_batch(const fpay_store_batch *b, char *err, size_t el)
{
    if (!b)
        return bad_arg(err, el, "write_batch: NULL batch");
    if (!b->delete_hash && !b->account && !b->counters_hash && !b->counters &&
        !b->failure_terminal && !b->audit && !b->revoke_terminals)
        return bad_arg(err, el, "write_batch: empty batch");
    if (b->account) {
        fpay_status st = check_row(b->account, err, el);
        if (st != FPAY_OK)
            return st;
    }
    if ((b->n_captures != 0 && !b->account) || b->n_captures < 0 ||
        b->n_captures > CAPTURES_MAX || (b->n_captures > 0 && !b->captures))
        return bad_arg(err, el, "put_account: bad capture list");
    if (!b->counters_hash != !b->counters ||
        (b->counters && b->counters->consecutive_failures < 0))
        return bad_arg(err, el, "put_counters: NULL argument or negative count");
    if (b->failure_terminal && !name_ok(b->failure_terminal))
        return bad_arg(err, el, "terminal id missing or longer than 63 bytes");
    if (b->audit && (!b->keys || !audit_ok(b->audit)))
        return bad_arg(err, el, "audit_append: NULL argument or unterminated field");
    return FPAY_OK;
}

static fpay_status sq_write_batch(fpay_store *base, fpay_store_batch *b, char *err,
                                  size_t el)
{
    fpay_status st = check_batch(b, err, el);
    if (st != FPAY_OK)
        return st;
    b->existed = 0;
    call c;
    if ((st = acquire(base, &c, err, el)) != FPAY_OK)
        return st;
    int existed = 0;
    st = begin(&c);
    if (st == FPAY_OK && b->delete_hash)
        st = delete_account_in(&c, b->delete_hash, &existed);
    if (st == FPAY_OK && b->account)
        st = put_account_in(&c, b->account, b->captures, b->n_captures);
    if (st == FPAY_OK && b->counters_hash)
        st = put_counters_in(&c, b->counters_hash, b->counters);
    if (st == FPAY_OK && b->failure_terminal)
        st = terminal_failure_in(&c, b->failure_terminal, b->failure_at);
    if (st == FPAY_OK && b->revoke_terminals)
        st = exec(&c, "DELETE FROM terminals", "revoke terminals");
    if (st == FPAY_OK && b->audit)
        st = audit_append_in(&c, b->keys, b->audit);
    st = finish(&c, st);
    release(&c);
    if (st == FPAY_OK)
        b->existed = existed;
    return st;
}

static const char *read_audit_row(sqlite3_stmt *q, fpay_audit_record *rec, int *nomem)
{
    memset(rec, 0, sizeof *rec);
    *nomem = 0;
    if (sqlite3_column_type(q, 0) != SQLITE_INTEGER ||
        sqlite3_column_type(q, 1) != SQLITE_INTEGER)
        return "seq or time is not an integer";
    int lt = sqlite3_column_type(q, 7);
    if (lt != SQLITE_FLOAT && lt != SQLITE_INTEGER)
        return "latency is not a number";
    rec->seq = sqlite3_column_int64(q, 0);
    rec->time_ms = sqlite3_column_int64(q, 1);
    rec->latency_ms = sqlite3_column_double(q, 7);
    int r[7] = {
        col_text(q, 2, rec->terminal_id, sizeof rec->terminal_id),
        col_text(q, 3, rec->account_prefix, sizeof rec->account_prefix),
        col_text(q, 4, rec->op, sizeof rec->op),
        col_text(q, 5, rec->decision, sizeof rec->decision),
        col_text(q, 6, rec->reason, sizeof rec->reason),
        col_blob_exact(q, 8, rec->prev, FPAY_HASH_BYTES),
        col_blob_exact(q, 9, rec->hash, FPAY_HASH_BYTES),
    };
    for (int i = 0; i < 7; i++) {
        if (r[i] < 0) {
            *nomem = 1;
            return "out of memory";
        }
    }
    for (int i = 0; i < 7; i++) {
        if (r[i] == 0)
            return i < 5 ? "a text field is not text or too long"
                         : "prev or hash is not 32 bytes";
    }
    return NULL;
}

static fpay_status sq_audit_each(fpay_store *base,
                                 int (*fn)(const fpay_audit_record *rec, void *ctx),
                                 void *ctx, char *err, size_t el)
{
    if (!fn)
        return bad_arg(err, el, "audit_each: NULL callback");
    call c;
    fpay_status st = acquire(base, &c, err, el);
    if (st != FPAY_OK)
        return st;
    /* One statement reads one WAL snapshot: appends during the walk are
     * not seen, and none is seen half. fn must not call the store (it
     * could wait for a connection this walk holds). */
    sqlite3_stmt *q;
    if ((st = prep(&c, "SELECT " AUDIT_COLUMNS " FROM audit ORDER BY seq", &q)) ==
        FPAY_OK) {
        fpay_audit_record rec;
        for (;;) {
            int rc = sqlite3_step(q);
            if (rc == SQLITE_DONE)
                break;
            if (rc != SQLITE_ROW) {
                st = sq_fail(&c, rc, "read audit");
                break;
            }
            int nomem = 0;
            const char *why = read_audit_row(q, &rec, &nomem);
            if (why) {
                st = nomem ? sq_fail(&c, SQLITE_NOMEM, "read audit")
                           : bad_row(&c, "audit", why);
                break;
            }
            if (fn(&rec, ctx))
                break;
        }
        sqlite3_finalize(q);
    }
    release(&c);
    return st;
}

/* ----------------------------------------------------------- settings */

static fpay_status sq_setting_get(fpay_store *base, const char *name, char *value,
                                  size_t value_len, char *err, size_t el)
{
    if (!value || value_len == 0)
        return bad_arg(err, el, "setting_get: no output buffer");
    value[0] = '\0';
    if (!name_ok(name))
        return bad_arg(err, el, "setting name missing or longer than 63 bytes");
    call c;
    fpay_status st = acquire(base, &c, err, el);
    if (st != FPAY_OK)
        return st;
    sqlite3_stmt *q;
    if ((st = prep(&c, "SELECT value FROM settings WHERE name = ?1", &q)) == FPAY_OK) {
        bind_text(q, 1, name);
        int rc = sqlite3_step(q);
        if (rc == SQLITE_ROW) {
            int r = col_text(q, 0, value, value_len);
            if (r < 0) {
                st = sq_fail(&c, SQLITE_NOMEM, "read setting");
            } else if (r == 0) {
                value[0] = '\0';
                if (sqlite3_column_type(q, 0) == SQLITE_TEXT &&
                    strlen((const char *)sqlite3_column_text(q, 0)) ==
                        (size_t)sqlite3_column_bytes(q, 0)) {
                    fpay_set_err(err, el, "store: setting %s does not fit in "
                                          "%zu bytes", name, value_len);
                    st = FPAY_LIMIT_EXCEEDED;
                } else {
                    st = bad_row(&c, "settings", "value is not text");
                }
            }
        } else if (rc == SQLITE_DONE) {
            fpay_set_err(err, el, "store: no setting %s", name);
            st = FPAY_NOT_FOUND;
        } else {
            st = sq_fail(&c, rc, "read setting");
        }
        sqlite3_finalize(q);
    }
    release(&c);
    return st;
}

static fpay_status sq_setting_put(fpay_store *base, const char *name,
                                  const char *value, char *err, size_t el)
{
    if (!name_ok(name) || !value || strnlen(value, VALUE_MAX_LEN + 1) > VALUE_MAX_LEN)
        return bad_arg(err, el, "setting name or value missing or too long");
    call c;
    fpay_status st = acquire(base, &c, err, el);
    if (st != FPAY_OK)
        return st;
    sqlite3_stmt *q;
    st = begin(&c);
    if (st == FPAY_OK &&
        (st = prep(&c,
                   "INSERT INTO settings (name, value) VALUES (?1, ?2)"
                   " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                   &q)) == FPAY_OK) {
        bind_text(q, 1, name);
        bind_text(q, 2, value);
        st = step_done(&c, q, "write setting");
    }
    st = finish(&c, st);
    release(&c);
    return st;
}

/* ------------------------------------------------------------ rekeying */

/* Hashes of every account, read before any is rewritten: updating the
 * primary key under an open cursor could visit a moved row twice. */
static fpay_status list_accounts(call *c, uint8_t (**out)[FPAY_HASH_BYTES], size_t *n)
{
    *out = NULL;
    *n = 0;
    size_t cap = 0;
    sqlite3_stmt *q;
    fpay_status st = prep(c, "SELECT hash FROM accounts", &q);
    while (st == FPAY_OK) {
        int rc = sqlite3_step(q);
        if (rc == SQLITE_DONE)
            break;
        if (rc != SQLITE_ROW) {
            st = sq_fail(c, rc, "list accounts");
            break;
        }
        if (*n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            void *p = realloc(*out, ncap * FPAY_HASH_BYTES);
            if (!p) {
                fpay_set_err(c->err, c->el, "store: out of memory");
                st = FPAY_OUT_OF_MEMORY;
                break;
            }
            *out = p;
            cap = ncap;
        }
        int r = col_blob_exact(q, 0, (*out)[*n], FPAY_HASH_BYTES);
        if (r < 0)
            st = sq_fail(c, SQLITE_NOMEM, "list accounts");
        else if (r == 0)
            st = bad_row(c, "accounts", "hash is not 32 bytes");
        else
            (*n)++;
    }
    sqlite3_finalize(q);
    if (st != FPAY_OK) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return st;
}

static fpay_status move_account(call *c, const uint8_t *old, const fpay_account_row *row)
{
    sqlite3_stmt *q;
    fpay_status st = prep(c,
                          "UPDATE accounts SET hash = ?1, model_sha256 = ?2,"
                          " template_version = ?3, key_id = ?4, blob = ?5,"
                          " enrolled_at = ?6 WHERE hash = ?7",
                          &q);
    if (st != FPAY_OK)
        return st;
    bind_hash(q, 1, row->account_hash);
    bind_text(q, 2, row->model_sha256);
    sqlite3_bind_int(q, 3, row->template_version);
    bind_text(q, 4, row->key_id);
    int rc = sqlite3_bind_blob(q, 5, row->blob, (int)row->blob_len, SQLITE_STATIC);
    sqlite3_bind_int64(q, 6, row->enrolled_at);
    bind_hash(q, 7, old);
    if (rc != SQLITE_OK) {
        sqlite3_finalize(q);
        return sq_fail(c, rc, "bind");
    }
    if ((st = step_done(c, q, "rewrite account")) != FPAY_OK)
        return st;
    if (sqlite3_changes(c->db) != 1) {
        fpay_set_err(c->err, c->el, "store: rekey: account vanished mid-rekey");
        return FPAY_INTERNAL;
    }
    const char *moves[2] = {"UPDATE counters SET hash = ?1 WHERE hash = ?2",
                            "UPDATE captures SET account = ?1 WHERE account = ?2"};
    for (int i = 0; i < 2 && st == FPAY_OK; i++) {
        if ((st = prep(c, moves[i], &q)) != FPAY_OK)
            break;
        bind_hash(q, 1, row->account_hash);
        bind_hash(q, 2, old);
        st = step_done(c, q, "move counters");
    }
    return st;
}

static fpay_status sq_rekey_all(fpay_store *base, int (*fn)(fpay_account_row *row, void *ctx),
                                void *ctx, char *err, size_t el)
{
    if (!fn)
        return bad_arg(err, el, "rekey_all: NULL callback");
    call c;
    fpay_status st = acquire(base, &c, err, el);
    if (st != FPAY_OK)
        return st;
    uint8_t(*hashes)[FPAY_HASH_BYTES] = NULL;
    size_t n = 0;
    st = begin(&c);
    if (st == FPAY_OK)
        st = list_accounts(&c, &hashes, &n);
    for (size_t i = 0; st == FPAY_OK && i < n; i++) {
        fpay_account_row row;
        if ((st = read_account(&c, hashes[i], &row)) != FPAY_OK)
            break;
        if (fn(&row, ctx) != 0) {
            fpay_set_err(err, el, "store: rekey: callback failed on account %zu of %zu",
                         i + 1, n);
            st = FPAY_INTERNAL;
        } else {
            st = check_row(&row, err, el);
        }
        if (st == FPAY_OK)
            st = move_account(&c, hashes[i], &row);
        fpay_account_row_clear(&row);
    }
    /* Counters of unknown accounts stay as they are: the service may keep
     * the account-hash key across a rotation (then they still count), and
     * dropping them would hand a prober fresh attempts. */
    st = finish(&c, st);
    free(hashes);
    release(&c);
    return st;
}

/* -------------------------------------------------------------- check */

static fpay_status sq_check(fpay_store *base, long *accounts, long *audit_records,
                            char *err, size_t el)
{
    if (accounts)
        *accounts = 0;
    if (audit_records)
        *audit_records = 0;
    call c;
    fpay_status st = acquire(base, &c, err, el);
    if (st != FPAY_OK)
        return st;
    sqlite3_stmt *q;
    st = exec(&c, "BEGIN", "begin");
    if (st == FPAY_OK && (st = prep(&c, "PRAGMA integrity_check", &q)) == FPAY_OK) {
        int rc = sqlite3_step(q);
        if (rc != SQLITE_ROW) {
            st = sq_fail(&c, rc, "integrity_check");
        } else {
            const unsigned char *msg = sqlite3_column_text(q, 0);
            if (!msg || strcmp((const char *)msg, "ok") != 0) {
                fpay_set_err(err, el, "store %s: integrity_check: %.200s",
                             c.s->path, msg ? (const char *)msg : "(no answer)");
                st = FPAY_IO_ERROR;
            }
        }
        sqlite3_finalize(q);
    }
    if (st == FPAY_OK && (st = prep(&c, "PRAGMA foreign_key_check", &q)) == FPAY_OK) {
        int rc = sqlite3_step(q);
        sqlite3_finalize(q);
        if (rc == SQLITE_ROW) {
            fpay_set_err(err, el, "store %s: foreign_key_check: dangling rows",
                         c.s->path);
            st = FPAY_IO_ERROR;
        } else if (rc != SQLITE_DONE) {
            st = sq_fail(&c, rc, "foreign_key_check");
        }
    }
    int64_t na = 0, nr = 0;
    if (st == FPAY_OK)
        st = pragma_int(&c, "SELECT count(*) FROM accounts", &na);
    if (st == FPAY_OK)
        st = pragma_int(&c, "SELECT count(*) FROM audit", &nr);
    st = finish(&c, st);
    release(&c);
    if (st == FPAY_OK) {
        if (accounts)
            *accounts = (long)na;
        if (audit_records)
            *audit_records = (long)nr;
    }
    return st;
}

/* -------------------------------------------------------- open, close */

static void sq_close(fpay_store *base)
{
    sq_store *s = (sq_store *)base;
    if (!s)
        return;
    /* The caller guarantees no call is in flight, so every open
     * connection is idle. */
    for (int i = 0; i < s->n_idle; i++)
        sqlite3_close_v2(s->idle[i]);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s->path);
    free(s->vfs);
    free(s);
}

static const fpay_store_ops sq_ops = {
    .version = FPAY_STORE_OPS_VERSION,
    .name = "sqlite",
    .close = sq_close,
    .get_account = sq_get_account,
    .put_account = sq_put_account,
    .delete_account = sq_delete_account,
    .capture_seen = sq_capture_seen,
    .get_counters = sq_get_counters,
    .put_counters = sq_put_counters,
    .terminal_failure_add = sq_terminal_failure_add,
    .terminal_failure_count = sq_terminal_failure_count,
    .terminal_put = sq_terminal_put,
    .terminal_get = sq_terminal_get,
    .audit_append = sq_audit_append,
    .audit_each = sq_audit_each,
    .setting_get = sq_setting_get,
    .setting_put = sq_setting_put,
    .rekey_all = sq_rekey_all,
    .write_batch = sq_write_batch,
    .check = sq_check,
};

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p)
        memcpy(p, s, n);
    return p;
}

fpay_status fpay_store_sqlite_open(const fpay_store_options *opt, fpay_store **out,
                                   char *err, size_t el)
{
    if (!out)
        return bad_arg(err, el, "open: NULL argument");
    *out = NULL;
    if (!opt || !opt->path || !opt->path[0])
        return bad_arg(err, el, "open: no database path");
    /* The library may be built without threads: then the pool's
     * connections could not be used from different threads at all. */
    if (!sqlite3_threadsafe())
        return bad_arg(err, el, "open: SQLite was built without thread support");
    if (opt->vfs && !sqlite3_vfs_find(opt->vfs)) {
        fpay_set_err(err, el, "store: no SQLite VFS named %s", opt->vfs);
        return FPAY_INVALID_ARGUMENT;
    }
    sq_store *s = calloc(1, sizeof *s);
    if (!s) {
        fpay_set_err(err, el, "store: out of memory");
        return FPAY_OUT_OF_MEMORY;
    }
    s->base.ops = &sq_ops;
    s->busy_ms = opt->busy_timeout_ms > 0 ? opt->busy_timeout_ms : 5000;
    s->path = dup_str(opt->path);
    s->vfs = opt->vfs ? dup_str(opt->vfs) : NULL;
    if (!s->path || (opt->vfs && !s->vfs)) {
        free(s->path);
        free(s->vfs);
        free(s);
        fpay_set_err(err, el, "store: out of memory");
        return FPAY_OUT_OF_MEMORY;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);

    call c = {.s = s, .err = err, .el = el};
    fpay_status st = private_files(s->path, err, el);
    if (st == FPAY_OK)
        st = conn_open(s, &c.db, err, el);
    if (st == FPAY_OK) {
        s->n_open = 1;
        st = migrate(&c);
        if (st != FPAY_OK)
            c.broken = 1;
        release(&c);
    }
    if (st != FPAY_OK) {
        sq_close(&s->base);
        return st;
    }
    *out = &s->base;
    return FPAY_OK;
}
