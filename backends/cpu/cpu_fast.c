/*
 * cpu_fast.c - the CPU backend's prepare/release and its SIMD path.
 *
 * prepare (once per session): choose the ISA (FACEPAY_ISA or the best the
 * CPU has), start the thread pool, and for every node a SIMD kernel applies
 * to, pick the kernel and pack its weights for that kernel's tile, with bias
 * and PReLU slopes padded so the kernels load whole vectors. Nothing of it
 * depends on the input shapes (kernel choice and packing read only weight
 * shapes, strides and dtypes; the pads, the only shape-dependent attribute,
 * are read at run time), so a session keeps one state over every reshape;
 * fpay_cpu_prepare_more prepares nodes a new partition gives the CPU for the
 * first time. The state is per session, so sessions of one model never
 * share mutable memory. run_node then runs the SIMD kernel, split over the
 * session's threads, or returns false and the reference kernel runs
 * (cpu_backend.c). With FACEPAY_ISA=ref no node gets a SIMD kernel: exactly
 * the reference behaviour.
 */
#include "cpu_backend.h"

#include "fpay_simd.h"
#include "graph.h"
#include "threadpool.h"

#include <stdlib.h>
#include <string.h>

typedef enum fast_kind {
    FAST_NONE = 0,
    FAST_GEMM,    /* 1x1 stride-1 unpadded conv and fully connected */
    FAST_CONV,    /* any other full conv */
    FAST_DWCONV,  /* depthwise, multiplier 1 */
    FAST_MAXPOOL,
} fast_kind;

typedef struct fast_node {
    fast_kind kind;
    const fpay_gemm_ukernel *gemm; /* FAST_GEMM */
    const fpay_conv_ukernel *conv; /* FAST_CONV */
    const fpay_dwconv_ukernel *dw; /* FAST_DWCONV */
    const fpay_pool_ukernel *pool; /* FAST_MAXPOOL */
    float *packed;                 /* weights for the kernel's tile */
    float *bias, *slope;           /* padded copies, or NULL */
    int out_c, k, nr, taps;        /* packing geometry (taps: depthwise) */
    bool dynamic;                  /* weights computed at run time (an
                                      unoptimised graph): repacked per run */
    bool prepared;                 /* prepare_node has seen it */
} fast_node;

struct fpay_cpu_state {
    fpay_isa isa;
    fpay_threadpool *pool; /* NULL with one thread */
    int n_nodes;
    fast_node *nodes;
    long packs;            /* nodes whose constant weights were packed */
};

static float *alloc_floats(size_t n)
{
    size_t bytes = (n ? n : 1) * sizeof(float);
    return aligned_alloc(64, (bytes + 63) / 64 * 64);
}

static bool is_const(const fpay_graph *g, int t)
{
    return t >= 0 && (g->tensors[t].flags & FPAY_TENSOR_CONST);
}

/* Room for the packed weights, bias and slope. */
static bool alloc_packed(const fpay_node *n, fast_node *f)
{
    size_t cp = fpay_pack_padded((size_t)f->out_c);
    size_t wn = f->kind == FAST_DWCONV ? fpay_pack_dw_weights_size(f->taps, f->out_c)
                                       : fpay_pack_weights_size(f->out_c, f->k, f->nr);
    if (!(f->packed = alloc_floats(wn)))
        return false;
    if (n->n_inputs > 2 && n->inputs[2] >= 0 && !(f->bias = alloc_floats(cp)))
        return false;
    return n->act != FPAY_ACT_PRELU || (f->slope = alloc_floats(cp)) != NULL;
}

/* Packs weights, bias and slope from their current values (data[t]). */
static void pack(const fpay_node *n, fast_node *f, const void *const *data)
{
    if (f->kind == FAST_DWCONV)
        fpay_pack_dw_weights_f32(f->taps, f->out_c, data[n->inputs[1]], f->packed);
    else
        fpay_pack_weights_f32(f->out_c, f->k, f->nr, data[n->inputs[1]], f->packed);
    if (f->bias)
        fpay_pack_channels_f32(f->out_c, data[n->inputs[2]], f->bias);
    if (f->slope)
        fpay_pack_channels_f32(f->out_c, data[n->act_slope], f->slope);
}

