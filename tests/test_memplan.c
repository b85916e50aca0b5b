/*
 * test_memplan.c - the activation arena planner (core/src/memplan.c). The
 * promise every kernel relies on: two tensors alive at the same time never
 * share a byte. Checked against lifetimes computed here independently, on
 * hand-made graphs whose optimal arena is known and on random graphs;
 * plus what the session relies on: graph inputs and outputs live to the
 * end of the run, constants and unused tensors get no memory, offsets are
 * 64-byte aligned.
 */
#include "memplan.h"
#include "test_util.h"

#include <criterion/criterion.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int tensor(fpay_graph *g, size_t bytes, unsigned flags)
{
    fpay_tensor t;
    memset(&t, 0, sizeof t);
    t.name = fpay_graph_strdup(g, "t", 1);
    t.dtype = FPAY_DT_F32;
    t.rank = 1;
    t.dims[0] = (int64_t)(bytes / 4);
    t.nbytes = bytes;
    t.flags = flags;
    return fpay_graph_add_tensor(g, &t);
}

/* A node reading a (and b when >= 0), writing out. */
static void node(fpay_graph *g, int a, int b, int out)
{
    fpay_node n;
    fpay_node_init(&n, b >= 0 ? FPAY_OP_ADD : FPAY_OP_RELU);
    n.inputs[0] = a;
    n.inputs[1] = b;
    n.n_inputs = b >= 0 ? 2 : 1;
    n.outputs[0] = out;
    n.n_outputs = 1;
    cr_assert_geq(fpay_graph_add_node(g, &n), 0);
}

static void io(fpay_graph *g, int in, int out)
{
    g->inputs = fpay_graph_alloc(g, sizeof(int));
    g->outputs = fpay_graph_alloc(g, sizeof(int));
    g->inputs[0] = in;
    g->n_inputs = 1;
    g->outputs[0] = out;
    g->n_outputs = 1;
}

/* Lifetimes from first principles: [first, last] in node indices, -1 for
 * graph inputs, n_nodes for "to the end"; -2 when never used. */
static void lifetimes(const fpay_graph *g, int *first, int *last)
{
    for (int t = 0; t < g->n_tensors; t++)
        first[t] = last[t] = -2;
    for (int i = 0; i < g->n_inputs; i++)
        first[g->inputs[i]] = -1;
    for (int i = 0; i < g->n_nodes; i++) {
        const fpay_node *n = &g->nodes[i];
        for (int k = 0; k < n->n_inputs; k++)
            if (n->inputs[k] >= 0)
                last[n->inputs[k]] = i;
        first[n->outputs[0]] = i;
        if (last[n->outputs[0]] < i)
            last[n->outputs[0]] = i;
    }
    for (int i = 0; i < g->n_inputs; i++)
        last[g->inputs[i]] = g->n_nodes;
    for (int i = 0; i < g->n_outputs; i++)
        last[g->outputs[i]] = g->n_nodes;
}

/* Plans g and checks every invariant; returns the arena size. */
static size_t plan_and_check(const fpay_graph *g)
{
    size_t *off = calloc((size_t)g->n_tensors + 1, sizeof *off);
    int *first = calloc((size_t)g->n_tensors + 1, sizeof *first);
    int *last = calloc((size_t)g->n_tensors + 1, sizeof *last);
    cr_assert(off && first && last);
    size_t arena = 0;
    cr_assert_eq(fpay_memplan_build(g, off, &arena), FPAY_OK);
    lifetimes(g, first, last);
    for (int t = 0; t < g->n_tensors; t++) {
        const fpay_tensor *x = &g->tensors[t];
        if ((x->flags & FPAY_TENSOR_CONST) || first[t] == -2) {
            cr_assert_eq(off[t], FPAY_MEMPLAN_NONE, "tensor %d (constant or unused) got memory",
                         t);
            continue;
        }
        cr_assert_neq(off[t], FPAY_MEMPLAN_NONE, "tensor %d has no memory", t);
        cr_assert_eq(off[t] % 64, 0, "tensor %d at %zu: not 64-byte aligned", t, off[t]);
        cr_assert_leq(off[t] + x->nbytes, arena, "tensor %d ends past the arena", t);
        for (int u = 0; u < t; u++) {
            if (off[u] == FPAY_MEMPLAN_NONE)
                continue;
            bool time = !(last[u] < first[t] || first[u] > last[t]);
            bool space = off[t] < off[u] + g->tensors[u].nbytes &&
                         off[u] < off[t] + x->nbytes;
            cr_assert(!(time && space),
                      "tensors %d [%d,%d] @%zu+%zu and %d [%d,%d] @%zu+%zu overlap while both "
                      "are alive", t, first[t], last[t], off[t], x->nbytes, u, first[u], last[u],
                      off[u], g->tensors[u].nbytes);
        }
    }
    free(off);
    free(first);
    free(last);
    return arena;
}

