/*
 * fuzz_tflite.c - libFuzzer target for the TFLite importer.
 *
 * Feeds arbitrary bytes to fpay_tflite_import, as fpay_model_load_memory
 * does. The contract checked besides "no crash, no leak, no hang":
 *   - a rejection always carries a message;
 *   - whatever the importer accepts passes fpay_graph_validate (the importer
 *     promises indices in range and topological order), and shape inference
 *     copes with it (it may refuse it, but must not crash).
 * Seeds: the bundled .tflite models and tests/fuzz/seeds_tflite (made by
 * tests/data/broken_models/make_corpus.py). See docs/model-format.md.
 */
#include "tflite_import.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fpay_graph g;
    char err[256];
    err[0] = '\0';
    fpay_graph_init(&g);
    fpay_status st = fpay_tflite_import(data, size, &g, err, sizeof err);
    if (st != FPAY_OK) {
        if (err[0] == '\0')
            abort();
    } else {
        if (fpay_graph_validate(&g, err, sizeof err) != FPAY_OK)
            abort();
        (void)fpay_graph_infer_shapes(&g, err, sizeof err);
    }
    fpay_graph_free(&g);
    return 0;
}
