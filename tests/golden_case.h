/* Reading the oracle's golden cases (tests/data/golden/NAME.json plus raw
 * float32 files), shared by the suites that compare a run with them. */
#ifndef FPAY_TEST_GOLDEN_CASE_H
#define FPAY_TEST_GOLDEN_CASE_H

#include <stddef.h>

#include <cjson/cJSON.h>
#include <facepay/facepay.h>

/* Parses golden/NAME.json (Criterion-asserts that it exists and parses).
 * Caller frees with cJSON_Delete. */
cJSON *fpay_golden_load(const char *name);

/* The case's model, loaded with flags (Criterion-asserts that it loads).
 * Caller frees with fpay_model_free. */
fpay_model *fpay_golden_model(const cJSON *golden, unsigned flags);

/* Sets every input of the case on s: its shape, then its data. */
void fpay_golden_feed(fpay_session *s, const cJSON *golden);

/* The expected values of one entry of the case's "outputs" array (malloc'd,
 * caller frees; Criterion-asserts that the file is there). */
float *fpay_golden_expected(const cJSON *output, size_t *count);

#endif
