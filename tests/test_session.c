/*
 * test_session.c - the public API: batching, reshaping, bad arguments,
 * memory planning, the backend registry and partitioning.
 */
#include "test_util.h"

#include "facepay/backend.h"
#include "facepay/facepay.h"
#include "model_impl.h" /* fpay_session_get_stats: the plan cache's counters */

#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static fpay_model *load(const char *file)
{
    char err[256];
    fpay_model *m = NULL;
    cr_assert_eq(fpay_model_load_file(fpay_test_model_path(file), 0, &m, err, sizeof err),
                 FPAY_OK, "%s", err);
    return m;
}

static fpay_session *session(const fpay_model *m, const char *backend)
{
    fpay_session_options o;
    fpay_session_options_init(&o);
    o.backend = backend;
    char err[256];
    fpay_session *s = NULL;
    cr_assert_eq(fpay_session_create(m, &o, &s, err, sizeof err), FPAY_OK, "%s", err);
    return s;
}

static float *random_input(size_t n, uint64_t seed)
{
    float *x = malloc(n * sizeof(float));
    fpay_test_rng r;
    fpay_test_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++)
        x[i] = fpay_test_rng_uniform(&r, -1.0f, 1.0f);
    return x;
}

Test(session, mobilefacenet_batch1_equals_row0_of_batch2)
{
    fpay_model *m = load("MobileFaceNet.tflite");
    fpay_session *s = session(m, "cpu");
    const size_t row = 112 * 112 * 3;
    float *x = random_input(2 * row, 7);

    cr_assert_eq(fpay_session_set_batch(s, 2), FPAY_OK, "%s", fpay_session_errmsg(s));
    cr_assert_eq(fpay_session_set_input(s, 0, x, 2 * row), FPAY_OK);
    cr_assert_eq(fpay_session_run(s), FPAY_OK, "%s", fpay_session_errmsg(s));
    const float *y2;
    size_t n2;
    cr_assert_eq(fpay_session_output(s, 0, &y2, &n2), FPAY_OK);
    cr_assert_eq(n2, 2 * 192);
    float row0[192];
    memcpy(row0, y2, sizeof row0);

    cr_assert_eq(fpay_session_set_batch(s, 1), FPAY_OK, "%s", fpay_session_errmsg(s));
    fpay_tensor_info info;
    fpay_session_output_info(s, 0, &info);
    cr_assert_eq(info.rank, 2);
    cr_assert_eq(info.dims[0], 1);
    cr_assert_eq(info.dims[1], 192);
    cr_assert_eq(fpay_session_set_input(s, 0, x, row), FPAY_OK);
    cr_assert_eq(fpay_session_run(s), FPAY_OK, "%s", fpay_session_errmsg(s));
    const float *y1;
    size_t n1;
    cr_assert_eq(fpay_session_output(s, 0, &y1, &n1), FPAY_OK);
    cr_assert_eq(n1, 192);
    /* Each batch row is computed by the same kernels in the same order, so
     * the bits must match, not just the values. */
    cr_assert_eq(memcmp(y1, row0, sizeof row0), 0, "batch 1 differs from row 0 of batch 2");
    free(x);
    fpay_session_free(s);
    fpay_model_free(m);
}

Test(session, wrong_sized_input_is_refused)
{
    fpay_model *m = load("rnet.tflite");
    fpay_session *s = session(m, NULL);
    float x[24 * 24 * 3 + 1] = {0};
    cr_assert_eq(fpay_session_set_input(s, 0, x, 24 * 24 * 3 - 1), FPAY_SHAPE_MISMATCH);
    cr_assert(strstr(fpay_session_errmsg(s), "needs 1728 floats") != NULL, "%s",
              fpay_session_errmsg(s));
    cr_assert_eq(fpay_session_set_input(s, 0, x, 24 * 24 * 3 + 1), FPAY_SHAPE_MISMATCH);
    cr_assert_eq(fpay_session_set_input(s, 3, x, 24 * 24 * 3), FPAY_INVALID_ARGUMENT);
    cr_assert_eq(fpay_session_set_input(s, 0, x, 24 * 24 * 3), FPAY_OK);
    fpay_session_free(s);
    fpay_model_free(m);
}

