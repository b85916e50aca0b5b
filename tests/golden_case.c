#include "golden_case.h"

#include <stdio.h>
#include <stdlib.h>

#include <criterion/criterion.h>

#include "test_util.h"

cJSON *fpay_golden_load(const char *name)
{
    char rel[256];
    snprintf(rel, sizeof rel, "golden/%s.json", name);
    size_t size = 0;
    uint8_t *text = fpay_test_read_file(fpay_test_data_path(rel), &size);
    cr_assert_not_null(text, "cannot read %s", rel);
    cJSON *j = cJSON_ParseWithLength((const char *)text, size);
    free(text);
    cr_assert_not_null(j, "%s is not JSON", rel);
    return j;
}

fpay_model *fpay_golden_model(const cJSON *golden, unsigned flags)
{
    const char *model = cJSON_GetObjectItem(golden, "model")->valuestring;
    char err[256] = "";
    fpay_model *m = NULL;
    cr_assert_eq(fpay_model_load_file(fpay_test_model_path(model), flags, &m, err, sizeof err),
                 FPAY_OK, "%s: %s", model, err);
    return m;
}

/* The case's files live beside its JSON, named relative to golden/. */
static float *read_case_file(const cJSON *entry, size_t *count)
{
    char rel[256];
    snprintf(rel, sizeof rel, "golden/%s", cJSON_GetObjectItem(entry, "file")->valuestring);
    float *data = fpay_test_read_f32(fpay_test_data_path(rel), count);
    cr_assert_not_null(data, "cannot read %s", rel);
    return data;
}

void fpay_golden_feed(fpay_session *s, const cJSON *golden)
{
    int k = 0;
    for (cJSON *in = cJSON_GetObjectItem(golden, "inputs")->child; in; in = in->next, k++) {
        int64_t dims[FPAY_MAX_RANK];
        int rank = 0;
        for (cJSON *d = cJSON_GetObjectItem(in, "shape")->child; d && rank < FPAY_MAX_RANK;
             d = d->next)
            dims[rank++] = (int64_t)d->valuedouble;
        cr_assert_eq(fpay_session_set_input_shape(s, k, rank, dims), FPAY_OK, "%s",
                     fpay_session_errmsg(s));
        size_t count = 0;
        float *data = read_case_file(in, &count);
        cr_assert_eq(fpay_session_set_input(s, k, data, count), FPAY_OK, "%s",
                     fpay_session_errmsg(s));
        free(data);
    }
}

float *fpay_golden_expected(const cJSON *output, size_t *count)
{
    return read_case_file(output, count);
}
