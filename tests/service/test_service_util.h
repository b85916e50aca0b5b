/* Shared set-up of the service suites (test_service*.c): a temporary
 * folder with a database and master keys, photos as capture sources, raw
 * SQL on the database for tampering. */
#ifndef FPAY_TEST_SERVICE_UTIL_H
#define FPAY_TEST_SERVICE_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "facepay/service.h"
#include "service/service_internal.h"

typedef struct svc_env {
    char dir[256];
    char db[320];
    char key[320];       /* made by fpay_keygen */
    char key2[320];      /* a second, different key */
} svc_env;

/* mkdtemp under $TMPDIR or /tmp, two keys; asserts on failure. */
void svc_env_init(svc_env *e);
/* Removes the files and the folder. */
void svc_env_fini(svc_env *e);

/* Opens a service on e->db with key_file, liveness on or off, `workers`
 * pipelines; asserts it opens. threshold 0 = calibrated/default. */
fpay_service *svc_open(const svc_env *e, const char *key_file, int liveness, int workers,
                       float threshold);

/* The same with liveness off and one worker, without asserting: the status
 * and the message of the open. */
fpay_status svc_try_open(const svc_env *e, const char *key_file, float threshold,
                         fpay_service **out, char *err, size_t err_len);

/* A photo of tests/data as an encoded capture (data malloc'd: svc_src_free). */
fpay_capture_source svc_src(const char *rel);
void svc_src_free(fpay_capture_source *s);

/* One-capture enroll and a verify of a photo, by phone number. */
fpay_service_result svc_enroll(fpay_service *svc, const char *phone, const char *rel);
fpay_service_result svc_verify(fpay_service *svc, const char *phone, const char *rel);

/* Runs sql on the database (service closed or not); asserts success. */
void svc_sql(const svc_env *e, const char *sql);

/* The integer the query's first row gives. */
long svc_sql_count(const svc_env *e, const char *sql);

/* The injectable clock: returns *(int64_t *)ctx. */
int64_t svc_fake_clock(void *ctx);

#endif
