/*
 * test_graph.c - the IR's building and checking helpers (core/src/graph.c):
 * validation catches every structural fault the importer or optimizer
 * could leave (with a message naming the node and tensor), clones are
 * independent where they must be, counts refuse overflow, consumers and
 * node removal keep order. The importer's and optimizer's tests use these
 * helpers on real models; here each rule is pinned alone.
 */
#include "graph.h"

#include <criterion/criterion.h>

#include <stdint.h>
#include <string.h>

/* x -> ABS -> a -> NEG -> y, with a constant c read by an ADD: y2 = a + c. */
typedef struct chain {
    fpay_graph g;
    int x, a, y, c, y2;
} chain;

static int act(fpay_graph *g, const char *name, unsigned flags)
{
    fpay_tensor t;
    memset(&t, 0, sizeof t);
    t.name = fpay_graph_strdup(g, name, strlen(name));
    t.dtype = FPAY_DT_F32;
    t.rank = 1;
    t.dims[0] = 4;
    t.flags = flags;
    return fpay_graph_add_tensor(g, &t);
}

static void node(fpay_graph *g, fpay_op op, int a, int b, int out)
{
    fpay_node n;
    fpay_node_init(&n, op);
    n.inputs[0] = a;
    n.inputs[1] = b;
    n.n_inputs = b >= 0 ? 2 : 1;
    n.outputs[0] = out;
    n.n_outputs = 1;
    n.source_index = g->n_nodes;
    cr_assert_geq(fpay_graph_add_node(g, &n), 0);
}

static void make_chain(chain *c)
{
    fpay_graph *g = &c->g;
    fpay_graph_init(g);
    c->x = act(g, "x", FPAY_TENSOR_INPUT);
    c->a = act(g, "a", 0);
    c->y = act(g, "y", FPAY_TENSOR_OUTPUT);
    c->y2 = act(g, "y2", FPAY_TENSOR_OUTPUT);
    c->c = fpay_graph_add_const_f32(g, "c", 1, (int64_t[]){4}, (float[]){1, 2, 3, 4});
    node(g, FPAY_OP_ABS, c->x, -1, c->a);
    node(g, FPAY_OP_NEG, c->a, -1, c->y);
    node(g, FPAY_OP_ADD, c->a, c->c, c->y2);
    g->inputs = fpay_graph_alloc(g, sizeof(int));
    g->outputs = fpay_graph_alloc(g, 2 * sizeof(int));
    g->inputs[0] = c->x;
    g->n_inputs = 1;
    g->outputs[0] = c->y;
    g->outputs[1] = c->y2;
    g->n_outputs = 2;
}

static void expect_invalid(const fpay_graph *g, const char *needle)
{
    char err[256] = "";
    cr_expect_eq(fpay_graph_validate(g, err, sizeof err), FPAY_MODEL_MALFORMED,
                 "accepted; wanted '%s'", needle);
    cr_expect(strstr(err, needle) != NULL, "'%s' lacks '%s'", err, needle);
}

Test(graph, a_well_formed_graph_validates)
{
    chain c;
    make_chain(&c);
    char err[256] = "";
    cr_expect_eq(fpay_graph_validate(&c.g, err, sizeof err), FPAY_OK, "%s", err);
    fpay_graph_free(&c.g);
}

Test(graph, validate_catches_every_structural_fault)
{
    chain c;
    make_chain(&c);
    fpay_graph *g = &c.g;

    fpay_node saved = g->nodes[1];
    g->nodes[1].inputs[0] = 99;
    expect_invalid(g, "node 1 (NEG): input tensor 99 out of range");
    g->nodes[1] = saved;

    /* Out of order: NEG before the ABS that writes its input. */
    fpay_node first = g->nodes[0];
    g->nodes[0] = g->nodes[1];
    g->nodes[1] = first;
    expect_invalid(g, "reads tensor 1 'a' before any node writes it");
    g->nodes[1] = g->nodes[0];
    g->nodes[0] = first;

    g->nodes[2].outputs[0] = c.c;
    expect_invalid(g, "output tensor 4 'c' is a constant, an input or written twice");
    g->nodes[2].outputs[0] = c.a;
    expect_invalid(g, "written twice");
    g->nodes[2].outputs[0] = c.y2;

    g->nodes[1].act_slope = 77;
    expect_invalid(g, "input tensor 77 out of range");
    g->nodes[1].act_slope = -1;

    g->nodes[0].op = FPAY_OP_COUNT_;
    expect_invalid(g, "node 0: bad op or arity");
    g->nodes[0].op = FPAY_OP_ABS;
    g->nodes[0].n_outputs = 0;
    expect_invalid(g, "node 0: bad op or arity");
    g->nodes[0].n_outputs = 1;

    g->outputs[1] = 42;
    expect_invalid(g, "graph output 1 (tensor 42) is never computed");
    g->outputs[1] = c.y2;

    g->inputs[0] = -5;
    expect_invalid(g, "graph input 0: tensor -5 out of range");
    g->inputs[0] = c.x;

    g->n_outputs = 0;
    expect_invalid(g, "graph has 1 inputs and 0 outputs");
    g->n_outputs = 2;

    char err[256];
    cr_expect_eq(fpay_graph_validate(g, err, sizeof err), FPAY_OK, "restored: %s", err);
    fpay_graph_free(g);
}

