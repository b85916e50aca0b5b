/*
 * session.c - a model bound to a backend, with its own shapes and arena.
 *
 * The session clones the model's graph (sharing constants), so each session
 * may have its own batch size and input shapes. Every reshape re-runs shape
 * inference, re-partitions nodes between the chosen backend and the CPU
 * fallback, re-plans the arena and re-prepares the backend.
 */
#include "cpu_backend.h"
#include "memplan.h"
#include "model_impl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static fpay_status fail(fpay_session *s, fpay_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static fpay_status fail(fpay_session *s, fpay_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->errmsg, sizeof s->errmsg, fmt, ap);
    va_end(ap);
    return st;
}

void fpay_session_options_init(fpay_session_options *o)
{
    if (!o)
        return;
    memset(o, 0, sizeof *o);
    o->struct_size = sizeof *o;
    o->backend = "auto";
    o->threads = 1;
}

static void release_plan(fpay_session *s)
{
    if (s->backend_state && s->backend->release)
        s->backend->release(s->backend_state);
    s->backend_state = NULL;
    if (s->cpu_state)
        fpay_cpu_backend()->release(s->cpu_state);
    s->cpu_state = NULL;
    free(s->arena);
    s->arena = NULL;
    s->arena_size = 0;
}

/* Shapes, partition, arena, backend preparation: everything that depends on
 * the input shapes. */
static fpay_status plan(fpay_session *s)
{
    fpay_graph *g = &s->graph;
    release_plan(s);
    s->has_run = false;
    char msg[224] = "";
    fpay_status st = fpay_graph_infer_shapes(g, msg, sizeof msg);
    if (st)
        return fail(s, st, "%s", msg);

    const fpay_backend_iface *cpu = fpay_cpu_backend();
    for (int i = 0; i < g->n_nodes; i++) {
        bool theirs = s->backend != cpu && s->backend->supports_node(g, i);
        s->node_backend[i] = theirs ? s->backend : cpu;
        s->mine[i] = theirs || s->backend == cpu;
    }

    if ((st = fpay_memplan_build(g, s->offsets, &s->arena_size)))
        return fail(s, st, "memory plan: %s", fpay_status_str(st));
    s->arena = aligned_alloc(64, s->arena_size ? s->arena_size : 64);
    if (!s->arena)
        return fail(s, FPAY_OUT_OF_MEMORY, "cannot allocate a %zu-byte arena",
                    s->arena_size);
    /* Deterministic contents: a kernel that reads an unwritten cell would
     * show up as a stable wrong answer, not as noise. */
    memset(s->arena, 0, s->arena_size ? s->arena_size : 64);
    for (int t = 0; t < g->n_tensors; t++) {
        if (g->tensors[t].flags & FPAY_TENSOR_CONST)
            s->buffers[t] = (void *)g->tensors[t].data;
        else if (s->offsets[t] != FPAY_MEMPLAN_NONE)
            s->buffers[t] = s->arena + s->offsets[t];
        else
            s->buffers[t] = NULL;
    }
    if (s->backend->prepare) {
        st = s->backend->prepare(g, s->mine, s->threads, &s->backend_state, msg,
                                 sizeof msg);
        if (st)
            return fail(s, st, "backend %s: %s", s->backend->name, msg);
    }
    if (s->backend != cpu) {
        /* Fallback nodes get the CPU backend's prepared (SIMD) kernels too,
         * so a node computes the same bits whichever backend was asked for. */
        bool *fallback = calloc((size_t)g->n_nodes + 1, sizeof(bool));
        if (!fallback)
            return fail(s, FPAY_OUT_OF_MEMORY, "session: out of memory");
        for (int i = 0; i < g->n_nodes; i++)
            fallback[i] = !s->mine[i];
        st = cpu->prepare(g, fallback, s->threads, &s->cpu_state, msg, sizeof msg);
        free(fallback);
        if (st)
            return fail(s, st, "backend cpu: %s", msg);
    }
    return FPAY_OK;
}

/* "auto": $FACEPAY_BACKEND when set; else the last registered accelerator
 * backend (registered means its probe passed); else the CPU backend. */
