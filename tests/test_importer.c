/*
 * test_importer.c - the TFLite importer (core/src/tflite_import.c) and its
 * flatbuffer reader (core/src/flatbuf.c).
 *
 *  - the five bundled models import with the op and tensor counts of
 *    MODELS.md, and their options land in the right attributes;
 *  - a corpus of broken versions of each model, generated here
 *    deterministically: truncations, byte flips in the structural bytes
 *    (everything but weight payloads), and uoffsets / vector lengths /
 *    vtable offsets overwritten with out-of-range values. Truncations and
 *    out-of-range values must be rejected with a message; flips must give a
 *    clean error or a graph that passes fpay_graph_validate. CI runs this
 *    under ASan+UBSan, so an out-of-bounds read is a failure too: every
 *    mutated file lives in a malloc block of exactly its size;
 *  - the hand-made replay corpus in tests/data/broken_models (see
 *    make_corpus.py there): the file name prefix gives the expected status.
 */
#include <criterion/criterion.h>

#include "flatbuf.h"
#include "test_util.h"
#include "tflite_import.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct op_count {
    fpay_op op;
    int n;
} op_count;

typedef struct model_info {
    const char *file;
    int ops, tensors, inputs, outputs;
    int64_t const_elems;   /* elements of all CONST tensors */
    op_count hist[16];     /* op histogram from MODELS.md; ends at n == 0 */
} model_info;

#define OPC(name, count) {FPAY_OP_##name, count}

static const model_info k_models[] = {
    {"MobileFaceNet.tflite", 230, 369, 1, 1, 1292994,
     {OPC(ADD, 45), OPC(CONV_2D, 35), OPC(RELU, 33), OPC(ABS, 33),
      OPC(SUB, 33), OPC(MUL, 33), OPC(DEPTHWISE_CONV_2D, 17),
      OPC(RESHAPE, 1)}},
    {"pnet.tflite", 29, 45, 1, 2, 6634,
     {OPC(RELU, 6), OPC(NEG, 6), OPC(CONV_2D, 5), OPC(MUL, 3), OPC(ADD, 3),
      OPC(MAX_POOL_2D, 1), OPC(REDUCE_MAX, 1), OPC(SUB, 1), OPC(EXP, 1),
      OPC(SUM, 1), OPC(DIV, 1)}},
    {"rnet.tflite", 37, 56, 1, 2, 100180,
     {OPC(RELU, 8), OPC(NEG, 8), OPC(MUL, 4), OPC(ADD, 4), OPC(CONV_2D, 3),
      OPC(FULLY_CONNECTED, 3), OPC(MAX_POOL_2D, 2), OPC(REDUCE_MAX, 1),
      OPC(SUB, 1), OPC(EXP, 1), OPC(SUM, 1), OPC(DIV, 1)}},
    {"onet.tflite", 46, 70, 1, 3, 389042,
     {OPC(RELU, 10), OPC(NEG, 10), OPC(MUL, 5), OPC(ADD, 5), OPC(CONV_2D, 4),
      OPC(FULLY_CONNECTED, 4), OPC(MAX_POOL_2D, 3), OPC(REDUCE_MAX, 1),
      OPC(SUB, 1), OPC(EXP, 1), OPC(SUM, 1), OPC(DIV, 1)}},
    {"FaceAntiSpoofing.tflite", 477, 717, 1, 2, 2003637,
     {OPC(DEQUANTIZE, 211), OPC(LEAKY_RELU, 80), OPC(CONV_2D, 72),
      OPC(FULLY_CONNECTED, 23), OPC(ADD, 14), OPC(CAST, 14), OPC(MUL, 12),
      OPC(MAX_POOL_2D, 7), OPC(AVERAGE_POOL_2D, 7), OPC(RESHAPE, 7),
      OPC(STRIDED_SLICE, 7), OPC(SUB, 7), OPC(GREATER_EQUAL, 7),
      OPC(LESS, 7), OPC(CONCATENATION, 2)}},
};

static uint8_t *load_model(const char *file, size_t *size)
{
    const char *path = fpay_test_model_path(file);
    uint8_t *d = fpay_test_read_file(path, size);
    cr_assert_not_null(d, "cannot read %s: put the models there or set "
                          "FPAY_MODELS_DIR", path);
    return d;
}

/* ------------------------------------------------------ the real models */