/* Sessions reshape their clone: its tensors and nodes are its own, the
 * constant data is shared with the model. */
Test(graph, clone_owns_tensors_and_nodes_and_shares_constants)
{
    chain c;
    make_chain(&c);
    fpay_graph d;
    cr_assert_eq(fpay_graph_clone_shallow(&d, &c.g), FPAY_OK);
    cr_assert_eq(d.n_tensors, c.g.n_tensors);
    cr_assert_eq(d.n_nodes, c.g.n_nodes);
    cr_expect_eq(d.tensors[c.c].data, c.g.tensors[c.c].data);
    d.tensors[c.x].dims[0] = 9;
    d.nodes[0].op = FPAY_OP_RELU;
    d.inputs[0] = c.a;
    cr_expect_eq(c.g.tensors[c.x].dims[0], 4);
    cr_expect_eq(c.g.nodes[0].op, FPAY_OP_ABS);
    cr_expect_eq(c.g.inputs[0], c.x);
    fpay_graph_free(&d);
    fpay_graph_free(&c.g);
}

Test(graph, consumers_outputs_and_removal)
{
    chain c;
    make_chain(&c);
    cr_expect_eq(fpay_graph_consumers(&c.g, c.a), 2);
    cr_expect_eq(fpay_graph_consumers(&c.g, c.c), 1);
    cr_expect_eq(fpay_graph_consumers(&c.g, c.y), 0);
    c.g.nodes[1].act_slope = c.c; /* a PReLU slope is a read too */
    cr_expect_eq(fpay_graph_consumers(&c.g, c.c), 2);
    cr_expect(fpay_graph_is_output(&c.g, c.y2));
    cr_expect_not(fpay_graph_is_output(&c.g, c.a));
    bool drop[3] = {false, true, false};
    fpay_graph_remove_nodes(&c.g, drop);
    cr_assert_eq(c.g.n_nodes, 2);
    cr_expect_eq(c.g.nodes[0].op, FPAY_OP_ABS);
    cr_expect_eq(c.g.nodes[1].op, FPAY_OP_ADD);
    fpay_graph_free(&c.g);
}

/* Element counts: -1 for a negative dim or a product past INT64_MAX / 16,
 * so byte sizes computed from them cannot overflow either. */
Test(graph, counts_refuse_negative_dims_and_overflow)
{
    cr_expect_eq(fpay_dims_count(3, (int64_t[]){2, 3, 4}), 24);
    cr_expect_eq(fpay_dims_count(0, NULL), 1);
    cr_expect_eq(fpay_dims_count(2, (int64_t[]){0, 5}), 0);
    cr_expect_eq(fpay_dims_count(2, (int64_t[]){-1, 5}), -1);
    cr_expect_eq(fpay_dims_count(2, (int64_t[]){INT64_MAX / 16, 2}), -1);
    cr_expect_eq(fpay_dims_count(3, (int64_t[]){1 << 20, 1 << 20, 1 << 20}), -1);
    cr_expect_eq(fpay_dims_count(2, (int64_t[]){1 << 20, 1 << 20}), (int64_t)1 << 40);
}

/* Graph-owned memory is 64-byte aligned (kernels load it with aligned
 * vector loads) and zeroed; constants are copied, not borrowed. */
Test(graph, alloc_is_aligned_and_constants_are_copied)
{
    fpay_graph g;
    fpay_graph_init(&g);
    for (size_t size = 1; size < 5000; size = size * 3 + 1) {
        unsigned char *p = fpay_graph_alloc(&g, size);
        cr_assert_not_null(p);
        cr_expect_eq((uintptr_t)p % 64, 0, "%zu bytes at %p", size, (void *)p);
        for (size_t i = 0; i < size; i++)
            cr_assert_eq(p[i], 0);
    }
    float v[2] = {1.5f, -2.0f};
    int t = fpay_graph_add_const_f32(&g, "k", 1, (int64_t[]){2}, v);
    cr_assert_geq(t, 0);
    v[0] = 99;
    const float *d = g.tensors[t].data;
    cr_expect(d[0] == 1.5f && d[1] == -2.0f);
    cr_expect_eq(g.tensors[t].nbytes, 2 * sizeof(float));
    cr_expect(g.tensors[t].flags & FPAY_TENSOR_CONST);
    fpay_graph_free(&g);
}