/* pack() over the graph's constants. */
static void pack_const(const fpay_graph *g, const fpay_node *n, fast_node *f)
{
    const void *w = g->tensors[n->inputs[1]].data;
    if (f->kind == FAST_DWCONV)
        fpay_pack_dw_weights_f32(f->taps, f->out_c, w, f->packed);
    else
        fpay_pack_weights_f32(f->out_c, f->k, f->nr, w, f->packed);
    if (f->bias)
        fpay_pack_channels_f32(f->out_c, g->tensors[n->inputs[2]].data, f->bias);
    if (f->slope)
        fpay_pack_channels_f32(f->out_c, g->tensors[n->act_slope].data, f->slope);
}

/* Weights, bias and slope all constant: packed once at prepare. */
static bool all_const(const fpay_graph *g, const fpay_node *n)
{
    return is_const(g, n->inputs[1]) &&
           (n->n_inputs <= 2 || n->inputs[2] < 0 || is_const(g, n->inputs[2])) &&
           (n->act != FPAY_ACT_PRELU || is_const(g, n->act_slope));
}

/* Can a SIMD kernel take this node? Every tensor it touches must be f32. */
static bool eligible(const fpay_graph *g, const fpay_node *n)
{
    if (n->inputs[0] < 0 || g->tensors[n->inputs[0]].dtype != FPAY_DT_F32 ||
        g->tensors[n->outputs[0]].dtype != FPAY_DT_F32)
        return false;
    return n->op == FPAY_OP_MAX_POOL_2D || (n->n_inputs >= 2 && n->inputs[1] >= 0);
}

/* The GEMM kernel for isa and n output channels: FACEPAY_GEMM_KERNEL=name
 * picks another entry of the table for that ISA (A/B benchmarks of a new
 * tile against the one it replaced, both built in); otherwise, or if no
 * such entry, fpay_gemm_select's choice for n. */
static const fpay_gemm_ukernel *gemm_select(fpay_isa isa, int n)
{
    const char *want = getenv("FACEPAY_GEMM_KERNEL");
    for (int i = 0; want && i < fpay_gemm_ukernel_count; i++)
        if (fpay_gemm_ukernels[i].isa == isa && !strcmp(fpay_gemm_ukernels[i].name, want))
            return &fpay_gemm_ukernels[i];
    return fpay_gemm_select(isa, n);
}

static fpay_status prepare_node(const fpay_graph *g, int i, fpay_isa isa, fast_node *f)
{
    const fpay_node *n = &g->nodes[i];
    f->prepared = true;
    if (!eligible(g, n))
        return FPAY_OK;
    const fpay_tensor *x = &g->tensors[n->inputs[0]];
    const fpay_tensor *y = &g->tensors[n->outputs[0]];
    if (n->op == FPAY_OP_MAX_POOL_2D) {
        if ((f->pool = fpay_maxpool_select(isa)))
            f->kind = FAST_MAXPOOL;
        return FPAY_OK;
    }
    const fpay_tensor *w = &g->tensors[n->inputs[1]];
    int out_c = 0, k = 0, nr = 0, taps = 0;
    if (n->op == FPAY_OP_CONV_2D) {
        const fpay_conv_attr *a = &n->attr.conv;
        out_c = (int)w->dims[0];
        k = (int)(w->dims[1] * w->dims[2] * w->dims[3]);
        /* The pads come from shape inference, but a 1x1 kernel at stride 1
         * has none at any input shape (SAME and VALID alike): the choice
         * holds for every shape. */
        bool pointwise = w->dims[1] == 1 && w->dims[2] == 1 && a->stride_h == 1 &&
                         a->stride_w == 1 && !a->pad_top && !a->pad_left &&
                         !a->pad_bottom && !a->pad_right;
        if (pointwise && (f->gemm = gemm_select(isa, out_c))) {
            f->kind = FAST_GEMM;
            nr = f->gemm->nr;
        } else if ((f->conv = fpay_conv_select(isa))) {
            f->kind = FAST_CONV;
            nr = f->conv->nr;
        }
    } else if (n->op == FPAY_OP_FULLY_CONNECTED) {
        out_c = (int)w->dims[0];
        k = (int)w->dims[1];
        if ((f->gemm = gemm_select(isa, out_c))) {
            f->kind = FAST_GEMM;
            nr = f->gemm->nr;
        }
    } else if (n->op == FPAY_OP_DEPTHWISE_CONV_2D) {
        const fpay_conv_attr *a = &n->attr.conv;
        out_c = (int)y->dims[3];
        if (out_c != (int)x->dims[3])
            return FPAY_OK; /* depth multiplier > 1: reference */
        f->dw = fpay_dwconv_select(isa, (int)w->dims[1], (int)w->dims[2], a->stride_h,
                                   a->stride_w);
        if (!f->dw)
            return FPAY_OK;
        f->kind = FAST_DWCONV;
        taps = (int)(w->dims[1] * w->dims[2]);
    }
    if (f->kind == FAST_NONE)
        return FPAY_OK;
    f->out_c = out_c;
    f->k = k;
    f->nr = nr;
    f->taps = taps;
    if (!alloc_packed(n, f))
        return FPAY_OUT_OF_MEMORY;
    f->dynamic = !all_const(g, n);
    if (!f->dynamic)
        pack_const(g, n, f);
    return FPAY_OK;
}