static const fpay_backend_iface *choose_backend(const char *name, char *err,
                                                size_t err_len)
{
    if (!name || !*name || strcmp(name, "auto") == 0) {
        const char *env = getenv("FACEPAY_BACKEND");
        if (env && *env && strcmp(env, "auto") != 0) {
            name = env;
        } else {
            for (int i = fpay_backend_count() - 1; i > 0; i--) {
                const fpay_backend_iface *b = fpay_backend_get(i);
                if (b && (b->caps & FPAY_BACKEND_CAP_ACCELERATOR))
                    return b;
            }
            return fpay_backend_get(0);
        }
    }
    const fpay_backend_iface *b = fpay_backend_find(name);
    if (!b) {
        char known[256] = "";
        size_t used = 0;
        for (int i = 0; i < fpay_backend_count(); i++) {
            int w = snprintf(known + used, sizeof known - used, "%s%s", i ? ", " : "",
                             fpay_backend_get(i)->name);
            if (w < 0 || (size_t)w >= sizeof known - used)
                break;
            used += (size_t)w;
        }
        fpay_set_err(err, err_len, "unknown backend '%s' (available: %s)", name, known);
    }
    return b;
}

fpay_status fpay_session_create(const fpay_model *model,
                                const fpay_session_options *opts,
                                fpay_session **out, char *err, size_t err_len)
{
    if (!model || !out) {
        fpay_set_err(err, err_len, "session: NULL argument");
        return FPAY_INVALID_ARGUMENT;
    }
    *out = NULL;
    fpay_session_options defaults;
    fpay_session_options_init(&defaults);
    if (!opts)
        opts = &defaults;
    if (opts->struct_size < sizeof(fpay_session_options)) {
        fpay_set_err(err, err_len, "session: options struct_size %zu, expects %zu",
                     opts->struct_size, sizeof(fpay_session_options));
        return FPAY_INVALID_ARGUMENT;
    }
    if (opts->threads < 0 || opts->threads > 256) {
        fpay_set_err(err, err_len, "session: %d threads is out of range 0..256",
                     opts->threads);
        return FPAY_INVALID_ARGUMENT;
    }
    const fpay_backend_iface *backend = choose_backend(opts->backend, err, err_len);
    if (!backend)
        return FPAY_BACKEND_UNAVAILABLE;

    fpay_session *s = calloc(1, sizeof *s);
    if (!s) {
        fpay_set_err(err, err_len, "session: out of memory");
        return FPAY_OUT_OF_MEMORY;
    }
    s->model = model;
    s->backend = backend;
    s->threads = opts->threads ? opts->threads : 1;
    fpay_status st = fpay_graph_clone_shallow(&s->graph, &model->graph);
    if (st == FPAY_OK) {
        size_t nt = (size_t)s->graph.n_tensors + 1, nn = (size_t)s->graph.n_nodes + 1;
        s->offsets = calloc(nt, sizeof(size_t));
        s->buffers = calloc(nt, sizeof(void *));
        s->node_backend = calloc(nn, sizeof(void *));
        s->mine = calloc(nn, sizeof(bool));
        if (!s->offsets || !s->buffers || !s->node_backend || !s->mine)
            st = fail(s, FPAY_OUT_OF_MEMORY, "session: out of memory");
        else
            st = plan(s);
    } else {
        fail(s, st, "session: out of memory");
    }
    if (st != FPAY_OK) {
        fpay_set_err(err, err_len, "session: %s", s->errmsg);
        fpay_session_free(s);
        return st;
    }
    *out = s;
    return FPAY_OK;
}

void fpay_session_free(fpay_session *s)
{
    if (!s)
        return;
    if (s->backend)
        release_plan(s);
    fpay_graph_free(&s->graph);
    free(s->offsets);
    free(s->buffers);
    free(s->node_backend);
    free(s->mine);
    free(s);
}

const char *fpay_session_errmsg(const fpay_session *s) { return s ? s->errmsg : ""; }

/* Applies new input dims; on failure restores the old ones so the session
 * stays usable at its previous shapes. */