static void check_real_model(const model_info *mi)
{
    size_t n;
    uint8_t *d = load_model(mi->file, &n);
    fpay_graph g;
    char err[256];
    fpay_graph_init(&g);
    fpay_status st = fpay_tflite_import(d, n, &g, err, sizeof err);
    cr_assert_eq(st, FPAY_OK, "%s: %s", mi->file, err);
    cr_expect_eq(g.n_nodes, mi->ops, "%s: %d nodes", mi->file, g.n_nodes);
    cr_expect_eq(g.n_tensors, mi->tensors, "%s: %d tensors", mi->file,
                 g.n_tensors);
    cr_expect_eq(g.n_inputs, mi->inputs);
    cr_expect_eq(g.n_outputs, mi->outputs);

    int hist[FPAY_OP_COUNT_] = {0};
    for (int i = 0; i < g.n_nodes; i++) {
        hist[g.nodes[i].op]++;
        cr_expect_eq(g.nodes[i].source_index, i);
    }
    int listed = 0;
    for (const op_count *oc = mi->hist; oc->n; oc++) {
        cr_expect_eq(hist[oc->op], oc->n, "%s: %s x%d, expected %d", mi->file,
                     fpay_op_name(oc->op), hist[oc->op], oc->n);
        listed += oc->n;
    }
    cr_expect_eq(listed, mi->ops, "%s: histogram covers every op", mi->file);

    int64_t elems = 0;
    for (int t = 0; t < g.n_tensors; t++) {
        const fpay_tensor *ten = &g.tensors[t];
        cr_expect(ten->name && ten->name[0], "%s: tensor %d has no name",
                  mi->file, t);
        if (!(ten->flags & FPAY_TENSOR_CONST))
            continue;
        elems += fpay_tensor_count(ten);
        cr_expect_eq(ten->nbytes, (size_t)fpay_tensor_count(ten) *
                                      fpay_dtype_size(ten->dtype));
        /* Graph-owned, 64-byte aligned copies, not pointers into the file. */
        const uint8_t *p = ten->data;
        cr_expect(p < d || p >= d + n, "%s: tensor %d points into the file",
                  mi->file, t);
        cr_expect_eq((uintptr_t)p % 64, 0);
    }
    cr_expect_eq(elems, mi->const_elems, "%s: %lld constant elements",
                 mi->file, (long long)elems);
    char verr[256];
    cr_expect_eq(fpay_graph_validate(&g, verr, sizeof verr), FPAY_OK, "%s: %s",
                 mi->file, verr);
    fpay_graph_free(&g);
    free(d);
}

Test(importer, real_models_import_with_documented_counts)
{
    for (size_t i = 0; i < sizeof k_models / sizeof k_models[0]; i++)
        check_real_model(&k_models[i]);
}

/* Imports a model the test needs a graph of; the caller frees g. */
static void import_ok(const char *file, fpay_graph *g)
{
    size_t n;
    char err[256];
    uint8_t *d = load_model(file, &n);
    fpay_graph_init(g);
    cr_assert_eq(fpay_tflite_import(d, n, g, err, sizeof err), FPAY_OK,
                 "%s: %s", file, err);
    free(d);
}

