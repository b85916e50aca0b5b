/* graph.c - building, cloning, editing and validating the IR. */
#include "graph.h"

#include <stdlib.h>
#include <string.h>

void fpay_graph_init(fpay_graph *g) { memset(g, 0, sizeof *g); }

void fpay_graph_free(fpay_graph *g)
{
    if (!g)
        return;
    for (int i = 0; i < g->n_owned; i++)
        free(g->owned[i]);
    free(g->owned);
    free(g->tensors);
    free(g->nodes);
    memset(g, 0, sizeof *g);
}

static bool grow(void **arr, int *cap, int need, size_t elem)
{
    if (need <= *cap)
        return true;
    int ncap = *cap ? *cap : 16;
    while (ncap < need) {
        if (ncap > (1 << 28))
            return false;
        ncap *= 2;
    }
    void *p = realloc(*arr, (size_t)ncap * elem);
    if (!p)
        return false;
    *arr = p;
    *cap = ncap;
    return true;
}

void *fpay_graph_alloc(fpay_graph *g, size_t size)
{
    if (size > SIZE_MAX - 128)
        return NULL;
    if (!grow((void **)&g->owned, &g->cap_owned, g->n_owned + 1, sizeof(void *)))
        return NULL;
    /* aligned_alloc wants a multiple of the alignment; 64 bytes suits every
     * vector width we target. */
    size_t rounded = (size + 63) & ~(size_t)63;
    if (rounded == 0)
        rounded = 64;
    void *p = aligned_alloc(64, rounded);
    if (!p)
        return NULL;
    memset(p, 0, rounded);
    g->owned[g->n_owned++] = p;
    return p;
}

const char *fpay_graph_strdup(fpay_graph *g, const char *s, size_t len)
{
    char *p = fpay_graph_alloc(g, len + 1);
    if (!p)
        return NULL;
    if (len)
        memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

int fpay_graph_add_tensor(fpay_graph *g, const fpay_tensor *t)
{
    if (!grow((void **)&g->tensors, &g->cap_tensors, g->n_tensors + 1,
              sizeof(fpay_tensor)))
        return -1;
    g->tensors[g->n_tensors] = *t;
    return g->n_tensors++;
}

int fpay_graph_add_node(fpay_graph *g, const fpay_node *n)
{
    if (!grow((void **)&g->nodes, &g->cap_nodes, g->n_nodes + 1,
              sizeof(fpay_node)))
        return -1;
    g->nodes[g->n_nodes] = *n;
    return g->n_nodes++;
}

int fpay_graph_add_const_f32(fpay_graph *g, const char *name, int rank,
                             const int64_t *dims, const float *values)
{
    fpay_tensor t;
    memset(&t, 0, sizeof t);
    t.dtype = FPAY_DT_F32;
    t.rank = rank;
    for (int i = 0; i < rank; i++)
        t.dims[i] = dims[i];
    int64_t count = fpay_dims_count(rank, dims);
    if (count < 0)
        return -1;
    t.nbytes = (size_t)count * sizeof(float);
    void *data = fpay_graph_alloc(g, t.nbytes);
    if (!data)
        return -1;
    if (t.nbytes)
        memcpy(data, values, t.nbytes);
    t.data = data;
    t.flags = FPAY_TENSOR_CONST;
    t.name = fpay_graph_strdup(g, name, strlen(name));
    if (!t.name)
        return -1;
    return fpay_graph_add_tensor(g, &t);
}

fpay_status fpay_graph_clone_shallow(fpay_graph *dst, const fpay_graph *src)
{
    fpay_graph_init(dst);
    if (src->n_tensors) {
        dst->tensors = malloc((size_t)src->n_tensors * sizeof(fpay_tensor));
        if (!dst->tensors)
            goto oom;
        memcpy(dst->tensors, src->tensors,
               (size_t)src->n_tensors * sizeof(fpay_tensor));
    }
    dst->n_tensors = dst->cap_tensors = src->n_tensors;
    if (src->n_nodes) {
        dst->nodes = malloc((size_t)src->n_nodes * sizeof(fpay_node));
        if (!dst->nodes)
            goto oom;
        memcpy(dst->nodes, src->nodes, (size_t)src->n_nodes * sizeof(fpay_node));
    }
    dst->n_nodes = dst->cap_nodes = src->n_nodes;
    dst->inputs = fpay_graph_alloc(dst, (size_t)src->n_inputs * sizeof(int));
    dst->outputs = fpay_graph_alloc(dst, (size_t)src->n_outputs * sizeof(int));
    if (!dst->inputs || !dst->outputs)
        goto oom;
    if (src->n_inputs)
        memcpy(dst->inputs, src->inputs, (size_t)src->n_inputs * sizeof(int));
    if (src->n_outputs)
        memcpy(dst->outputs, src->outputs, (size_t)src->n_outputs * sizeof(int));
    dst->n_inputs = src->n_inputs;
    dst->n_outputs = src->n_outputs;
    return FPAY_OK;
oom:
    fpay_graph_free(dst);
    return FPAY_OUT_OF_MEMORY;
}

void fpay_node_init(fpay_node *n, fpay_op op)
{
    memset(n, 0, sizeof *n);
    n->op = op;
    n->act = FPAY_ACT_NONE;
    n->act_slope = -1;
    n->source_index = -1;
    for (int i = 0; i < FPAY_MAX_NODE_INPUTS; i++)
        n->inputs[i] = -1;
    for (int i = 0; i < FPAY_MAX_NODE_OUTPUTS; i++)
        n->outputs[i] = -1;
}

int64_t fpay_dims_count(int rank, const int64_t *dims)
{
    const int64_t limit = INT64_MAX / 16;
    int64_t n = 1;
    for (int i = 0; i < rank; i++) {
        if (dims[i] < 0)
            return -1;
        if (dims[i] != 0 && n > limit / dims[i])
            return -1;
        n *= dims[i];
    }
    return n;
}

int64_t fpay_tensor_count(const fpay_tensor *t)
{
    return fpay_dims_count(t->rank, t->dims);
}

int fpay_graph_consumers(const fpay_graph *g, int t)
{
    int count = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const fpay_node *n = &g->nodes[i];
        for (int k = 0; k < n->n_inputs; k++)
            count += n->inputs[k] == t;
        count += n->act_slope == t;
    }
    return count;
}