static fpay_status reshape(fpay_session *s, int first, int last, const int *ranks,
                           const int64_t (*dims)[FPAY_MAX_RANK])
{
    fpay_graph *g = &s->graph;
    int saved_rank[8];
    int64_t saved[8][FPAY_MAX_RANK];
    if (last - first > 8)
        return fail(s, FPAY_LIMIT_EXCEEDED, "too many inputs to reshape at once");
    for (int i = first; i < last; i++) {
        fpay_tensor *t = &g->tensors[g->inputs[i]];
        saved_rank[i - first] = t->rank;
        memcpy(saved[i - first], t->dims, sizeof t->dims);
        t->rank = ranks[i - first];
        memset(t->dims, 0, sizeof t->dims);
        memcpy(t->dims, dims[i - first], (size_t)t->rank * sizeof(int64_t));
    }
    fpay_status st = plan(s);
    if (st == FPAY_OK)
        return FPAY_OK;
    char why[sizeof s->errmsg];
    memcpy(why, s->errmsg, sizeof why);
    for (int i = first; i < last; i++) {
        fpay_tensor *t = &g->tensors[g->inputs[i]];
        t->rank = saved_rank[i - first];
        memcpy(t->dims, saved[i - first], sizeof t->dims);
    }
    if (plan(s) != FPAY_OK)
        return fail(s, FPAY_INTERNAL, "could not restore the previous shapes after: %s", why);
    return fail(s, st, "%s", why);
}

fpay_status fpay_session_set_batch(fpay_session *s, int batch)
{
    if (!s)
        return FPAY_INVALID_ARGUMENT;
    if (batch < 1 || batch > 65536)
        return fail(s, FPAY_INVALID_ARGUMENT, "batch %d is out of range 1..65536", batch);
    fpay_graph *g = &s->graph;
    int n = g->n_inputs < 8 ? g->n_inputs : 8;
    int ranks[8];
    int64_t dims[8][FPAY_MAX_RANK];
    for (int i = 0; i < n; i++) {
        const fpay_tensor *t = &g->tensors[g->inputs[i]];
        if (t->rank < 1)
            return fail(s, FPAY_SHAPE_MISMATCH, "input %d is a scalar: no batch dimension", i);
        ranks[i] = t->rank;
        memcpy(dims[i], t->dims, sizeof dims[i]);
        dims[i][0] = batch;
    }
    return reshape(s, 0, n, ranks, (const int64_t (*)[FPAY_MAX_RANK])dims);
}

fpay_status fpay_session_set_input_shape(fpay_session *s, int index, int rank,
                                         const int64_t *dims)
{
    if (!s)
        return FPAY_INVALID_ARGUMENT;
    if (index < 0 || index >= s->graph.n_inputs)
        return fail(s, FPAY_INVALID_ARGUMENT, "input %d does not exist (the model has %d)",
                    index, s->graph.n_inputs);
    if (rank < 0 || rank > FPAY_MAX_RANK || (!dims && rank))
        return fail(s, FPAY_INVALID_ARGUMENT, "rank %d is out of range 0..%d", rank,
                    FPAY_MAX_RANK);
    int64_t d[1][FPAY_MAX_RANK] = {{0}};
    for (int i = 0; i < rank; i++) {
        if (dims[i] < 1 || dims[i] > (1 << 24))
            return fail(s, FPAY_INVALID_ARGUMENT, "dim %d is %lld", i, (long long)dims[i]);
        d[0][i] = dims[i];
    }
    return reshape(s, index, index + 1, &rank, (const int64_t (*)[FPAY_MAX_RANK])d);
}

int fpay_session_input_count(const fpay_session *s) { return s ? s->graph.n_inputs : -1; }
int fpay_session_output_count(const fpay_session *s) { return s ? s->graph.n_outputs : -1; }

static fpay_status info_of(const fpay_graph *g, int t, fpay_tensor_info *info)
{
    const fpay_tensor *x = &g->tensors[t];
    memset(info, 0, sizeof *info);
    info->name = x->name ? x->name : "";
    info->dtype = x->dtype;
    info->rank = x->rank;
    memcpy(info->dims, x->dims, sizeof info->dims);
    info->count = (size_t)fpay_tensor_count(x);
    return FPAY_OK;
}