Test(importer, real_model_attributes)
{
    fpay_graph g;

    import_ok("MobileFaceNet.tflite", &g);
    const fpay_node *n = &g.nodes[0];
    cr_expect_eq(n->op, FPAY_OP_CONV_2D);
    cr_expect_eq(n->attr.conv.padding, FPAY_PAD_SAME);
    cr_expect_eq(n->attr.conv.stride_h, 2);
    cr_expect_eq(n->attr.conv.stride_w, 2);
    cr_expect_eq(n->attr.conv.dilation_h, 1);
    cr_expect_eq(n->act, FPAY_ACT_NONE);
    cr_expect_eq(g.nodes[6].attr.conv.depth_multiplier, 1);
    n = &g.nodes[226]; /* the 7x7 global depthwise conv */
    cr_expect_eq(n->op, FPAY_OP_DEPTHWISE_CONV_2D);
    cr_expect_eq(n->attr.conv.padding, FPAY_PAD_VALID);
    n = &g.nodes[229];
    cr_expect_eq(n->op, FPAY_OP_RESHAPE);
    cr_expect_eq(n->n_inputs, 1);
    cr_expect_eq(n->attr.reshape.rank, 2);
    cr_expect_eq(n->attr.reshape.dims[0], 2);
    cr_expect_eq(n->attr.reshape.dims[1], 192);
    cr_expect(n->attr.reshape.batch_follows);
    cr_expect_str_eq(g.tensors[g.inputs[0]].name, "input");
    cr_expect(g.tensors[g.inputs[0]].flags & FPAY_TENSOR_INPUT);
    cr_expect_str_eq(g.tensors[g.outputs[0]].name, "embeddings");
    cr_expect(g.tensors[g.outputs[0]].flags & FPAY_TENSOR_OUTPUT);
    fpay_graph_free(&g);

    import_ok("pnet.tflite", &g);
    n = &g.nodes[7];
    cr_expect_eq(n->op, FPAY_OP_MAX_POOL_2D);
    cr_expect_eq(n->attr.pool.filter_w, 2);
    cr_expect_eq(n->attr.pool.stride_h, 2);
    cr_expect_eq(n->attr.pool.padding, FPAY_PAD_SAME);
    n = &g.nodes[24];
    cr_expect_eq(n->op, FPAY_OP_REDUCE_MAX);
    cr_expect_eq(n->n_inputs, 1);
    cr_expect_eq(n->attr.reduce.axes_mask, 1u << 3); /* axis -1 of rank 4 */
    cr_expect_eq(n->attr.reduce.keep_dims, 1);
    fpay_graph_free(&g);

    import_ok("rnet.tflite", &g);
    n = &g.nodes[23];
    cr_expect_eq(n->op, FPAY_OP_FULLY_CONNECTED);
    cr_expect_eq(n->n_inputs, 3);
    cr_expect_eq(n->attr.fc.keep_num_dims, 0);
    cr_expect_eq(g.nodes[15].attr.pool.padding, FPAY_PAD_VALID);
    cr_expect_eq(g.nodes[32].attr.reduce.axes_mask, 1u << 1);
    fpay_graph_free(&g);

    import_ok("FaceAntiSpoofing.tflite", &g);
    int seen_leaky = 0, seen_slice = 0, seen_cast = 0, seen_concat = 0;
    for (int i = 0; i < g.n_nodes; i++) {
        n = &g.nodes[i];
        if (n->op == FPAY_OP_LEAKY_RELU) {
            cr_expect(fabsf(n->attr.leaky.alpha - 0.2f) < 1e-6f);
            seen_leaky++;
        } else if (n->op == FPAY_OP_STRIDED_SLICE) {
            cr_expect_eq(n->n_inputs, 1);
            cr_expect_eq(n->attr.slice.begin_mask, 3);
            cr_expect_eq(n->attr.slice.end_mask, 3);
            seen_slice++;
        } else if (n->op == FPAY_OP_CAST) {
            cr_expect_eq(n->attr.cast.to, FPAY_DT_F32);
            cr_expect_eq(g.tensors[n->inputs[0]].dtype, FPAY_DT_BOOL);
            seen_cast++;
        } else if (n->op == FPAY_OP_CONCATENATION) {
            cr_expect_eq(n->n_inputs, 8);
            cr_expect_eq(n->attr.concat.axis, 1);
            seen_concat++;
        } else if (n->op == FPAY_OP_RESHAPE) {
            cr_expect_eq(n->attr.reshape.dims[0], -1);
            cr_expect(!n->attr.reshape.batch_follows);
        } else if (n->op == FPAY_OP_DEQUANTIZE) {
            cr_expect_eq(g.tensors[n->inputs[0]].dtype, FPAY_DT_F16);
        }
    }
    cr_expect_eq(seen_leaky, 80);
    cr_expect_eq(seen_slice, 7);
    cr_expect_eq(seen_cast, 14);
    cr_expect_eq(seen_concat, 2);
    fpay_graph_free(&g);
}

