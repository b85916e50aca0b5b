/* memplan.h - one activation arena per session, buffers reused by lifetime. */
#ifndef FACEPAY_MEMPLAN_H
#define FACEPAY_MEMPLAN_H

#include "graph.h"

#define FPAY_MEMPLAN_NONE SIZE_MAX

/* Assigns every non-constant tensor that the graph uses (inputs, node
 * outputs) an offset in one arena such that tensors alive at the same time
 * never overlap. A tensor lives from the node that writes it (graph inputs:
 * from the start) to the last node that reads it; graph outputs and graph
 * inputs live to the end, so a session can run again on the input it was
 * given without the caller setting it again.
 * offsets[t] is FPAY_MEMPLAN_NONE for constants and unused tensors. Offsets
 * are 64-byte aligned. Greedy by size, as TFLite's planner: the largest
 * tensor is placed first at the lowest offset that fits. */
fpay_status fpay_memplan_build(const fpay_graph *g, size_t *offsets,
                               size_t *arena_size);

#endif
