/* Helpers shared by the test suites: where data lives, reading files. */
#ifndef FPAY_TEST_UTIL_H
#define FPAY_TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Path of a file under tests/data ($FPAY_TEST_DATA) or the models folder
 * ($FPAY_MODELS_DIR). Returns a static buffer overwritten by the next call. */
const char *fpay_test_data_path(const char *rel);
const char *fpay_test_model_path(const char *file);

/* Reads a whole file into malloc'd memory (caller frees); NULL if missing. */
uint8_t *fpay_test_read_file(const char *path, size_t *size);

/* Reads a raw little-endian float32 file; *count gets the element count. */
float *fpay_test_read_f32(const char *path, size_t *count);

/* Deterministic pseudo-random numbers (xorshift64*), uniform in [lo, hi). */
typedef struct { uint64_t s; } fpay_test_rng;
void fpay_test_rng_seed(fpay_test_rng *r, uint64_t seed);
uint64_t fpay_test_rng_next(fpay_test_rng *r);
float fpay_test_rng_uniform(fpay_test_rng *r, float lo, float hi);

#endif