Test(importer, every_op_attributes)
{
    size_t n;
    char err[256];
    uint8_t *d = fpay_test_read_file(
        fpay_test_data_path("broken_models/valid_every_op.tflite"), &n);
    cr_assert_not_null(d);
    fpay_graph g;
    fpay_graph_init(&g);
    cr_assert_eq(fpay_tflite_import(d, n, &g, err, sizeof err), FPAY_OK, "%s",
                 err);
    free(d);
    cr_assert_eq(g.n_nodes, 28);
    static const fpay_op order[28] = {
        FPAY_OP_CONV_2D, FPAY_OP_DEPTHWISE_CONV_2D, FPAY_OP_MAX_POOL_2D,
        FPAY_OP_AVERAGE_POOL_2D, FPAY_OP_ABS, FPAY_OP_NEG, FPAY_OP_RELU,
        FPAY_OP_RELU6, FPAY_OP_LEAKY_RELU, FPAY_OP_PRELU, FPAY_OP_EXP,
        FPAY_OP_ADD, FPAY_OP_SUB, FPAY_OP_MUL, FPAY_OP_DIV, FPAY_OP_REDUCE_MAX,
        FPAY_OP_SUM, FPAY_OP_RESHAPE, FPAY_OP_RESHAPE, FPAY_OP_STRIDED_SLICE,
        FPAY_OP_CONCATENATION, FPAY_OP_FULLY_CONNECTED, FPAY_OP_DEQUANTIZE,
        FPAY_OP_GREATER_EQUAL, FPAY_OP_LESS, FPAY_OP_CAST, FPAY_OP_SOFTMAX,
        FPAY_OP_L2_NORMALIZE};
    for (int i = 0; i < 28; i++)
        cr_expect_eq(g.nodes[i].op, order[i], "node %d is %s", i,
                     fpay_op_name(g.nodes[i].op));
    const fpay_node *nd = g.nodes;
    cr_expect_eq(nd[0].attr.conv.stride_w, 2);
    cr_expect_eq(nd[0].attr.conv.padding, FPAY_PAD_SAME);
    cr_expect_eq(nd[0].act, FPAY_ACT_RELU6);
    cr_expect_eq(nd[0].n_inputs, 3);
    cr_expect_geq(nd[0].inputs[2], 0);
    /* A depthwise conv written without its bias gets n_inputs 3, bias -1. */
    cr_expect_eq(nd[1].n_inputs, 3);
    cr_expect_eq(nd[1].inputs[2], -1);
    cr_expect_eq(nd[1].attr.conv.dilation_w, 2);
    cr_expect_eq(nd[1].attr.conv.dilation_h, 2);
    cr_expect_eq(nd[1].attr.conv.depth_multiplier, 1);
    cr_expect_eq(nd[1].act, FPAY_ACT_RELU);
    cr_expect_eq(nd[2].attr.pool.padding, FPAY_PAD_VALID);
    cr_expect_eq(nd[3].attr.pool.filter_w, 3);
    cr_expect_eq(nd[3].attr.pool.filter_h, 2);
    cr_expect_eq(nd[3].act, FPAY_ACT_RELU);
    cr_expect_eq(nd[8].attr.leaky.alpha, 0.125f);
    cr_expect_eq(nd[8].act, FPAY_ACT_NONE);
    cr_expect_eq(nd[9].n_inputs, 2);
    cr_expect_eq(nd[11].act, FPAY_ACT_RELU);
    cr_expect_eq(nd[12].act, FPAY_ACT_NONE);
    cr_expect_eq(nd[13].act, FPAY_ACT_RELU6);
    cr_expect_eq(nd[14].act, FPAY_ACT_RELU_N1_TO_1);
    cr_expect_eq(nd[15].attr.reduce.axes_mask, 1u << 3);
    cr_expect_eq(nd[15].attr.reduce.keep_dims, 1);
    cr_expect_eq(nd[15].n_inputs, 1);
    cr_expect_eq(nd[16].attr.reduce.axes_mask, 1u << 1); /* scalar axis */
    cr_expect_eq(nd[16].attr.reduce.keep_dims, 0);
    cr_expect_eq(nd[17].attr.reshape.rank, 2);
    cr_expect(nd[17].attr.reshape.batch_follows);
    cr_expect_eq(nd[17].n_inputs, 1);
    cr_expect_eq(nd[18].attr.reshape.dims[0], -1); /* from ReshapeOptions */
    cr_expect(!nd[18].attr.reshape.batch_follows);
    const fpay_slice_attr *sl = &nd[19].attr.slice;
    cr_expect_eq(sl->rank, 2);
    cr_expect_eq(sl->end[1], 2);
    cr_expect_eq(sl->strides[0], 1);
    cr_expect_eq(sl->begin_mask, 1);
    cr_expect_eq(sl->end_mask, 3);
    cr_expect_eq(nd[19].n_inputs, 1);
    cr_expect_eq(nd[20].attr.concat.axis, 1); /* -1 of rank 2 */
    cr_expect_eq(nd[21].attr.fc.keep_num_dims, 1);
    cr_expect_eq(nd[21].act, FPAY_ACT_RELU);
    cr_expect_eq(nd[21].inputs[2], -1);
    cr_expect_eq(g.tensors[nd[22].inputs[0]].dtype, FPAY_DT_F16);
    cr_expect_eq(g.tensors[nd[22].inputs[0]].nbytes, 6);
    cr_expect_eq(g.tensors[nd[23].outputs[0]].dtype, FPAY_DT_BOOL);
    cr_expect_eq(nd[25].attr.cast.to, FPAY_DT_F32);
    cr_expect_eq(nd[27].attr.l2.epsilon, 1e-12f);
    cr_expect_eq(g.n_outputs, 3);
    char verr[256];
    cr_expect_eq(fpay_graph_validate(&g, verr, sizeof verr), FPAY_OK, "%s",
                 verr);
    fpay_graph_free(&g);
}

/* ------------------------------------------------ flatbuf reader, direct */

Test(flatbuf, vtable_after_table_and_short_vtables)
{
    /* root -> table at 8 whose vtable sits after it (negative soffset) and
     * lists one field: field 0 is an int32 at +4, field 1 lies beyond the
     * vtable and so is absent. */
    uint8_t b[24] = {0};
    b[0] = 8;                                     /* root uoffset */
    int32_t soff = -8;                            /* vtable at 16 */
    memcpy(b + 8, &soff, 4);
    int32_t val = 1234;
    memcpy(b + 12, &val, 4);
    uint16_t vt[3] = {6, 8, 4};                   /* vt_len, tab_len, f0 */
    memcpy(b + 16, vt, sizeof vt);
    fpay_fb fb;
    fpay_fb_table t;
    int32_t v;
    fpay_fb_init(&fb, b, sizeof b);
    cr_assert(fpay_fb_root(&fb, &t), "%s", fb.msg);
    cr_expect_eq(t.vtab, 16);
    cr_assert(fpay_fb_i32(&fb, &t, 0, 0, &v), "%s", fb.msg);
    cr_expect_eq(v, 1234);
    cr_assert(fpay_fb_i32(&fb, &t, 1, 77, &v), "%s", fb.msg);
    cr_expect_eq(v, 77);
    /* A field whose bytes run past the table's inline size is an error. */
    vt[2] = 6;
    memcpy(b + 16, vt, sizeof vt);
    cr_expect(!fpay_fb_i32(&fb, &t, 0, 0, &v));
    cr_expect(strstr(fb.msg, "beyond the table") != NULL, "%s", fb.msg);
    /* The same bytes cut short: every read stays inside the buffer. */
    fpay_fb_init(&fb, b, 17);
    cr_expect(!fpay_fb_root(&fb, &t));
    cr_expect(fb.msg[0] != '\0');
}

