/*
 * session.c - a model bound to a backend, with its own shapes and arena.
 *
 * The session clones the model's graph (sharing constants), so each session
 * may have its own batch size and input shapes. Every reshape re-runs shape
 * inference; what depends on the input shapes (the partition between the
 * chosen backend and the CPU fallback, the arena, the chosen backend's
 * prepare) is a plan, kept in a small cache keyed by the input shapes, so
 * going back to shapes seen before (MTCNN's pyramid levels, recurring batch
 * sizes) costs only the shape inference. The CPU backend's state (ISA,
 * packed weights, thread pool) does not depend on shapes: one per session.
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

static void plan_free(fpay_session *s, fpay_plan *p)
{
    if (p->backend_state && s->backend->release)
        s->backend->release(p->backend_state);
    free(p->arena);
    free(p->dims);
    free(p->ranks);
    free(p->node_backend);
    free(p->mine);
    free(p->buffers);
    memset(p, 0, sizeof *p);
}

/* Does p hold the graph's current input shapes? */
static bool plan_matches(const fpay_graph *g, const fpay_plan *p)
{
    for (int i = 0; i < g->n_inputs; i++) {
        const fpay_tensor *t = &g->tensors[g->inputs[i]];
        if (p->ranks[i] != t->rank ||
            memcmp(p->dims[i], t->dims, (size_t)t->rank * sizeof(int64_t)) != 0)
            return false;
    }
    return true;
}

/* Drops least recently used plans other than keep while there are more
 * than FPAY_SESSION_MAX_PLANS or the others' arenas exceed
 * FPAY_SESSION_MAX_PLAN_BYTES; returns where keep is then (plans move). */
static fpay_plan *plans_evict(fpay_session *s, fpay_plan *keep)
{
    for (;;) {
        size_t bytes = 0;
        int victim = -1;
        for (int i = 0; i < s->n_plans; i++) {
            if (&s->plans[i] == keep)
                continue;
            bytes += s->plans[i].arena_size;
            if (victim < 0 || s->plans[i].used < s->plans[victim].used)
                victim = i;
        }
        if (victim < 0 ||
            (s->n_plans <= FPAY_SESSION_MAX_PLANS && bytes <= FPAY_SESSION_MAX_PLAN_BYTES))
            return keep;
        plan_free(s, &s->plans[victim]);
        fpay_plan *last = &s->plans[--s->n_plans];
        if (victim != s->n_plans) {
            s->plans[victim] = *last;
            memset(last, 0, sizeof *last);
            if (keep == last)
                keep = &s->plans[victim];
        }
    }
}

/* Partition and arena for the graph's current shapes, into p (zeroed), and
 * the CPU state extended to the nodes the partition gives the CPU (the
 * chosen backend's own prepare is prepare_backend's). */
static fpay_status plan_build(fpay_session *s, fpay_plan *p)
{
    fpay_graph *g = &s->graph;
    const fpay_backend_iface *cpu = fpay_cpu_backend();
    size_t nt = (size_t)g->n_tensors + 1, nn = (size_t)g->n_nodes + 1;
    size_t *offsets = calloc(nt, sizeof(size_t));
    p->dims = calloc((size_t)g->n_inputs + 1, sizeof *p->dims);
    p->ranks = calloc((size_t)g->n_inputs + 1, sizeof *p->ranks);
    p->buffers = calloc(nt, sizeof(void *));
    p->node_backend = calloc(nn, sizeof(void *));
    p->mine = calloc(nn, sizeof(bool));
    if (!offsets || !p->dims || !p->ranks || !p->buffers || !p->node_backend || !p->mine) {
        free(offsets);
        return fail(s, FPAY_OUT_OF_MEMORY, "session: out of memory");
    }
    for (int i = 0; i < g->n_inputs; i++) {
        const fpay_tensor *t = &g->tensors[g->inputs[i]];
        p->ranks[i] = t->rank;
        memcpy(p->dims[i], t->dims, sizeof p->dims[i]);
    }
    for (int i = 0; i < g->n_nodes; i++) {
        bool theirs = s->backend != cpu && s->backend->supports_node(g, i);
        p->node_backend[i] = theirs ? s->backend : cpu;
        p->mine[i] = theirs || s->backend == cpu;
    }

    fpay_status st = fpay_memplan_build(g, offsets, &p->arena_size);
    if (st) {
        free(offsets);
        return fail(s, st, "memory plan: %s", fpay_status_str(st));
    }
    p->arena = aligned_alloc(64, p->arena_size ? p->arena_size : 64);
    if (!p->arena) {
        free(offsets);
        return fail(s, FPAY_OUT_OF_MEMORY, "cannot allocate a %zu-byte arena", p->arena_size);
    }
    /* Deterministic contents: a kernel that reads an unwritten cell would
     * show up as a stable wrong answer, not as noise. */
    memset(p->arena, 0, p->arena_size ? p->arena_size : 64);
    for (int t = 0; t < g->n_tensors; t++) {
        if (g->tensors[t].flags & FPAY_TENSOR_CONST)
            p->buffers[t] = (void *)g->tensors[t].data;
        else if (offsets[t] != FPAY_MEMPLAN_NONE)
            p->buffers[t] = p->arena + offsets[t];
        else
            p->buffers[t] = NULL;
    }
    free(offsets);
    char msg[224] = "";
    /* The CPU backend's state is the session's: made once, for every shape.
     * When it is the fallback of another backend, the nodes this partition
     * gives it get its prepared (SIMD) kernels too, so a node computes the
     * same bits whichever backend was asked for. */
    bool *cpu_nodes = calloc(nn, sizeof(bool));
    if (!cpu_nodes)
        return fail(s, FPAY_OUT_OF_MEMORY, "session: out of memory");
    for (int i = 0; i < g->n_nodes; i++)
        cpu_nodes[i] = p->node_backend[i] == cpu;
    st = s->cpu_state
             ? fpay_cpu_prepare_more(s->cpu_state, g, cpu_nodes, msg, sizeof msg)
             : cpu->prepare(g, cpu_nodes, s->threads, &s->cpu_state, msg, sizeof msg);
    free(cpu_nodes);
    if (st)
        return fail(s, st, "backend cpu: %s", msg);
    return FPAY_OK;
}

