/* model_impl.h - the model and session structs (internal). */
#ifndef FACEPAY_MODEL_IMPL_H
#define FACEPAY_MODEL_IMPL_H

#include "graph.h"

struct fpay_model {
    fpay_graph graph;                       /* optimised, shapes at declared sizes */
    int imported_nodes;
    int imported_op_counts[FPAY_OP_COUNT_];
    char sha256[65];
};

struct fpay_session {
    const fpay_model *model;
    fpay_graph graph;                       /* shallow clone with own shapes */
    const fpay_backend_iface *backend;      /* the one asked for (or chosen) */
    const fpay_backend_iface **node_backend;/* who runs each node */
    bool *mine;                             /* node_backend[i] == backend */
    void *backend_state;
    void *cpu_state;      /* CPU backend's prepare for the nodes it runs as
                             fallback of another backend (else NULL) */
    int threads;
    size_t *offsets;
    void **buffers;
    uint8_t *arena;
    size_t arena_size;
    bool has_run;
    char errmsg[256];
};

#endif