/* ------------------------------------------------- the generated corpus */

typedef struct poslist {
    size_t *v;
    size_t n, cap;
} poslist;

static void push(poslist *l, size_t p)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 256;
        l->v = realloc(l->v, l->cap * sizeof *l->v);
        cr_assert_not_null(l->v);
    }
    l->v[l->n++] = p;
}

/* Where the structure of a pristine model lies: the uoffsets the importer
 * follows, the length words of the vectors and strings it reads, the
 * soffsets of the tables it reads, which bytes are weight payload, and where
 * the last byte anything refers to ends. TOCO leaves an unreferenced 8-byte
 * table at the end of four of the five models: cutting only that changes
 * nothing the importer reads, so those truncations must import fine. */
typedef struct layout {
    poslist uoff, len, soff, structural;
    uint8_t *is_data;
    size_t end;
} layout;

static void extend(layout *L, size_t pos, uint64_t len)
{
    if (pos + len > L->end)
        L->end = pos + (size_t)len;
}

static void extend_table(layout *L, const fpay_fb_table *t)
{
    extend(L, t->pos, t->tab_len);
    extend(L, t->vtab, t->vt_len);
}

#define WALK(fb, call)                                                        \
    cr_assert((call), "walking the pristine model: %s", (fb)->msg)

static bool rec_table(fpay_fb *fb, layout *L, const fpay_fb_table *t,
                      int field, fpay_fb_table *out)
{
    size_t fp;
    bool has;
    WALK(fb, fpay_fb_field_pos(fb, t, field, 4, &fp));
    WALK(fb, fpay_fb_table_field(fb, t, field, out, &has));
    if (has) {
        push(&L->uoff, fp);
        push(&L->soff, out->pos);
        extend_table(L, out);
    }
    return has;
}

/* elem 0: a string (bytes plus the NUL). */
static bool rec_vec(fpay_fb *fb, layout *L, const fpay_fb_table *t, int field,
                    uint32_t elem, fpay_fb_vec *out)
{
    bool str = elem == 0;
    elem = str ? 1 : elem;
    size_t fp;
    bool has;
    WALK(fb, fpay_fb_field_pos(fb, t, field, 4, &fp));
    WALK(fb, fpay_fb_vec_field(fb, t, field, elem, out, &has));
    if (has) {
        push(&L->uoff, fp);
        push(&L->len, out->pos - 4);
        extend(L, out->pos, (uint64_t)out->len * elem + (str ? 1 : 0));
    }
    return has;
}

static void rec_elem(fpay_fb *fb, layout *L, const fpay_fb_vec *v, uint32_t i,
                     fpay_fb_table *out)
{
    WALK(fb, fpay_fb_vec_table(fb, v, i, out));
    push(&L->uoff, v->pos + (size_t)i * 4);
    push(&L->soff, out->pos);
    extend_table(L, out);
}

static void walk_model(const uint8_t *d, size_t n, layout *L)
{
    fpay_fb fb;
    fpay_fb_table root, t, sg, q;
    fpay_fb_vec v, codes, bufs, sgs, tens, ops;
    memset(L, 0, sizeof *L);
    L->is_data = calloc(n, 1);
    cr_assert_not_null(L->is_data);
    fpay_fb_init(&fb, d, n);
    WALK(&fb, fpay_fb_root(&fb, &root));
    push(&L->uoff, 0);
    push(&L->soff, root.pos);
    extend_table(L, &root);
    cr_assert(rec_vec(&fb, L, &root, 1, 4, &codes));
    cr_assert(rec_vec(&fb, L, &root, 2, 4, &sgs));
    rec_vec(&fb, L, &root, 3, 0, &v);
    cr_assert(rec_vec(&fb, L, &root, 4, 4, &bufs));
    for (uint32_t i = 0; i < codes.len; i++) {
        rec_elem(&fb, L, &codes, i, &t);
        rec_vec(&fb, L, &t, 1, 0, &v);
    }
    for (uint32_t i = 0; i < bufs.len; i++) {
        rec_elem(&fb, L, &bufs, i, &t);
        if (rec_vec(&fb, L, &t, 0, 1, &v))
            memset(L->is_data + v.pos, 1, v.len);
    }
    rec_elem(&fb, L, &sgs, 0, &sg);
    cr_assert(rec_vec(&fb, L, &sg, 0, 4, &tens));
    rec_vec(&fb, L, &sg, 1, 4, &v);
    rec_vec(&fb, L, &sg, 2, 4, &v);
    cr_assert(rec_vec(&fb, L, &sg, 3, 4, &ops));
    rec_vec(&fb, L, &sg, 4, 0, &v);
    for (uint32_t i = 0; i < tens.len; i++) {
        rec_elem(&fb, L, &tens, i, &t);
        rec_vec(&fb, L, &t, 0, 4, &v);
        rec_vec(&fb, L, &t, 3, 0, &v);
        if (rec_table(&fb, L, &t, 4, &q)) {
            rec_vec(&fb, L, &q, 0, 4, &v);
            rec_vec(&fb, L, &q, 1, 4, &v);
            rec_vec(&fb, L, &q, 2, 4, &v);
            rec_vec(&fb, L, &q, 3, 8, &v);
        }
    }
    for (uint32_t i = 0; i < ops.len; i++) {
        rec_elem(&fb, L, &ops, i, &t);
        rec_vec(&fb, L, &t, 1, 4, &v);
        rec_vec(&fb, L, &t, 2, 4, &v);
        rec_table(&fb, L, &t, 4, &q);
        rec_vec(&fb, L, &t, 5, 1, &v);
    }
    for (size_t p = 0; p < n; p++)
        if (!L->is_data[p])
            push(&L->structural, p);
    /* The exemption for unreferenced trailing bytes stays small. */
    cr_assert(L->end <= n && n - L->end <= 64, "structure ends at %zu of %zu",
              L->end, n);
}