/* The chosen backend's prepare for p, unless it is the CPU (whose state is
 * the session's) or p has it already. */
static fpay_status prepare_backend(fpay_session *s, fpay_plan *p)
{
    if (s->backend == fpay_cpu_backend() || !s->backend->prepare || p->backend_state)
        return FPAY_OK;
    char msg[224] = "";
    fpay_status st =
        s->backend->prepare(&s->graph, p->mine, s->threads, &p->backend_state, msg, sizeof msg);
    if (st)
        return fail(s, st, "backend %s: %s", s->backend->name, msg);
    return FPAY_OK;
}

/* A backend other than the CPU keeps its prepared state for the current
 * plan only: it may hold a device context (the Vulkan plugin's: device,
 * uploaded weights), and released before the next prepare it is parked and
 * taken back, as before plans were cached. */
static void leave_current(fpay_session *s)
{
    if (s->cur && s->cur->backend_state && s->backend->release)
        s->backend->release(s->cur->backend_state);
    if (s->cur)
        s->cur->backend_state = NULL;
}

/* Shapes (inferred again at every call: cheap, and every shape is checked),
 * then the plan of those shapes: from the cache when they were seen before,
 * else built and cached. */
static fpay_status plan(fpay_session *s)
{
    fpay_graph *g = &s->graph;
    s->has_run = false;
    char msg[224] = "";
    fpay_status st = fpay_graph_infer_shapes(g, msg, sizeof msg);
    if (st)
        return fail(s, st, "%s", msg);
    s->clock++;
    for (int i = 0; i < s->n_plans; i++)
        if (plan_matches(g, &s->plans[i])) {
            if (s->cur != &s->plans[i])
                leave_current(s);
            s->cur = &s->plans[i];
            s->cur->used = s->clock;
            s->plan_hits++;
            return prepare_backend(s, s->cur);
        }
    leave_current(s);
    /* Built in the spare slot, so a failure leaves the current plan in the
     * cache (a plugin's state, released above, is prepared again when the
     * caller's shapes are restored); eviction comes after. */
    fpay_plan *p = &s->plans[s->n_plans];
    st = plan_build(s, p);
    if (st == FPAY_OK)
        st = prepare_backend(s, p);
    if (st) {
        plan_free(s, p);
        return st;
    }
    s->n_plans++;
    s->plans_built++;
    p->used = s->clock;
    s->cur = plans_evict(s, p);
    return FPAY_OK;
}

void fpay_session_get_stats(const fpay_session *s, fpay_session_stats *st)
{
    memset(st, 0, sizeof *st);
    if (!s)
        return;
    st->plans_built = s->plans_built;
    st->plan_hits = s->plan_hits;
    st->plans_cached = s->n_plans;
    for (int i = 0; i < s->n_plans; i++)
        st->plan_bytes += s->plans[i].arena_size;
    st->weight_packs = fpay_cpu_state_packs(s->cpu_state);
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
    for (int i = 0; i < s->n_plans; i++)
        plan_free(s, &s->plans[i]);
    if (s->cpu_state)
        fpay_cpu_backend()->release(s->cpu_state);
    fpay_graph_free(&s->graph);
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
    if (!s->cur)
        return fail(s, FPAY_INTERNAL, "the session has no plan");
    memcpy(s->cur->buffers[s->graph.inputs[index]], data, count * sizeof(float));
    return FPAY_OK;
}

fpay_status fpay_session_run(fpay_session *s)
{
    if (!s)
        return FPAY_INVALID_ARGUMENT;
    const fpay_plan *p = s->cur;
    if (!p)
        return fail(s, FPAY_INTERNAL, "the session has no plan");
    fpay_exec_ctx ctx = {&s->graph, p->buffers, s->threads};
    for (int i = 0; i < s->graph.n_nodes;) {
        const fpay_backend_iface *b = p->node_backend[i];
        char msg[192] = "";
        void *state = b == fpay_cpu_backend() ? s->cpu_state
                      : b == s->backend ? p->backend_state : NULL;
        /* A run of consecutive nodes on a backend that can take a range. */
        int last = i;
        if (b->run_range)
            while (last + 1 < s->graph.n_nodes && p->node_backend[last + 1] == b)
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
    if (!s->cur)
        return FPAY_INTERNAL;
    *data = s->cur->buffers[s->graph.outputs[index]];
    *count = (size_t)fpay_tensor_count(t);
    return FPAY_OK;
}

size_t fpay_session_peak_activation_bytes(const fpay_session *s)
{
    return s && s->cur ? s->cur->arena_size : 0;
}

const char *fpay_session_backend(const fpay_session *s)
{
    return s ? s->backend->name : NULL;
}

const char *fpay_session_node_backend(const fpay_session *s, int index)
{
    if (!s || !s->cur || index < 0 || index >= s->graph.n_nodes)
        return NULL;
    return s->cur->node_backend[index]->name;
}
