/*
 * vk_plan.c - the prepared state (vk_state, one per prepare): the
 * activation arena laid out by lifetime, its staging buffer, one descriptor
 * set and one dispatch (pipeline, push constants) per node. It depends on
 * the shapes and is rebuilt at each prepare, unlike the device context
 * (vk_context.c) it takes; the command buffers are recorded at the first run
 * of a range (vulkan_backend.c).
 */
#include "vk_internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

void vk_range_free(vk_state *s, vk_range *r)
{
    if (r->cmd && s->c)
        s->c->f.vkFreeCommandBuffers(s->c->dev, s->c->cpool, 1, &r->cmd);
    free(r->io);
    memset(r, 0, sizeof *r);
}

static void release_state(vk_state *s)
{
    if (!s)
        return;
    vk_ctx *c = s->c;
    if (c && c->dev) {
        bool in_flight = c->broken &&
                         c->f.vkWaitForFences(c->dev, 1, &c->fence, VK_TRUE,
                                              RELEASE_GRACE_NS) != VK_SUCCESS;
        if (!in_flight) {
            for (int i = 0; i < s->n_ranges; i++)
                vk_range_free(s, &s->ranges[i]);
            vk_buf_free(c, &s->arena);
            vk_buf_free(c, &s->stage);
            if (s->dpool)
                c->f.vkDestroyDescriptorPool(c->dev, s->dpool, NULL);
        }
    }
    for (int i = 0; i < s->n_ranges; i++)
        free(s->ranges[i].io);
    vk_ctx_release(c);
    free(s->act_off);
    free(s->sets);
    free(s->disp);
    free(s->mine);
    free(s);
}

void vk_release(void *state) { release_state(state); }

/* Arena layout by lifetime, as core/src/memplan.c: a tensor lives from the
 * moment it is written on the device (its producer, or the start of the
 * range that uploads it) to its last use on the device (its last reader in
 * our nodes, or the end of the range that downloads it); tensors are placed
 * largest first at the lowest offset free for their whole lifetime. */
typedef struct slot { int t; int lo, hi; size_t size; int64_t off; } slot;

static int slot_by_size(const void *a, const void *b)
{
    const slot *x = a, *y = b;
    if (x->size != y->size)
        return x->size < y->size ? 1 : -1;
    return x->t - y->t;
}

static int slot_by_off(const void *a, const void *b)
{
    const slot *const *x = a, *const *y = b;
    return (*x)->off < (*y)->off ? -1 : (*x)->off > (*y)->off;
}