static void free_layout(layout *L)
{
    free(L->uoff.v);
    free(L->len.v);
    free(L->soff.v);
    free(L->structural.v);
    free(L->is_data);
}

typedef enum { OUT_OK, OUT_REJECTED, OUT_BAD } outcome;

/* One import under the corpus contract. OUT_BAD: a rejection with an empty
 * or multi-line message or a status other than MALFORMED/UNSUPPORTED, or an
 * accepted graph that fpay_graph_validate refuses. why gets the message. */
static outcome run_case(const uint8_t *d, size_t n, char *why, size_t why_len)
{
    fpay_graph g;
    fpay_graph_init(&g);
    why[0] = '\0';
    fpay_status st = fpay_tflite_import(d, n, &g, why, why_len);
    outcome out;
    if (st == FPAY_OK) {
        char verr[256];
        out = OUT_OK;
        if (fpay_graph_validate(&g, verr, sizeof verr) != FPAY_OK) {
            snprintf(why, why_len, "accepted, but validate says: %s", verr);
            out = OUT_BAD;
        }
    } else if ((st == FPAY_MODEL_MALFORMED || st == FPAY_MODEL_UNSUPPORTED) &&
               why[0] && !strchr(why, '\n')) {
        out = OUT_REJECTED;
    } else {
        out = OUT_BAD;
    }
    fpay_graph_free(&g);
    return out;
}

typedef struct tally {
    const char *name;
    int cases, rejected, accepted, bad;
} tally;

/* must_reject: an OK import counts as bad (truncations, out-of-range). */
static void count(tally *t, outcome o, bool must_reject, const char *model,
                  const char *what, const char *why)
{
    t->cases++;
    if (o == OUT_REJECTED)
        t->rejected++;
    else if (o == OUT_OK && !must_reject)
        t->accepted++;
    else {
        if (t->bad++ < 5)
            cr_log_error("%s: %s: %s", model, what,
                         o == OUT_OK ? "accepted" : why);
    }
}

/* Overwrites 4 bytes in place, imports, restores. */
static outcome patch_u32(uint8_t *w, size_t n, size_t pos, uint32_t value,
                         char *why, size_t why_len)
{
    uint8_t keep[4];
    memcpy(keep, w + pos, 4);
    memcpy(w + pos, &value, 4);
    outcome o = run_case(w, n, why, why_len);
    memcpy(w + pos, keep, 4);
    return o;
}

enum { SAMPLES = 150, FLIP_CASES = 400, TRUNC_HEAD = 2048, TRUNC_SPREAD = 200,
       TRUNC_TAIL = 64 };

