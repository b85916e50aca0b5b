/* memplan.c - greedy-by-size arena planning. */
#include "memplan.h"

#include <stdlib.h>

typedef struct span {
    int tensor;
    int first, last;   /* node indices, inclusive */
    size_t size;
    size_t offset;
} span;

static int by_size_desc(const void *a, const void *b)
{
    const span *x = a, *y = b;
    if (x->size != y->size)
        return x->size < y->size ? 1 : -1;
    return x->tensor - y->tensor; /* stable order for reproducible plans */
}

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

fpay_status fpay_memplan_build(const fpay_graph *g, size_t *offsets,
                               size_t *arena_size)
{
    int nt = g->n_tensors;
    int *first = malloc(((size_t)nt + 1) * sizeof(int));
    int *last = malloc(((size_t)nt + 1) * sizeof(int));
    span *spans = malloc(((size_t)nt + 1) * sizeof(span));
    if (!first || !last || !spans) {
        free(first);
        free(last);
        free(spans);
        return FPAY_OUT_OF_MEMORY;
    }
    for (int t = 0; t < nt; t++) {
        first[t] = last[t] = -2; /* -2: not used */
        offsets[t] = FPAY_MEMPLAN_NONE;
    }
    for (int i = 0; i < g->n_inputs; i++)
        first[g->inputs[i]] = last[g->inputs[i]] = -1;
    for (int i = 0; i < g->n_nodes; i++) {
        const fpay_node *n = &g->nodes[i];
        for (int k = 0; k <= n->n_inputs; k++) {
            int t = k < n->n_inputs ? n->inputs[k] : n->act_slope;
            if (t >= 0 && first[t] != -2)
                last[t] = i;
        }
        for (int k = 0; k < n->n_outputs; k++) {
            int t = n->outputs[k];
            first[t] = i;
            if (last[t] < i)
                last[t] = i;
        }
    }
    /* Graph outputs live to the end, and so do graph inputs: the caller set
     * them once and may run again on them, so no later tensor may take
     * their memory. */
    for (int i = 0; i < g->n_outputs; i++)
        last[g->outputs[i]] = g->n_nodes;
    for (int i = 0; i < g->n_inputs; i++)
        last[g->inputs[i]] = g->n_nodes;

    int ns = 0;
    for (int t = 0; t < nt; t++) {
        if (first[t] == -2 || (g->tensors[t].flags & FPAY_TENSOR_CONST))
            continue;
        spans[ns].tensor = t;
        spans[ns].first = first[t];
        spans[ns].last = last[t];
        spans[ns].size = align64(g->tensors[t].nbytes ? g->tensors[t].nbytes : 1);
        ns++;
    }
    qsort(spans, (size_t)ns, sizeof(span), by_size_desc);

    size_t total = 0;
    for (int i = 0; i < ns; i++) {
        /* Try offset 0, then the end of every placed span that overlaps in
         * time; keep the lowest that collides with none of them. */
        size_t best = SIZE_MAX;
        for (int c = -1; c < i; c++) {
            size_t cand;
            if (c < 0)
                cand = 0;
            else if (spans[c].last < spans[i].first || spans[c].first > spans[i].last)
                continue;
            else
                cand = spans[c].offset + spans[c].size;
            if (cand >= best)
                continue;
            bool ok = true;
            for (int j = 0; j < i && ok; j++) {
                const span *o = &spans[j];
                bool time = !(o->last < spans[i].first || o->first > spans[i].last);
                bool space = cand < o->offset + o->size && o->offset < cand + spans[i].size;
                ok = !(time && space);
            }
            if (ok)
                best = cand;
        }
        spans[i].offset = best;
        offsets[spans[i].tensor] = best;
        if (best + spans[i].size > total)
            total = best + spans[i].size;
    }
    *arena_size = total;
    free(first);
    free(last);
    free(spans);
    return FPAY_OK;
}