/* Prepares the nodes of mine (NULL: all) not prepared yet. */
static fpay_status prepare_nodes(fpay_cpu_state *s, const fpay_graph *g, const bool *mine)
{
    if (s->isa == FPAY_ISA_REF)
        return FPAY_OK;
    for (int i = 0; i < g->n_nodes && i < s->n_nodes; i++) {
        if ((mine && !mine[i]) || s->nodes[i].prepared)
            continue;
        if (prepare_node(g, i, s->isa, &s->nodes[i]) != FPAY_OK)
            return FPAY_OUT_OF_MEMORY;
        s->packs += s->nodes[i].kind != FAST_NONE && s->nodes[i].kind != FAST_MAXPOOL &&
                    !s->nodes[i].dynamic;
    }
    return FPAY_OK;
}

fpay_status fpay_cpu_prepare_more(void *state, const fpay_graph *g, const bool *mine,
                                  char *err, size_t err_len)
{
    if (prepare_nodes(state, g, mine) != FPAY_OK) {
        fpay_set_err(err, err_len, "out of memory packing weights");
        return FPAY_OUT_OF_MEMORY;
    }
    return FPAY_OK;
}

long fpay_cpu_state_packs(const fpay_cpu_state *s) { return s ? s->packs : 0; }

void fpay_cpu_release(void *state)
{
    fpay_cpu_state *s = state;
    if (!s)
        return;
    for (int i = 0; i < s->n_nodes; i++) {
        free(s->nodes[i].packed);
        free(s->nodes[i].bias);
        free(s->nodes[i].slope);
    }
    free(s->nodes);
    fpay_threadpool_free(s->pool);
    free(s);
}

fpay_status fpay_cpu_prepare(const fpay_graph *g, const bool *mine, int threads,
                             void **state, char *err, size_t err_len)
{
    *state = NULL;
    fpay_isa isa;
    if (fpay_cpu_choose_isa(&isa, err, err_len) != 0)
        return FPAY_BACKEND_UNAVAILABLE;
    fpay_cpu_state *s = calloc(1, sizeof *s);
    if (!s || !(s->nodes = calloc((size_t)g->n_nodes + 1, sizeof(fast_node)))) {
        free(s);
        fpay_set_err(err, err_len, "out of memory");
        return FPAY_OUT_OF_MEMORY;
    }
    s->isa = isa;
    s->n_nodes = g->n_nodes;
    if (isa != FPAY_ISA_REF) {
        if (prepare_nodes(s, g, mine) != FPAY_OK) {
            fpay_cpu_release(s);
            fpay_set_err(err, err_len, "out of memory packing weights");
            return FPAY_OUT_OF_MEMORY;
        }
        /* The reference kernels are single-threaded: a pool only helps the
         * SIMD path. */
        if (threads > 1 && !(s->pool = fpay_threadpool_create(threads))) {
            fpay_cpu_release(s);
            fpay_set_err(err, err_len, "cannot start %d threads", threads);
            return FPAY_OUT_OF_MEMORY;
        }
    }
    *state = s;
    return FPAY_OK;
}

fpay_isa fpay_cpu_state_isa(const fpay_cpu_state *s) { return s ? s->isa : FPAY_ISA_REF; }

const char *fpay_cpu_state_kernel(const fpay_cpu_state *s, int index)
{
    if (!s || index < 0 || index >= s->n_nodes)
        return NULL;
    const fast_node *f = &s->nodes[index];
    switch (f->kind) {
    case FAST_GEMM: return f->gemm->name;
    case FAST_CONV: return f->conv->name;
    case FAST_DWCONV: return f->dw->name;
    case FAST_MAXPOOL: return f->pool->name;
    case FAST_NONE: break;
    }
    return NULL;
}