static void run_corpus(const char *file)
{
    size_t n;
    char why[320], what[96];
    uint8_t *d = load_model(file, &n);
    layout L;
    walk_model(d, n, &L);
    tally tr = {"truncations", 0, 0, 0, 0}, fl = {"byte flips", 0, 0, 0, 0},
          uo = {"uoffsets out of range", 0, 0, 0, 0},
          ln = {"vector lengths out of range", 0, 0, 0, 0},
          so = {"vtable offsets out of range", 0, 0, 0, 0};

    /* Truncations: every length over the first 2 KB, a spread through the
     * file, and the last 64 (the structure sits at both ends of these
     * files). Each prefix gets its own exact-size block for ASan. */
    for (size_t k = 0; k < TRUNC_HEAD + TRUNC_SPREAD + TRUNC_TAIL; k++) {
        size_t len;
        if (k < TRUNC_HEAD)
            len = k;
        else if (k < TRUNC_HEAD + TRUNC_SPREAD)
            len = TRUNC_HEAD + (k - TRUNC_HEAD) * (n - TRUNC_HEAD) / TRUNC_SPREAD;
        else
            len = n - TRUNC_TAIL + (k - TRUNC_HEAD - TRUNC_SPREAD);
        if (len >= n || (k >= TRUNC_HEAD && len < TRUNC_HEAD))
            continue;
        uint8_t *p = malloc(len ? len : 1);
        cr_assert_not_null(p);
        memcpy(p, d, len);
        snprintf(what, sizeof what, "truncated to %zu bytes", len);
        count(&tr, run_case(p, len, why, sizeof why), len < L.end, file, what,
              why);
        free(p);
    }

    /* The other cases edit one exact-size working copy and restore it. */
    uint8_t *w = malloc(n);
    cr_assert_not_null(w);
    memcpy(w, d, n);
    const uint32_t big[2] = {0xFFFFFFF0u, (uint32_t)n + 4u};
    const poslist *lists[2] = {&L.uoff, &L.len};
    tally *tallies[2] = {&uo, &ln};
    for (int li = 0; li < 2; li++) {
        const poslist *pl = lists[li];
        size_t m = pl->n < SAMPLES ? pl->n : SAMPLES;
        for (size_t j = 0; j < m; j++) {
            size_t pos = pl->v[j * pl->n / m];
            for (int b = 0; b < 2; b++) {
                snprintf(what, sizeof what, "%s at byte %zu = %u",
                         tallies[li]->name, pos, big[b]);
                count(tallies[li], patch_u32(w, n, pos, big[b], why, sizeof why),
                      true, file, what, why);
            }
        }
    }
    /* vtable = table - soffset: point it before the start of the file, and
     * at its last 2 bytes (no room for the 4-byte header). */
    size_t m = L.soff.n < SAMPLES ? L.soff.n : SAMPLES;
    for (size_t j = 0; j < m; j++) {
        size_t pos = L.soff.v[j * L.soff.n / m];
        int32_t vals[2] = {(int32_t)pos + 4, -(int32_t)(n - pos - 2)};
        for (int b = 0; b < 2; b++) {
            snprintf(what, sizeof what, "soffset of table at %zu = %d", pos,
                     vals[b]);
            count(&so, patch_u32(w, n, pos, (uint32_t)vals[b], why, sizeof why),
                  true, file, what, why);
        }
    }

    /* Random flips of 1-4 structural bytes. */
    fpay_test_rng rng;
    fpay_test_rng_seed(&rng, 0xF1A7B0FFu ^ (uint64_t)n);
    for (int c = 0; c < FLIP_CASES; c++) {
        size_t pos[4];
        uint8_t keep[4];
        int k = 1 + (int)(fpay_test_rng_next(&rng) % 4);
        for (int j = 0; j < k; j++) {
            pos[j] = L.structural.v[fpay_test_rng_next(&rng) % L.structural.n];
            keep[j] = w[pos[j]];
            w[pos[j]] ^= (uint8_t)(1 + fpay_test_rng_next(&rng) % 255);
        }
        snprintf(what, sizeof what, "flip case %d (first byte %zu)", c, pos[0]);
        count(&fl, run_case(w, n, why, sizeof why), false, file, what, why);
        for (int j = k - 1; j >= 0; j--)
            w[pos[j]] = keep[j];
    }
    cr_assert_eq(memcmp(w, d, n), 0, "working copy restored");

    const tally *all[5] = {&tr, &fl, &uo, &ln, &so};
    int total = 0;
    for (int i = 0; i < 5; i++) {
        printf("%-24s %-28s %5d cases: %5d rejected, %4d imported OK, %d bad\n",
               file, all[i]->name, all[i]->cases, all[i]->rejected,
               all[i]->accepted, all[i]->bad);
        if (all[i] == &tr)
            printf("%-24s   (structure ends at byte %zu of %zu: truncations "
                   "that cut only the unreferenced tail may import)\n", file,
                   L.end, n);
        cr_expect_eq(all[i]->bad, 0, "%s: %s: %d bad outcomes", file,
                     all[i]->name, all[i]->bad);
        total += all[i]->cases;
    }
    fflush(stdout);
    cr_expect_geq(total, 200, "%s: only %d broken versions", file, total);
    cr_expect_geq(so.cases, 2, "vtable cases generated");
    free(w);
    free_layout(&L);
    free(d);
}

Test(importer_corpus, mobilefacenet, .timeout = 900) { run_corpus("MobileFaceNet.tflite"); }
Test(importer_corpus, pnet, .timeout = 900) { run_corpus("pnet.tflite"); }
Test(importer_corpus, rnet, .timeout = 900) { run_corpus("rnet.tflite"); }
Test(importer_corpus, onet, .timeout = 900) { run_corpus("onet.tflite"); }
Test(importer_corpus, antispoofing, .timeout = 900) { run_corpus("FaceAntiSpoofing.tflite"); }