static fpay_status plan_arena(vk_state *s, const fpay_graph *g, size_t *arena_bytes,
                              char *err, size_t err_len)
{
    int nt = g->n_tensors, nn = g->n_nodes;
    int *run_lo = malloc(((size_t)nn + 1) * sizeof(int));
    int *run_hi = malloc(((size_t)nn + 1) * sizeof(int));
    int *prod = malloc(((size_t)nt + 1) * sizeof(int));
    int *lo = malloc(((size_t)nt + 1) * sizeof(int));
    int *hi = malloc(((size_t)nt + 1) * sizeof(int));
    slot *slots = malloc(((size_t)nt + 1) * sizeof(slot));
    slot **placed = malloc(((size_t)nt + 1) * sizeof(slot *));
    fpay_status st = FPAY_OK;
    if (!run_lo || !run_hi || !prod || !lo || !hi || !slots || !placed) {
        fpay_backend_set_err(err, err_len, "out of memory");
        st = FPAY_OUT_OF_MEMORY;
        goto out;
    }
    for (int i = 0; i < nn; i++) {
        run_lo[i] = s->mine[i] ? (i > 0 && s->mine[i - 1] ? run_lo[i - 1] : i) : -1;
    }
    for (int i = nn - 1; i >= 0; i--)
        run_hi[i] = s->mine[i] ? (i + 1 < nn && s->mine[i + 1] ? run_hi[i + 1] : i) : -1;
    for (int t = 0; t < nt; t++) {
        prod[t] = -1;
        lo[t] = INT_MAX;
        hi[t] = -1;
    }
    for (int i = 0; i < nn; i++)
        if (s->mine[i])
            prod[g->nodes[i].outputs[0]] = i;
    for (int i = 0; i < nn; i++) {
        const fpay_node *n = &g->nodes[i];
        for (int k = 0; k < n->n_inputs; k++) {
            int t = n->inputs[k];
            if (t < 0 || vk_is_const(g, t))
                continue;
            if (!s->mine[i]) {
                /* Read by another backend: downloaded at the end of the
                 * producer's range. */
                if (prod[t] >= 0 && run_hi[prod[t]] > hi[t])
                    hi[t] = run_hi[prod[t]];
                continue;
            }
            bool same_run = prod[t] >= run_lo[i] && prod[t] < i;
            int start = same_run ? prod[t] : run_lo[i];
            if (start < lo[t])
                lo[t] = start;
            if (i > hi[t])
                hi[t] = i;
            if (prod[t] >= 0 && !same_run && run_hi[prod[t]] > hi[t])
                hi[t] = run_hi[prod[t]];
        }
        if (s->mine[i]) {
            int t = n->outputs[0];
            if (i < lo[t])
                lo[t] = i;
            int end = (g->tensors[t].flags & FPAY_TENSOR_OUTPUT) ? run_hi[i] : i;
            if (end > hi[t])
                hi[t] = end;
        }
    }
    int n_slots = 0;
    for (int t = 0; t < nt; t++) {
        s->act_off[t] = -1;
        if (hi[t] < 0 || vk_is_const(g, t))
            continue;
        size_t b = vk_dev_bytes(g, t, s->c->esz);
        b = (b ? b + SLOT_ALIGN - 1 : SLOT_ALIGN) / SLOT_ALIGN * SLOT_ALIGN;
        slots[n_slots++] = (slot){.t = t, .lo = lo[t], .hi = hi[t], .size = b, .off = -1};
    }
    qsort(slots, (size_t)n_slots, sizeof *slots, slot_by_size);
    size_t total = 0;
    for (int i = 0; i < n_slots; i++) {
        int np = 0;
        for (int j = 0; j < i; j++)
            if (slots[j].lo <= slots[i].hi && slots[i].lo <= slots[j].hi)
                placed[np++] = &slots[j];
        qsort(placed, (size_t)np, sizeof *placed, slot_by_off);
        int64_t off = 0;
        for (int j = 0; j < np; j++) {
            if (off + (int64_t)slots[i].size <= placed[j]->off)
                break;
            int64_t end = placed[j]->off + (int64_t)placed[j]->size;
            if (end > off)
                off = end;
        }
        slots[i].off = off;
        s->act_off[slots[i].t] = off;
        if ((size_t)off + slots[i].size > total)
            total = (size_t)off + slots[i].size;
    }
    *arena_bytes = total;
out:
    free(run_lo);
    free(run_hi);
    free(prod);
    free(lo);
    free(hi);
    free(slots);
    free(placed);
    return st;
}

static uint32_t u32(int64_t v) { return (uint32_t)v; }

/* Element offset of a constant in the weights buffer. */
static uint32_t woff(const vk_state *s, int t) { return u32(s->c->wt_off[t] / s->c->esz); }