/* Trampolines from the pool's (ctx, begin, end) to each family's kernel. */
typedef struct gemm_job { fpay_gemm_fn fn; fpay_gemm_args a; } gemm_job;
typedef struct conv_job { fpay_conv_fn fn; fpay_conv_args a; } conv_job;
typedef struct dw_job { fpay_dwconv_fn fn; fpay_dwconv_args a; } dw_job;
typedef struct pool_job { fpay_pool_fn fn; fpay_pool_args a; } pool_job;

static void gemm_task(void *c, size_t b, size_t e) { gemm_job *j = c; j->fn(&j->a, b, e); }
static void conv_task(void *c, size_t b, size_t e) { conv_job *j = c; j->fn(&j->a, b, e); }
static void dw_task(void *c, size_t b, size_t e) { dw_job *j = c; j->fn(&j->a, b, e); }
static void pool_task(void *c, size_t b, size_t e) { pool_job *j = c; j->fn(&j->a, b, e); }

static void run_tasks(fpay_cpu_state *s, size_t n, fpay_task_fn fn, void *job)
{
    if (s->pool)
        fpay_threadpool_run(s->pool, n, fn, job);
    else if (n)
        fn(job, 0, n);
}

static fpay_kepilogue kepilogue(const fpay_exec_ctx *ctx, const fpay_node *n,
                                const fast_node *f)
{
    fpay_kepilogue e;
    memset(&e, 0, sizeof e);
    e.bias = f->bias;
    e.act = (fpay_kact)n->act;
    e.alpha = n->act_alpha;
    e.slope = f->slope;
    if (n->op == FPAY_OP_CONV_2D && n->n_inputs > FPAY_CONV_INPUT_RESIDUAL &&
        n->inputs[FPAY_CONV_INPUT_RESIDUAL] >= 0)
        e.residual = ctx->buffers[n->inputs[FPAY_CONV_INPUT_RESIDUAL]];
    return e;
}

bool fpay_cpu_fast_run(fpay_cpu_state *s, const fpay_exec_ctx *ctx, int index)
{
    if (!s || index >= s->n_nodes || s->nodes[index].kind == FAST_NONE)
        return false;
    const fast_node *f = &s->nodes[index];
    const fpay_graph *g = ctx->graph;
    const fpay_node *n = &g->nodes[index];
    const fpay_tensor *x = &g->tensors[n->inputs[0]];
    const fpay_tensor *y = &g->tensors[n->outputs[0]];
    const float *in = ctx->buffers[n->inputs[0]];
    float *out = ctx->buffers[n->outputs[0]];
    if (f->dynamic) /* weights are this run's values; the state is per session */
        pack(n, (fast_node *)f, (const void *const *)ctx->buffers);
    switch (f->kind) {
    case FAST_GEMM: {
        gemm_job j = {f->gemm->fn, {0}};
        const int n_out = (int)y->dims[y->rank - 1];
        j.a.k = (int)g->tensors[n->inputs[1]].dims[n->op == FPAY_OP_CONV_2D ? 3 : 1];
        j.a.m = (int)(fpay_tensor_count(x) / j.a.k);
        j.a.n = n_out;
        j.a.a = in;
        j.a.lda = (size_t)j.a.k;
        j.a.packed_w = f->packed;
        j.a.ep = kepilogue(ctx, n, f);
        j.a.c = out;
        j.a.ldc = (size_t)n_out;
        run_tasks(s, fpay_gemm_tasks(&j.a, f->gemm->mr, f->gemm->nr), gemm_task, &j);
        return true;
    }
    case FAST_CONV: {
        conv_job j = {f->conv->fn, {{0}, in, f->packed, kepilogue(ctx, n, f), out}};
        fpay_cpu_conv_params(ctx, n, &j.a.p);
        run_tasks(s, fpay_conv_tasks(&j.a, f->conv->nr), conv_task, &j);
        return true;
    }
    case FAST_DWCONV: {
        dw_job j = {f->dw->fn, {{0}, in, f->packed, kepilogue(ctx, n, f), out}};
        fpay_cpu_conv_params(ctx, n, &j.a.p);
        run_tasks(s, fpay_dwconv_tasks(&j.a), dw_task, &j);
        return true;
    }
    case FAST_MAXPOOL: {
        pool_job j = {f->pool->fn, {{0}, in, out}};
        fpay_cpu_pool_params(ctx, n, &j.a.p);
        run_tasks(s, fpay_pool_tasks(&j.a), pool_task, &j);
        fpay_cpu_pool_act(n, (size_t)fpay_tensor_count(y), out);
        return true;
    }
    case FAST_NONE: break;
    }
    return false;
}
