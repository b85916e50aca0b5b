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

/* What a session prepared for one set of input shapes. */
typedef struct fpay_plan {
    int64_t (*dims)[FPAY_MAX_RANK];         /* the key: every input's dims */
    int *ranks;                             /* and ranks */
    const fpay_backend_iface **node_backend;/* who runs each node */
    bool *mine;                             /* node_backend[i] == backend */
    void *backend_state;  /* prepare of a backend other than the CPU (whose
                             state is the session's, for every shape); held
                             by the current plan only (session.c) */
    void **buffers;                         /* per tensor: arena or constant */
    uint8_t *arena;
    size_t arena_size;
    uint64_t used;                          /* last use, for eviction */
} fpay_plan;

/* The plan cache's bounds: at most this many plans, and (beyond the current
 * one, always kept) at most this many arena bytes in all. MTCNN's P-Net on
 * a VGA frame's pyramid needs about 8 plans. */
#define FPAY_SESSION_MAX_PLANS 8
#define FPAY_SESSION_MAX_PLAN_BYTES ((size_t)64 << 20)

struct fpay_session {
    const fpay_model *model;
    fpay_graph graph;                       /* shallow clone with own shapes */
    const fpay_backend_iface *backend;      /* the one asked for (or chosen) */
    void *cpu_state;      /* the CPU backend's prepare (ISA, packed weights,
                             thread pool), shape-independent: made once,
                             extended to nodes a new partition gives the CPU */
    int threads;
    fpay_plan plans[FPAY_SESSION_MAX_PLANS + 1]; /* [0, n_plans): cached;
                                               one spare to build in */
    int n_plans;
    fpay_plan *cur;                         /* the current shapes' plan */
    uint64_t clock;                         /* ticks at every plan use */
    long plans_built, plan_hits;            /* for tests and reports */
    bool has_run;
    char errmsg[256];
};

/* Counters of the session's plan cache and weight packing. */
typedef struct fpay_session_stats {
    long plans_built;   /* plans made: partition, arena, backend prepare */
    long plan_hits;     /* reshapes to shapes whose plan was cached */
    int plans_cached;   /* plans held now */
    size_t plan_bytes;  /* their arenas, in bytes */
    long weight_packs;  /* nodes whose constant weights the CPU packed */
} fpay_session_stats;
void fpay_session_get_stats(const fpay_session *s, fpay_session_stats *st);

#endif