/* Fills node i's dispatch (pipeline, push constants) from the shapes. */
static fpay_status plan_node(vk_state *s, const fpay_graph *g, int i, char *err, size_t err_len)
{
    const fpay_node *n = &g->nodes[i];
    vk_dispatch *d = &s->disp[i];
    memset(d, 0, sizeof *d);
    const fpay_tensor *x = vk_tensor(g, n->inputs[0]), *y = vk_tensor(g, n->outputs[0]);
    int64_t total = fpay_backend_elems(y);
    d->total = u32(total);
    if (total == 0)
        return FPAY_OK;
    int family = -1;
    int32_t spec[4] = {0, 0, 0, 0};
    bool specialize = false;
    switch (n->op) {
    case FPAY_OP_CONV_2D:
    case FPAY_OP_DEPTHWISE_CONV_2D: {
        conv_pc *p = &d->pc.conv;
        const fpay_tensor *w = vk_tensor(g, n->inputs[1]);
        const fpay_conv_attr *c = &n->attr.conv;
        family = n->op == FPAY_OP_CONV_2D ? PIPE_CONV : PIPE_DWCONV;
        d->size = sizeof *p;
        p->w_off = woff(s, n->inputs[1]);
        if (n->n_inputs > 2 && n->inputs[2] >= 0) {
            p->b_off = woff(s, n->inputs[2]);
            p->flags |= 1;
        }
        if (n->n_inputs > FPAY_CONV_INPUT_RESIDUAL)
            p->flags |= 2;
        if (n->act == FPAY_ACT_PRELU)
            p->s_off = woff(s, n->act_slope);
        p->N = (int32_t)x->dims[0];
        p->H = (int32_t)x->dims[1];
        p->W = (int32_t)x->dims[2];
        p->C = (int32_t)x->dims[3];
        p->OH = (int32_t)y->dims[1];
        p->OW = (int32_t)y->dims[2];
        p->OC = (int32_t)y->dims[3];
        p->KH = (int32_t)w->dims[1];
        p->KW = (int32_t)w->dims[2];
        p->sh = c->stride_h;
        p->sw = c->stride_w;
        p->dh = c->dilation_h;
        p->dw = c->dilation_w;
        p->pt = c->pad_top;
        p->pl = c->pad_left;
        p->mult = n->op == FPAY_OP_DEPTHWISE_CONV_2D ? c->depth_multiplier : 1;
        p->act = (uint32_t)n->act;
        p->alpha = n->act_alpha;
        p->total = d->total;
        /* Kernel size and stride as specialization constants: a handful of
         * pipelines per network (1x1, 3x3 s1/s2, 7x7) with unrolled taps. */
        specialize = p->KH <= 7 && p->KW <= 7 && p->sh <= 4 && p->sw <= 4 &&
                     !vk_env_on("FACEPAY_VK_NO_SPEC");
        spec[0] = p->KH;
        spec[1] = p->KW;
        spec[2] = p->sh;
        spec[3] = p->sw;
        break;
    }
    case FPAY_OP_ADD:
    case FPAY_OP_SUB:
    case FPAY_OP_MUL: {
        binary_pc *p = &d->pc.bin;
        const fpay_tensor *b = vk_tensor(g, n->inputs[1]);
        family = PIPE_BINARY;
        d->size = sizeof *p;
        if (n->act == FPAY_ACT_PRELU)
            p->s_off = woff(s, n->act_slope);
        /* Right-align every shape to 4-D; strides 0 along broadcast dims. */
        const fpay_tensor *ops[2] = {x, b};
        uint32_t *strides[2] = {p->sa, p->sb};
        for (int k = 0; k < 4; k++) {
            int yk = y->rank - 4 + k;
            p->d[k] = yk >= 0 ? u32(y->dims[yk]) : 1;
        }
        for (int o = 0; o < 2; o++) {
            uint32_t stride = 1;
            for (int k = 3; k >= 0; k--) {
                int ok = ops[o]->rank - 4 + k;
                uint32_t dim = ok >= 0 ? u32(ops[o]->dims[ok]) : 1;
                strides[o][k] = dim == 1 ? 0 : stride;
                stride *= dim;
            }
        }
        p->op = n->op == FPAY_OP_ADD ? 0 : n->op == FPAY_OP_SUB ? 1 : 2;
        p->act = (uint32_t)n->act;
        p->alpha = n->act_alpha;
        p->total = d->total;
        break;
    }
    case FPAY_OP_MAX_POOL_2D:
    case FPAY_OP_AVERAGE_POOL_2D: {
        pool_pc *p = &d->pc.pool;
        const fpay_pool_attr *a = &n->attr.pool;
        family = PIPE_POOL;
        d->size = sizeof *p;
        p->N = (int32_t)x->dims[0];
        p->H = (int32_t)x->dims[1];
        p->W = (int32_t)x->dims[2];
        p->C = (int32_t)x->dims[3];
        p->OH = (int32_t)y->dims[1];
        p->OW = (int32_t)y->dims[2];
        p->FH = a->filter_h;
        p->FW = a->filter_w;
        p->sh = a->stride_h;
        p->sw = a->stride_w;
        p->pt = a->pad_top;
        p->pl = a->pad_left;
        p->avg = n->op == FPAY_OP_AVERAGE_POOL_2D;
        p->act = (uint32_t)n->act;
        p->total = d->total;
        break;
    }
    case FPAY_OP_FULLY_CONNECTED: {
        fc_pc *p = &d->pc.fc;
        const fpay_tensor *w = vk_tensor(g, n->inputs[1]);
        family = PIPE_FC;
        d->size = sizeof *p;
        p->w_off = woff(s, n->inputs[1]);
        if (n->n_inputs > 2 && n->inputs[2] >= 0) {
            p->b_off = woff(s, n->inputs[2]);
            p->flags |= 1;
        }
        if (n->act == FPAY_ACT_PRELU)
            p->s_off = woff(s, n->act_slope);
        p->K = u32(w->dims[1]);
        p->units = u32(w->dims[0]);
        p->act = (uint32_t)n->act;
        p->alpha = n->act_alpha;
        p->total = d->total;
        break;
    }
    case FPAY_OP_SOFTMAX: {
        softmax_pc *p = &d->pc.sm;
        family = PIPE_SOFTMAX;
        d->size = sizeof *p;
        p->cols = u32(x->dims[x->rank - 1]);
        p->rows = u32(total / x->dims[x->rank - 1]);
        d->total = p->rows; /* one invocation per row */
        break;
    }
    case FPAY_OP_RESHAPE:
        family = PIPE_COPY;
        d->size = sizeof d->pc.copy;
        d->pc.copy.total = d->total;
        break;
    default:
        fpay_backend_set_err(err, err_len, "vulkan: node %d: op %d not planned", i, (int)n->op);
        return FPAY_INTERNAL;
    }
    return vk_ctx_pipeline(s->c, family, specialize ? spec : NULL, &d->pipe, err, err_len);
}