Test(session, failed_reshape_keeps_the_session_usable)
{
    fpay_model *m = load("pnet.tflite");
    fpay_session *s = session(m, "cpu");
    int64_t ok_dims[4] = {1, 20, 16, 3};
    cr_assert_eq(fpay_session_set_input_shape(s, 0, 4, ok_dims), FPAY_OK, "%s",
                 fpay_session_errmsg(s));
    /* 9x9 is below P-Net's 12x12 receptive field: VALID convs cannot fit. */
    int64_t small[4] = {1, 9, 9, 3};
    cr_assert_eq(fpay_session_set_input_shape(s, 0, 4, small), FPAY_SHAPE_MISMATCH);
    cr_assert(strlen(fpay_session_errmsg(s)) > 10);
    cr_assert_eq(fpay_session_set_batch(s, 0), FPAY_INVALID_ARGUMENT);
    fpay_tensor_info in;
    fpay_session_input_info(s, 0, &in);
    cr_assert_eq(in.dims[1], 20);
    float *x = random_input(in.count, 3);
    cr_assert_eq(fpay_session_set_input(s, 0, x, in.count), FPAY_OK);
    cr_assert_eq(fpay_session_run(s), FPAY_OK, "%s", fpay_session_errmsg(s));
    fpay_tensor_info out;
    fpay_session_output_info(s, 0, &out);
    cr_assert_eq(out.dims[1], 5); /* (20-2)/2 -> 9 -> 7 -> 5 */
    cr_assert_eq(out.dims[2], 3);
    free(x);
    fpay_session_free(s);
    fpay_model_free(m);
}

Test(session, arena_reuses_memory)
{
    fpay_model *m = load("MobileFaceNet.tflite");
    fpay_session *s = session(m, "cpu");
    cr_assert_eq(fpay_session_set_batch(s, 1), FPAY_OK);
    size_t peak = fpay_session_peak_activation_bytes(s);
    /* The largest op at batch 1 is the 1x1 conv [1,56,56,64] -> [1,56,56,128]:
     * both must be live at once (2,408,448 bytes), and the graph input
     * [1,112,112,3] (150,528 bytes) lives to the end so that a second run
     * can use it. A planner without reuse would need the sum of all ~65
     * activations (over 10 MB). The greedy planner reaches exactly that
     * lower bound (every size is a multiple of the 64-byte alignment), as
     * docs/architecture.md says: any waste is a regression. */
    const size_t conv = 56 * 56 * (64 + 128) * sizeof(float);
    const size_t input = 112 * 112 * 3 * sizeof(float);
    printf("MobileFaceNet batch 1 peak activation bytes: %zu\n", peak);
    cr_assert_eq(peak, conv + input, "peak %zu bytes, the lower bound is %zu", peak,
                 conv + input);
    /* Batch 2 doubles every activation: exactly twice. */
    cr_assert_eq(fpay_session_set_batch(s, 2), FPAY_OK);
    cr_assert_eq(fpay_session_peak_activation_bytes(s), 2 * peak);
    fpay_session_free(s);
    fpay_model_free(m);
}

/* Runs s `runs` times on the input set once, and checks every output of
 * every run is bit for bit the first run's. */
static void same_bits_every_run(fpay_session *s, const char *what, int runs)
{
    int n_out = fpay_session_output_count(s);
    float *first[8] = {0};
    size_t count[8] = {0};
    cr_assert_leq(n_out, 8);
    for (int r = 0; r < runs; r++) {
        cr_assert_eq(fpay_session_run(s), FPAY_OK, "%s: %s", what, fpay_session_errmsg(s));
        for (int k = 0; k < n_out; k++) {
            const float *y;
            size_t n;
            cr_assert_eq(fpay_session_output(s, k, &y, &n), FPAY_OK);
            if (r == 0) {
                first[k] = malloc(n * sizeof(float));
                memcpy(first[k], y, n * sizeof(float));
                count[k] = n;
                continue;
            }
            cr_assert_eq(n, count[k]);
            cr_assert_eq(memcmp(y, first[k], n * sizeof(float)), 0,
                         "%s: output %d of run %d differs from run 1: the input was "
                         "overwritten", what, k, r + 1);
        }
    }
    for (int k = 0; k < n_out; k++)
        free(first[k]);
}