/* ------------------------------------------------- the replay corpus */

Test(importer, replay_hand_made_corpus)
{
    const char *dir = fpay_test_data_path("broken_models");
    char dirpath[4096];
    snprintf(dirpath, sizeof dirpath, "%s", dir);
    DIR *dh = opendir(dirpath);
    cr_assert_not_null(dh, "cannot open %s", dirpath);
    int files = 0, malformed = 0, unsupported = 0, valid = 0;
    struct dirent *e;
    while ((e = readdir(dh)) != NULL) {
        const char *name = e->d_name;
        size_t len = strlen(name);
        if (len < 7 || strcmp(name + len - 7, ".tflite") != 0)
            continue;
        fpay_status want;
        if (strncmp(name, "malformed_", 10) == 0)
            want = FPAY_MODEL_MALFORMED, malformed++;
        else if (strncmp(name, "unsupported_", 12) == 0)
            want = FPAY_MODEL_UNSUPPORTED, unsupported++;
        else if (strncmp(name, "valid_", 6) == 0)
            want = FPAY_OK, valid++;
        else
            continue;
        char path[4096 + 300];
        snprintf(path, sizeof path, "%s/%s", dirpath, name);
        size_t n = 0;
        uint8_t *d = fpay_test_read_file(path, &n);
        cr_assert_not_null(d, "%s", path);
        /* An exact-size copy, so ASan sees any read past the end. */
        uint8_t *p = malloc(n ? n : 1);
        cr_assert_not_null(p);
        if (n)
            memcpy(p, d, n);
        fpay_graph g;
        char err[320] = "";
        fpay_graph_init(&g);
        fpay_status st = fpay_tflite_import(p, n, &g, err, sizeof err);
        cr_expect_eq(st, want, "%s: got %s (%s)", name, fpay_status_str(st),
                     err);
        if (want != FPAY_OK)
            cr_expect(err[0] && !strchr(err, '\n'), "%s: message '%s'", name,
                      err);
        fpay_graph_free(&g);
        free(p);
        free(d);
        files++;
    }
    closedir(dh);
    printf("replay corpus: %d files (%d malformed, %d unsupported, %d valid)\n",
           files, malformed, unsupported, valid);
    fflush(stdout);
    cr_expect_geq(malformed, 20);
    cr_expect_geq(unsupported, 10);
    cr_expect_geq(valid, 2);
}

Test(importer, messages_name_the_problem)
{
    /* Spot checks of wording that users and the CLI rely on. */
    static const struct { const char *file, *needle; } k[] = {
        {"unsupported_op_tanh.tflite", "unsupported op: TANH (builtin 28) at operator 1"},
        /* Every unsupported op in one message, not only the first. */
        {"unsupported_several_ops.tflite",
         "unsupported ops: TANH (builtin 28) at operators 1, 3; custom op 'MyFancyOp' at "
         "operator 2"},
        {"unsupported_two_subgraphs.tflite", "2 subgraphs"},
        {"malformed_buffer_size_mismatch.tflite",
         "tensor 2 'b': buffer 2 holds 4 bytes, shape [2] float32 needs 8"},
        {"unsupported_int8_quantized.tflite", "int8 quantized tensors are not supported"},
        {"malformed_string_no_nul.tflite", "not NUL-terminated"},
        {"malformed_read_before_write.tflite", "before any operator writes it"},
        {"unsupported_custom_op.tflite", "MyFancyOp"},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        char rel[256], err[320] = "";
        size_t n = 0;
        snprintf(rel, sizeof rel, "broken_models/%s", k[i].file);
        uint8_t *d = fpay_test_read_file(fpay_test_data_path(rel), &n);
        cr_assert_not_null(d, "%s", rel);
        fpay_graph g;
        fpay_graph_init(&g);
        cr_expect_neq(fpay_tflite_import(d, n, &g, err, sizeof err), FPAY_OK);
        cr_expect(strstr(err, k[i].needle) != NULL, "%s: '%s' lacks '%s'",
                  k[i].file, err, k[i].needle);
        fpay_graph_free(&g);
        free(d);
    }
}

Test(importer, null_and_reused_arguments)
{
    char err[128];
    fpay_graph g;
    fpay_graph_init(&g);
    cr_expect_eq(fpay_tflite_import(NULL, 10, &g, err, sizeof err),
                 FPAY_INVALID_ARGUMENT);
    cr_expect_eq(fpay_tflite_import(NULL, 0, &g, err, sizeof err),
                 FPAY_MODEL_MALFORMED);
    cr_expect_eq(fpay_tflite_import((const uint8_t *)"x", 1, NULL, err,
                                    sizeof err), FPAY_INVALID_ARGUMENT);
    /* err may be NULL. */
    cr_expect_eq(fpay_tflite_import((const uint8_t *)"x", 1, &g, NULL, 0),
                 FPAY_MODEL_MALFORMED);
    fpay_graph_free(&g);
}