/* The descriptor of tensor t: its range in the weights buffer (constants)
 * or in the arena. */
static VkDescriptorBufferInfo binding_of(const vk_state *s, const fpay_graph *g, int t)
{
    size_t b = vk_dev_bytes(g, t, s->c->esz);
    if (vk_is_const(g, t))
        return (VkDescriptorBufferInfo){.buffer = s->c->wts.buf,
                                        .offset = (VkDeviceSize)s->c->wt_off[t],
                                        .range = b ? b : 4};
    return (VkDescriptorBufferInfo){.buffer = s->arena.buf,
                                    .offset = (VkDeviceSize)s->act_off[t],
                                    .range = b ? b : 4};
}

static fpay_status make_sets(vk_state *s, const fpay_graph *g, int n_mine, char *err,
                             size_t err_len)
{
    vk_ctx *c = s->c;
    VkDescriptorPoolSize ps = {.type = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                               .descriptorCount = 4u * (uint32_t)n_mine};
    VkDescriptorPoolCreateInfo dpi = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
        .maxSets = (uint32_t)n_mine,
        .poolSizeCount = 1,
        .pPoolSizes = &ps,
    };
    VKCHECK(c->f.vkCreateDescriptorPool(c->dev, &dpi, NULL, &s->dpool), "vkCreateDescriptorPool");
    for (int i = 0; i < g->n_nodes; i++) {
        if (!s->mine[i])
            continue;
        const fpay_node *n = &g->nodes[i];
        VkDescriptorSetAllocateInfo dai = {
            .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
            .descriptorPool = s->dpool,
            .descriptorSetCount = 1,
            .pSetLayouts = &c->dsl,
        };
        VKCHECK(c->f.vkAllocateDescriptorSets(c->dev, &dai, &s->sets[i]),
                "vkAllocateDescriptorSets");
        int second = -1;
        if (n->op == FPAY_OP_ADD || n->op == FPAY_OP_SUB || n->op == FPAY_OP_MUL)
            second = n->inputs[1];
        else if ((n->op == FPAY_OP_CONV_2D || n->op == FPAY_OP_DEPTHWISE_CONV_2D) &&
                 n->n_inputs > FPAY_CONV_INPUT_RESIDUAL)
            second = n->inputs[FPAY_CONV_INPUT_RESIDUAL];
        VkDescriptorBufferInfo bi[4] = {
            binding_of(s, g, n->inputs[0]),
            binding_of(s, g, n->outputs[0]),
            binding_of(s, g, second >= 0 ? second : n->inputs[0]),
            {.buffer = c->wts.buf, .offset = 0, .range = VK_WHOLE_SIZE},
        };
        VkWriteDescriptorSet w[4];
        for (uint32_t k = 0; k < 4; k++)
            w[k] = (VkWriteDescriptorSet){
                .sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
                .dstSet = s->sets[i],
                .dstBinding = k,
                .descriptorCount = 1,
                .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                .pBufferInfo = &bi[k],
            };
        c->f.vkUpdateDescriptorSets(c->dev, 4, w, 0, NULL);
    }
    return FPAY_OK;
}