/* The input is set once and belongs to the caller: the engine must not
 * hand its memory to a later tensor, so every run computes on it. */
Test(session, running_again_keeps_the_input)
{
    static const char *const models[] = {"MobileFaceNet.tflite", "pnet.tflite", "rnet.tflite",
                                         "onet.tflite", "FaceAntiSpoofing.tflite"};
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        fpay_model *m = load(models[i]);
        fpay_session *s = session(m, "cpu");
        if (strstr(models[i], "pnet")) { /* declared 1280x960: a pyramid level will do */
            int64_t dims[4] = {1, 160, 120, 3};
            cr_assert_eq(fpay_session_set_input_shape(s, 0, 4, dims), FPAY_OK);
        }
        for (int k = 0; k < fpay_session_input_count(s); k++) {
            fpay_tensor_info in;
            cr_assert_eq(fpay_session_input_info(s, k, &in), FPAY_OK);
            float *x = random_input(in.count, 100 + i);
            cr_assert_eq(fpay_session_set_input(s, k, x, in.count), FPAY_OK);
            free(x);
        }
        same_bits_every_run(s, models[i], 4);
        fpay_session_free(s);
        fpay_model_free(m);
    }
}

/* Sets P-Net's input to 1 x w x h x 3 of seeded values, runs, and returns a
 * copy of every output (outs[k], counts[k]). */
static void pnet_run(fpay_session *s, int w, int h, uint64_t seed, float *outs[2],
                     size_t counts[2])
{
    int64_t dims[4] = {1, w, h, 3};
    cr_assert_eq(fpay_session_set_input_shape(s, 0, 4, dims), FPAY_OK, "%s",
                 fpay_session_errmsg(s));
    size_t n = (size_t)w * (size_t)h * 3;
    float *x = random_input(n, seed);
    cr_assert_eq(fpay_session_set_input(s, 0, x, n), FPAY_OK);
    free(x);
    cr_assert_eq(fpay_session_run(s), FPAY_OK, "%s", fpay_session_errmsg(s));
    cr_assert_eq(fpay_session_output_count(s), 2);
    for (int k = 0; k < 2; k++) {
        const float *y;
        cr_assert_eq(fpay_session_output(s, k, &y, &counts[k]), FPAY_OK);
        outs[k] = malloc(counts[k] * sizeof(float));
        memcpy(outs[k], y, counts[k] * sizeof(float));
    }
}

static void same_outputs(float *a[2], const size_t na[2], float *b[2], const size_t nb[2],
                         const char *what)
{
    for (int k = 0; k < 2; k++) {
        cr_assert_eq(na[k], nb[k], "%s: output %d has %zu values, not %zu", what, k, nb[k],
                     na[k]);
        cr_assert_eq(memcmp(a[k], b[k], na[k] * sizeof(float)), 0,
                     "%s: output %d differs", what, k);
        free(b[k]);
    }
}

/* MTCNN runs P-Net on a pyramid: shapes change at every level and recur at
 * every frame. A shape seen before takes its cached plan (no new arena, no
 * repacked weights) and gives the bits a fresh session gives. */
