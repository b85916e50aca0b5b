#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char path_buf[4096];

static const char *join(const char *env, const char *fallback, const char *rel)
{
    const char *dir = getenv(env);
    if (!dir || !*dir)
        dir = fallback;
    snprintf(path_buf, sizeof path_buf, "%s/%s", dir, rel);
    return path_buf;
}

const char *fpay_test_data_path(const char *rel)
{
    return join("FPAY_TEST_DATA", "tests/data", rel);
}

const char *fpay_test_model_path(const char *file)
{
    return join("FPAY_MODELS_DIR", "models", file);
}

uint8_t *fpay_test_read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return NULL;
    }
    long n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return NULL;
    }
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf && n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf)
        *size = (size_t)n;
    return buf;
}

float *fpay_test_read_f32(const char *path, size_t *count)
{
    size_t size = 0;
    uint8_t *raw = fpay_test_read_file(path, &size);
    if (!raw)
        return NULL;
    *count = size / sizeof(float);
    return (float *)raw; /* malloc'd memory is suitably aligned for float */
}

void fpay_test_rng_seed(fpay_test_rng *r, uint64_t seed)
{
    r->s = seed ? seed : 0x9E3779B97F4A7C15ull;
}

uint64_t fpay_test_rng_next(fpay_test_rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 2685821657736338717ull;
}

float fpay_test_rng_uniform(fpay_test_rng *r, float lo, float hi)
{
    double u = (double)(fpay_test_rng_next(r) >> 11) / 9007199254740992.0;
    return (float)(lo + (hi - lo) * u);
}