fpay_status fpay_session_input_info(const fpay_session *s, int index,
                                    fpay_tensor_info *info)
{
    if (!s || !info || index < 0 || index >= s->graph.n_inputs)
        return FPAY_INVALID_ARGUMENT;
    return info_of(&s->graph, s->graph.inputs[index], info);
}

fpay_status fpay_session_output_info(const fpay_session *s, int index,
                                     fpay_tensor_info *info)
{
    if (!s || !info || index < 0 || index >= s->graph.n_outputs)
        return FPAY_INVALID_ARGUMENT;
    return info_of(&s->graph, s->graph.outputs[index], info);
}

fpay_status fpay_session_set_input(fpay_session *s, int index, const float *data,
                                   size_t count)
{
    if (!s)
        return FPAY_INVALID_ARGUMENT;
    if (index < 0 || index >= s->graph.n_inputs)
        return fail(s, FPAY_INVALID_ARGUMENT, "input %d does not exist (the model has %d)",
                    index, s->graph.n_inputs);
    const fpay_tensor *t = &s->graph.tensors[s->graph.inputs[index]];
    if (t->dtype != FPAY_DT_F32)
        return fail(s, FPAY_MODEL_UNSUPPORTED, "input %d is %s, not float32", index,
                    fpay_dtype_str(t->dtype));
    size_t want = (size_t)fpay_tensor_count(t);
    if (count != want)
        return fail(s, FPAY_SHAPE_MISMATCH,
                    "input %d '%s' needs %zu floats, got %zu", index,
                    t->name ? t->name : "", want, count);
    if (!data && count)
        return fail(s, FPAY_INVALID_ARGUMENT, "input data is NULL");
    memcpy(s->buffers[s->graph.inputs[index]], data, count * sizeof(float));
    return FPAY_OK;
}

fpay_status fpay_session_run(fpay_session *s)
{
    if (!s)
        return FPAY_INVALID_ARGUMENT;
    fpay_exec_ctx ctx = {&s->graph, s->buffers, s->threads};
    for (int i = 0; i < s->graph.n_nodes;) {
        const fpay_backend_iface *b = s->node_backend[i];
        char msg[192] = "";
        void *state = b == s->backend ? s->backend_state
                      : b == fpay_cpu_backend() ? s->cpu_state : NULL;
        /* A run of consecutive nodes on a backend that can take a range. */
        int last = i;
        if (b->run_range)
            while (last + 1 < s->graph.n_nodes && s->node_backend[last + 1] == b)
                last++;
        fpay_status st = b->run_range ? b->run_range(state, &ctx, i, last, msg, sizeof msg)
                                      : b->run_node(state, &ctx, i, msg, sizeof msg);
        if (st != FPAY_OK)
            return fail(s, st, "node %d (%s) on %s: %s", i,
                        fpay_op_name(s->graph.nodes[i].op), b->name, msg);
        i = last + 1;
    }
    s->has_run = true;
    return FPAY_OK;
}

fpay_status fpay_session_output(const fpay_session *s, int index,
                                const float **data, size_t *count)
{
    if (!s || !data || !count || index < 0 || index >= s->graph.n_outputs)
        return FPAY_INVALID_ARGUMENT;
    const fpay_tensor *t = &s->graph.tensors[s->graph.outputs[index]];
    if (t->dtype != FPAY_DT_F32)
        return FPAY_MODEL_UNSUPPORTED;
    *data = s->buffers[s->graph.outputs[index]];
    *count = (size_t)fpay_tensor_count(t);
    return FPAY_OK;
}

size_t fpay_session_peak_activation_bytes(const fpay_session *s)
{
    return s ? s->arena_size : 0;
}

const char *fpay_session_backend(const fpay_session *s)
{
    return s ? s->backend->name : NULL;
}

const char *fpay_session_node_backend(const fpay_session *s, int index)
{
    if (!s || index < 0 || index >= s->graph.n_nodes)
        return NULL;
    return s->node_backend[index]->name;
}