Test(session, a_shape_seen_before_reuses_its_plan)
{
    fpay_model *m = load("pnet.tflite");
    fpay_session *s = session(m, "cpu");
    fpay_session_stats st0, st;
    fpay_session_get_stats(s, &st0);
    cr_assert_eq(st0.plans_built, 1); /* the declared shape */
    if (!getenv("FACEPAY_ISA") || strcmp(getenv("FACEPAY_ISA"), "ref") != 0)
        cr_assert_gt(st0.weight_packs, 0, "no weights packed: the test checks nothing");

    float *a[2], *b[2], *again[2];
    size_t na[2], nb[2], nagain[2];
    pnet_run(s, 40, 30, 1, a, na);
    pnet_run(s, 24, 20, 2, b, nb);
    fpay_session_get_stats(s, &st);
    cr_assert_eq(st.plans_built, st0.plans_built + 2);

    /* Back to 40x30 and 24x20, other inputs first, then the same ones. */
    float *other[2];
    size_t nother[2];
    pnet_run(s, 40, 30, 3, other, nother);
    free(other[0]);
    free(other[1]);
    pnet_run(s, 40, 30, 1, again, nagain);
    same_outputs(a, na, again, nagain, "40x30 from its cached plan");
    pnet_run(s, 24, 20, 2, again, nagain);
    same_outputs(b, nb, again, nagain, "24x20 from its cached plan");
    fpay_session_get_stats(s, &st);
    cr_assert_eq(st.plans_built, st0.plans_built + 2, "a shape seen before was re-planned");
    cr_assert_eq(st.plan_hits, st0.plan_hits + 3);
    cr_assert_eq(st.weight_packs, st0.weight_packs, "weights were packed again");

    /* The same bits as a session that never saw another shape. */
    fpay_session *fresh = session(m, "cpu");
    pnet_run(fresh, 40, 30, 1, again, nagain);
    same_outputs(a, na, again, nagain, "40x30 on a fresh session");
    fpay_session_free(fresh);

    /* The cache is bounded: more shapes than it holds evict the least
     * recently used, which are then planned again, to the same bits. */
    for (int i = 0; i < FPAY_SESSION_MAX_PLANS + 2; i++) {
        pnet_run(s, 12 + i, 12, 4, again, nagain);
        free(again[0]);
        free(again[1]);
        fpay_session_get_stats(s, &st);
        cr_assert_leq(st.plans_cached, FPAY_SESSION_MAX_PLANS);
    }
    long built = st.plans_built;
    pnet_run(s, 40, 30, 1, again, nagain);
    same_outputs(a, na, again, nagain, "40x30 after its plan was evicted");
    fpay_session_get_stats(s, &st);
    cr_assert_eq(st.plans_built, built + 1, "an evicted plan was not planned again");
    cr_assert_eq(st.weight_packs, st0.weight_packs, "weights were packed again");
    for (int k = 0; k < 2; k++) {
        free(a[k]);
        free(b[k]);
    }
    fpay_session_free(s);
    fpay_model_free(m);
}

Test(session, bad_models_give_clean_errors)
{
    char err[256] = "";
    fpay_model *m = (fpay_model *)1;
    cr_assert_eq(fpay_model_load_file("/nonexistent/x.tflite", 0, &m, err, sizeof err),
                 FPAY_NOT_FOUND);
    cr_assert_null(m);
    cr_assert(strstr(err, "/nonexistent/x.tflite") != NULL, "%s", err);
    cr_assert_eq(fpay_model_load_memory("", 0, 0, &m, err, sizeof err), FPAY_MODEL_MALFORMED);
    const char junk[] = "this is not a flatbuffer at all, just text.";
    cr_assert_neq(fpay_model_load_memory(junk, sizeof junk, 0, &m, err, sizeof err), FPAY_OK);
    cr_assert_null(m);
    cr_assert_gt(strlen(err), 0);
    cr_assert_eq(fpay_model_load_file(NULL, 0, &m, err, sizeof err), FPAY_INVALID_ARGUMENT);
}

Test(session, unknown_backend_is_refused)
{
    fpay_model *m = load("onet.tflite");
    fpay_session_options o;
    fpay_session_options_init(&o);
    o.backend = "warp-drive";
    char err[256] = "";
    fpay_session *s = NULL;
    cr_assert_eq(fpay_session_create(m, &o, &s, err, sizeof err), FPAY_BACKEND_UNAVAILABLE);
    cr_assert_null(s);
    cr_assert(strstr(err, "warp-drive") != NULL && strstr(err, "cpu") != NULL, "%s", err);
    fpay_model_free(m);
}

Test(session, status_strings_cover_the_list)
{
    cr_assert_str_eq(fpay_status_str(FPAY_OK), "ok");
    cr_assert_str_eq(fpay_status_str(FPAY_SHAPE_MISMATCH), "tensor shape mismatch");
    cr_assert_str_eq(fpay_status_str((fpay_status)999), "unknown status");
    cr_assert(strlen(fpay_build_id()) > 5);
}