bool fpay_graph_is_output(const fpay_graph *g, int t)
{
    for (int i = 0; i < g->n_outputs; i++)
        if (g->outputs[i] == t)
            return true;
    return false;
}

void fpay_graph_remove_nodes(fpay_graph *g, const bool *drop)
{
    int w = 0;
    for (int i = 0; i < g->n_nodes; i++)
        if (!drop[i])
            g->nodes[w++] = g->nodes[i];
    g->n_nodes = w;
}

fpay_status fpay_graph_validate(const fpay_graph *g, char *err, size_t err_len)
{
    if (g->n_inputs < 1 || g->n_outputs < 1) {
        fpay_set_err(err, err_len, "graph has %d inputs and %d outputs",
                     g->n_inputs, g->n_outputs);
        return FPAY_MODEL_MALFORMED;
    }
    bool *ready = calloc((size_t)g->n_tensors + 1, sizeof(bool));
    if (!ready)
        return FPAY_OUT_OF_MEMORY;
    fpay_status st = FPAY_OK;
    for (int t = 0; t < g->n_tensors; t++)
        ready[t] = (g->tensors[t].flags & FPAY_TENSOR_CONST) != 0;
    for (int i = 0; i < g->n_inputs; i++) {
        int t = g->inputs[i];
        if (t < 0 || t >= g->n_tensors) {
            fpay_set_err(err, err_len, "graph input %d: tensor %d out of range", i, t);
            st = FPAY_MODEL_MALFORMED;
            goto out;
        }
        ready[t] = true;
    }
    for (int i = 0; i < g->n_nodes && st == FPAY_OK; i++) {
        const fpay_node *n = &g->nodes[i];
        if ((unsigned)n->op >= (unsigned)FPAY_OP_COUNT_ || n->n_inputs < 0 ||
            n->n_inputs > FPAY_MAX_NODE_INPUTS || n->n_outputs < 1 ||
            n->n_outputs > FPAY_MAX_NODE_OUTPUTS) {
            fpay_set_err(err, err_len, "node %d: bad op or arity", i);
            st = FPAY_MODEL_MALFORMED;
            break;
        }
        for (int k = 0; k <= n->n_inputs; k++) {
            int t = k < n->n_inputs ? n->inputs[k] : n->act_slope;
            if (t == -1)
                continue;
            if (t < 0 || t >= g->n_tensors) {
                fpay_set_err(err, err_len, "node %d (%s): input tensor %d out of range",
                             n->source_index, fpay_op_name(n->op), t);
                st = FPAY_MODEL_MALFORMED;
                break;
            }
            if (!ready[t]) {
                fpay_set_err(err, err_len,
                             "node %d (%s): reads tensor %d '%s' before any node writes it",
                             n->source_index, fpay_op_name(n->op), t,
                             g->tensors[t].name ? g->tensors[t].name : "");
                st = FPAY_MODEL_MALFORMED;
                break;
            }
        }
        for (int k = 0; k < n->n_outputs && st == FPAY_OK; k++) {
            int t = n->outputs[k];
            if (t < 0 || t >= g->n_tensors) {
                fpay_set_err(err, err_len, "node %d (%s): output tensor %d out of range",
                             n->source_index, fpay_op_name(n->op), t);
                st = FPAY_MODEL_MALFORMED;
            } else if (ready[t]) {
                fpay_set_err(err, err_len,
                             "node %d (%s): output tensor %d '%s' is a constant, an input or written twice",
                             n->source_index, fpay_op_name(n->op), t,
                             g->tensors[t].name ? g->tensors[t].name : "");
                st = FPAY_MODEL_MALFORMED;
            } else {
                ready[t] = true;
            }
        }
    }
    for (int i = 0; i < g->n_outputs && st == FPAY_OK; i++) {
        int t = g->outputs[i];
        if (t < 0 || t >= g->n_tensors || !ready[t]) {
            fpay_set_err(err, err_len, "graph output %d (tensor %d) is never computed", i, t);
            st = FPAY_MODEL_MALFORMED;
        }
    }
out:
    free(ready);
    return st;
}

int64_t fpay_graph_macs(const fpay_graph *g)
{
    int64_t macs = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const fpay_node *n = &g->nodes[i];
        const fpay_tensor *out = &g->tensors[n->outputs[0]];
        const fpay_tensor *w = n->n_inputs > 1 && n->inputs[1] >= 0
                                   ? &g->tensors[n->inputs[1]] : NULL;
        if (!w)
            continue;
        int64_t outs = fpay_tensor_count(out);
        if (outs < 0)
            continue;
        switch (n->op) {
        case FPAY_OP_CONV_2D:
            if (w->rank == 4)
                macs += outs * w->dims[1] * w->dims[2] * w->dims[3];
            break;
        case FPAY_OP_DEPTHWISE_CONV_2D:
            if (w->rank == 4)
                macs += outs * w->dims[1] * w->dims[2];
            break;
        case FPAY_OP_FULLY_CONNECTED:
            if (w->rank == 2)
                macs += outs * w->dims[1];
            break;
        default:
            break;
        }
    }
    return macs;
}
