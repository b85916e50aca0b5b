/* tflite_import.h - TFLite flatbuffer to facepay graph (internal). */
#ifndef FACEPAY_TFLITE_IMPORT_H
#define FACEPAY_TFLITE_IMPORT_H

#include "graph.h"

#include <stdint.h>

/* Parses a TFLite model held in data[0..size) (borrowed; nothing is kept
 * pointing into it) into g, which must be freshly initialised. Trusts no
 * offset, size, index or count. On failure returns MODEL_MALFORMED or
 * MODEL_UNSUPPORTED (or OUT_OF_MEMORY) with one line in err naming what is
 * wrong; g is then left for the caller to free. */
fpay_status fpay_tflite_import(const uint8_t *data, size_t size, fpay_graph *g,
                               char *err, size_t err_len);

#endif