static fpay_status prepare(vk_state *s, const fpay_graph *g, const bool *mine, char *err,
                           size_t err_len)
{
    const char *prec_value;
    int prec = vk_precision_env(&prec_value);
    if (prec == PREC_INVALID) {
        fpay_backend_set_err(err, err_len,
                             "FACEPAY_VK_PRECISION=%.32s is invalid: use fp16 or fp32",
                             prec_value);
        return FPAY_INVALID_ARGUMENT;
    }
    s->n_tensors = g->n_tensors;
    s->n_nodes = g->n_nodes;
    size_t nt = (size_t)g->n_tensors + 1, nn = (size_t)g->n_nodes + 1;
    s->act_off = malloc(nt * sizeof *s->act_off);
    s->disp = calloc(nn, sizeof *s->disp);
    s->sets = calloc(nn, sizeof *s->sets);
    s->mine = calloc(nn, sizeof *s->mine);
    if (!s->act_off || !s->disp || !s->sets || !s->mine) {
        fpay_backend_set_err(err, err_len, "out of memory");
        return FPAY_OUT_OF_MEMORY;
    }
    int n_mine = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        s->mine[i] = mine[i] && vk_supports_node(g, i);
        if (mine[i] && !s->mine[i]) {
            fpay_backend_set_err(err, err_len,
                                 "node %d (op %d) was given to vulkan but is not supported", i,
                                 (int)g->nodes[i].op);
            return FPAY_INTERNAL;
        }
        n_mine += s->mine[i];
    }
    if (n_mine == 0)
        return FPAY_OK; /* nothing to run: no device needed */

    /* The context first: its precision sets the arena's element size. */
    fpay_status st = vk_ctx_acquire(g, prec == PREC_FP16, &s->c, err, err_len);
    if (st)
        return st;
    vk_ctx *c = s->c;
    size_t arena_bytes = 0;
    if ((st = plan_arena(s, g, &arena_bytes, err, err_len)))
        return st;
    static const VkMemoryPropertyFlags dl[3] = {MEM_DL | MEM_HV, MEM_DL, MEM_HV};
    st = vk_buf_create(c, &s->arena, arena_bytes ? arena_bytes : SLOT_ALIGN,
                    VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                        VK_BUFFER_USAGE_TRANSFER_DST_BIT,
                    dl, err, err_len);
    if (st)
        return st;
    s->staging = !s->arena.map || vk_env_on("FACEPAY_VK_STAGING");
    if (s->staging && (st = vk_stage_create(c, &s->stage, s->arena.size, err, err_len)))
        return st;
    if ((st = make_sets(s, g, n_mine, err, err_len)))
        return st;
    for (int i = 0; i < g->n_nodes; i++)
        if (s->mine[i] && (st = plan_node(s, g, i, err, err_len)))
            return st;
    vk_save_pipeline_cache(c); /* new pipelines: on disk for the next process */
    return FPAY_OK;
}

fpay_status vk_prepare(const fpay_graph *g, const bool *mine, int threads, void **state,
                       char *err, size_t err_len)
{
    (void)threads; /* the device has its own parallelism */
    *state = NULL;
    vk_state *s = calloc(1, sizeof *s);
    if (!s) {
        fpay_backend_set_err(err, err_len, "out of memory");
        return FPAY_OUT_OF_MEMORY;
    }
    fpay_status st = prepare(s, g, mine, err, err_len);
    if (st) {
        release_state(s);
        return st;
    }
    *state = s;
    return FPAY_OK;
}