/* ------------------------------------------------ registry, partitioning */

static int reshape_calls;

static bool copy_supports(const fpay_graph *g, int index)
{
    return g->nodes[index].op == FPAY_OP_RESHAPE;
}

static fpay_status copy_run(void *state, const fpay_exec_ctx *ctx, int index, char *err,
                            size_t err_len)
{
    (void)state;
    (void)err;
    (void)err_len;
    const fpay_node *n = &ctx->graph->nodes[index];
    memcpy(ctx->buffers[n->outputs[0]], ctx->buffers[n->inputs[0]],
           ctx->graph->tensors[n->outputs[0]].nbytes);
    reshape_calls++;
    return FPAY_OK;
}

static const fpay_backend_iface copy_backend = {
    .abi_version = FPAY_BACKEND_ABI_VERSION,
    .struct_size = sizeof(fpay_backend_iface),
    .name = "test-reshape-only",
    .version = "1",
    .supports_node = copy_supports,
    .run_node = copy_run,
};

static fpay_status failing_probe(char *why, size_t len)
{
    snprintf(why, len, "no such device");
    return FPAY_BACKEND_UNAVAILABLE;
}

Test(session, registry_rejects_bad_backends_and_partitions_nodes)
{
    char err[256] = "";
    fpay_backend_iface bad = copy_backend;
    bad.abi_version = FPAY_BACKEND_ABI_VERSION + 1;
    bad.name = "bad-abi";
    cr_assert_eq(fpay_backend_register(&bad, err, sizeof err), FPAY_BACKEND_UNAVAILABLE);
    cr_assert(strstr(err, "ABI") != NULL, "%s", err);
    bad = copy_backend;
    bad.name = "no-run";
    bad.run_node = NULL;
    cr_assert_eq(fpay_backend_register(&bad, err, sizeof err), FPAY_BACKEND_UNAVAILABLE);
    bad = copy_backend;
    bad.name = "bad-probe";
    bad.probe = failing_probe;
    cr_assert_eq(fpay_backend_register(&bad, err, sizeof err), FPAY_BACKEND_UNAVAILABLE);
    cr_assert(strstr(err, "no such device") != NULL, "%s", err);
    int before = fpay_backend_count();
    cr_assert_eq(fpay_backend_register(&copy_backend, err, sizeof err), FPAY_OK, "%s", err);
    cr_assert_eq(fpay_backend_count(), before + 1);

    fpay_model *m = load("MobileFaceNet.tflite");
    /* Not an accelerator: "auto" keeps to the CPU backend. */
    fpay_session *au = session(m, "auto");
    cr_assert_str_eq(fpay_session_backend(au), "cpu");
    fpay_session_free(au);
    fpay_session *ref = session(m, "cpu");
    fpay_session *s = session(m, "test-reshape-only");
    const size_t n = 2 * 112 * 112 * 3;
    float *x = random_input(n, 11);
    cr_assert_eq(fpay_session_set_input(ref, 0, x, n), FPAY_OK);
    cr_assert_eq(fpay_session_set_input(s, 0, x, n), FPAY_OK);
    cr_assert_eq(fpay_session_run(ref), FPAY_OK);
    reshape_calls = 0;
    cr_assert_eq(fpay_session_run(s), FPAY_OK, "%s", fpay_session_errmsg(s));
    cr_assert_eq(reshape_calls, 1);
    int nodes = fpay_model_node_count(m);
    cr_assert_str_eq(fpay_session_node_backend(s, nodes - 1), "test-reshape-only");
    cr_assert_str_eq(fpay_session_node_backend(s, 0), "cpu");
    cr_assert_null(fpay_session_node_backend(s, nodes));
    const float *a, *b;
    size_t na, nb;
    fpay_session_output(ref, 0, &a, &na);
    fpay_session_output(s, 0, &b, &nb);
    cr_assert_eq(na, nb);
    cr_assert_eq(memcmp(a, b, na * sizeof(float)), 0);
    free(x);
    fpay_session_free(s);
    fpay_session_free(ref);
    fpay_model_free(m);
}
