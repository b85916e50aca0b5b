/* test_service_util.c - see test_service_util.h. */
#define _POSIX_C_SOURCE 200809L
#include "test_service_util.h"

#include <criterion/criterion.h>
#include <sqlite3.h>

#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void svc_env_init(svc_env *e)
{
    memset(e, 0, sizeof *e);
    const char *tmp = getenv("TMPDIR");
    snprintf(e->dir, sizeof e->dir, "%s/fpay_svc_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    cr_assert_not_null(mkdtemp(e->dir), "mkdtemp %s", e->dir);
    snprintf(e->db, sizeof e->db, "%s/facepay.db", e->dir);
    snprintf(e->key, sizeof e->key, "%s/master.key", e->dir);
    snprintf(e->key2, sizeof e->key2, "%s/master2.key", e->dir);
    char err[256];
    cr_assert_eq(fpay_keygen(e->key, err, sizeof err), FPAY_OK, "%s", err);
    cr_assert_eq(fpay_keygen(e->key2, err, sizeof err), FPAY_OK, "%s", err);
}

void svc_env_fini(svc_env *e)
{
    const char *suffix[] = {"", "-wal", "-shm", "-journal"};
    char p[400];
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s%s", e->db, suffix[i]);
        unlink(p);
    }
    unlink(e->key);
    unlink(e->key2);
    rmdir(e->dir);
}

static const char *models_dir(void)
{
    static char dir[4096];
    snprintf(dir, sizeof dir, "%s", fpay_test_model_path("pnet.tflite"));
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = 0;
    return dir;
}

fpay_status svc_try_open(const svc_env *e, const char *key_file, float threshold,
                         fpay_service **out, char *err, size_t err_len)
{
    fpay_service_config cfg;
    fpay_service_config_init(&cfg);
    cfg.db_path = e->db;
    cfg.key_file = key_file;
    cfg.pipeline.models_dir = models_dir();
    cfg.pipeline.liveness = 0;
    cfg.threshold = threshold;
    cfg.default_country_code = "86";
    return fpay_service_open(&cfg, out, err, err_len);
}

fpay_service *svc_open(const svc_env *e, const char *key_file, int liveness, int workers,
                       float threshold)
{
    fpay_service_config cfg;
    fpay_service_config_init(&cfg);
    cfg.db_path = e->db;
    cfg.key_file = key_file;
    cfg.pipeline.models_dir = models_dir();
    cfg.pipeline.liveness = liveness;
    cfg.workers = workers;
    cfg.threshold = threshold;
    cfg.default_country_code = "86";
    fpay_service *svc = NULL;
    char err[512] = "";
    fpay_status st = fpay_service_open(&cfg, &svc, err, sizeof err);
    cr_assert_eq(st, FPAY_OK, "service_open: %s", err);
    return svc;
}

fpay_capture_source svc_src(const char *rel)
{
    fpay_capture_source s = {0};
    size_t size = 0;
    s.data = fpay_test_read_file(fpay_test_data_path(rel), &size);
    cr_assert_not_null(s.data, "read %s", rel);
    s.size = size;
    return s;
}

void svc_src_free(fpay_capture_source *s)
{
    free((void *)s->data);
    s->data = NULL;
}

fpay_service_result svc_enroll(fpay_service *svc, const char *phone, const char *rel)
{
    fpay_capture_source s = svc_src(rel);
    fpay_request req = {.terminal_id = "t1", .id_kind = FPAY_ID_PHONE, .account = phone};
    fpay_service_result r;
    fpay_service_enroll(svc, &req, &s, 1, &r);
    svc_src_free(&s);
    return r;
}

fpay_service_result svc_verify(fpay_service *svc, const char *phone, const char *rel)
{
    fpay_capture_source s = svc_src(rel);
    fpay_request req = {.terminal_id = "t1", .id_kind = FPAY_ID_PHONE, .account = phone};
    fpay_service_result r;
    fpay_service_verify(svc, &req, &s, &r);
    svc_src_free(&s);
    return r;
}

void svc_sql(const svc_env *e, const char *sql)
{
    sqlite3 *db = NULL;
    cr_assert_eq(sqlite3_open(e->db, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    cr_assert_eq(rc, SQLITE_OK, "%s: %s", sql, msg ? msg : "");
    sqlite3_free(msg);
    cr_assert_eq(sqlite3_close(db), SQLITE_OK);
}

int64_t svc_fake_clock(void *ctx) { return *(const int64_t *)ctx; }

long svc_sql_count(const svc_env *e, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;
    cr_assert_eq(sqlite3_open(e->db, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK, "%s", sql);
    cr_assert_eq(sqlite3_step(stmt), SQLITE_ROW, "%s", sql);
    long n = (long)sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return n;
}