/* x -> a -> b -> c -> y, 1 KiB each. x lives throughout; at any node only
 * two of a, b, c, y are alive (a node's input and output), so a and c can
 * share memory, and b and y: 3 KiB is the optimum and the plan. A constant
 * read by the first node and an unused tensor get nothing. */
Test(memplan, chain_reuses_dead_buffers_and_keeps_input_and_output)
{
    fpay_graph g;
    fpay_graph_init(&g);
    int x = tensor(&g, 1024, FPAY_TENSOR_INPUT), a = tensor(&g, 1024, 0),
        b = tensor(&g, 1024, 0), c = tensor(&g, 1024, 0), y = tensor(&g, 1024, FPAY_TENSOR_OUTPUT);
    int k = fpay_graph_add_const_f32(&g, "k", 1, (int64_t[]){256}, (float[256]){0});
    (void)tensor(&g, 4096, 0); /* never read or written */
    node(&g, x, k, a);
    node(&g, a, -1, b);
    node(&g, b, -1, c);
    node(&g, c, -1, y);
    io(&g, x, y);
    cr_expect_eq(plan_and_check(&g), 3 * 1024);
    fpay_graph_free(&g);
}

/* The input is read by the first node only, yet it must not be handed to
 * a later tensor: the caller runs again on it. Same for the output, which
 * is written early and read by nobody. */
Test(memplan, inputs_and_outputs_live_to_the_end)
{
    fpay_graph g;
    fpay_graph_init(&g);
    int x = tensor(&g, 4096, FPAY_TENSOR_INPUT), y = tensor(&g, 4096, FPAY_TENSOR_OUTPUT),
        a = tensor(&g, 4096, 0), b = tensor(&g, 4096, 0);
    node(&g, x, -1, y);
    node(&g, y, -1, a);
    node(&g, a, -1, b);
    io(&g, x, y);
    size_t *off = calloc(5, sizeof *off);
    size_t arena = 0;
    cr_assert_eq(fpay_memplan_build(&g, off, &arena), FPAY_OK);
    cr_expect(off[b] != off[x] && off[a] != off[x], "a later tensor took the input's memory");
    cr_expect(off[b] != off[y], "a later tensor took the output's memory");
    free(off);
    plan_and_check(&g);
    fpay_graph_free(&g);
}

/* Random DAGs: up to 40 nodes, each reading one or two earlier tensors,
 * sizes from 4 bytes to 64 KiB (not multiples of 64). */
Test(memplan, random_graphs_never_overlap_live_tensors)
{
    fpay_test_rng r;
    fpay_test_rng_seed(&r, 20261208);
    for (int round = 0; round < 300; round++) {
        fpay_graph g;
        fpay_graph_init(&g);
        int nodes = 1 + (int)fpay_test_rng_uniform(&r, 0, 40);
        int x = tensor(&g, 4 + 4 * (size_t)fpay_test_rng_uniform(&r, 0, 4000), FPAY_TENSOR_INPUT);
        int *made = malloc(((size_t)nodes + 1) * sizeof *made);
        made[0] = x;
        for (int i = 0; i < nodes; i++) {
            int a = made[(int)fpay_test_rng_uniform(&r, 0, (float)i + 0.999f)];
            int b = fpay_test_rng_uniform(&r, 0, 1) < 0.4f
                        ? made[(int)fpay_test_rng_uniform(&r, 0, (float)i + 0.999f)]
                        : -1;
            made[i + 1] = tensor(&g, 4 + 4 * (size_t)fpay_test_rng_uniform(&r, 0, 16000), 0);
            node(&g, a, b, made[i + 1]);
        }
        g.tensors[made[nodes]].flags |= FPAY_TENSOR_OUTPUT;
        io(&g, x, made[nodes]);
        size_t arena = plan_and_check(&g);
        size_t sum = 0;
        for (int t = 0; t < g.n_tensors; t++)
            sum += (g.tensors[t].nbytes + 63) & ~(size_t)63;
        cr_assert_leq(arena, sum);
        free(made);
        fpay_graph_free(&g);
    }
}
