/*
 * test_cpu_fast.c - the CPU backend's SIMD path (backends/cpu/cpu_fast.c):
 * which kernel each node gets and what its prepare packs. Correctness of
 * the kernels themselves is test_simd_kernels' (against the reference),
 * and of whole models on every ISA test_golden's; this pins the dispatch
 * on the real models: every conv, depthwise conv, fully connected and max
 * pool node of MobileFaceNet, the MTCNN nets and FaceAntiSpoofing gets a
 * kernel of the chosen ISA (none with FACEPAY_ISA=ref), 1x1 convs go to a
 * GEMM tile, and weights are packed once per node, never again when the
 * state is extended.
 */
#include "cpu_backend.h"
#include "model_impl.h"
#include "test_util.h"

#include "fpay_simd.h"

#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

static const char *const k_models[] = {"MobileFaceNet.tflite", "pnet.tflite", "rnet.tflite",
                                       "onet.tflite", "FaceAntiSpoofing.tflite"};

/* Nodes cpu_fast.c has a SIMD kernel family for. */
static bool has_family(const fpay_graph *g, int i)
{
    const fpay_node *n = &g->nodes[i];
    switch (n->op) {
    case FPAY_OP_CONV_2D:
    case FPAY_OP_FULLY_CONNECTED:
    case FPAY_OP_MAX_POOL_2D:
        return true;
    case FPAY_OP_DEPTHWISE_CONV_2D:
        return n->attr.conv.depth_multiplier == 1;
    default:
        return false;
    }
}

static void check_model(const char *file, fpay_isa isa)
{
    char err[320] = "";
    fpay_model *m = NULL;
    cr_assert_eq(fpay_model_load_file(fpay_test_model_path(file), 0, &m, err, sizeof err),
                 FPAY_OK, "%s", err);
    const fpay_graph *g = &m->graph;
    setenv("FACEPAY_ISA", fpay_isa_name(isa), 1);
    void *state = NULL;
    fpay_status st = fpay_cpu_prepare(g, NULL, 1, &state, err, sizeof err);
    unsetenv("FACEPAY_ISA");
    cr_assert_eq(st, FPAY_OK, "%s: %s", file, err);
    fpay_cpu_state *s = state;
    cr_assert_eq(fpay_cpu_state_isa(s), isa);
    char suffix[32];
    snprintf(suffix, sizeof suffix, "__%s", fpay_isa_name(isa));
    int with_kernel = 0, families = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const char *k = fpay_cpu_state_kernel(s, i);
        if (isa == FPAY_ISA_REF) {
            cr_expect_null(k, "%s node %d got %s at FACEPAY_ISA=ref", file, i, k);
            continue;
        }
        if (!has_family(g, i)) {
            cr_expect_null(k, "%s node %d (%s) got a kernel: %s", file, i,
                           fpay_op_name(g->nodes[i].op), k);
            continue;
        }
        families++;
        cr_expect_not_null(k, "%s node %d (%s) runs on the reference kernel at %s", file, i,
                           fpay_op_name(g->nodes[i].op), fpay_isa_name(isa));
        if (!k)
            continue;
        with_kernel++;
        size_t n = strlen(k), ns = strlen(suffix);
        cr_expect(n > ns && !strcmp(k + n - ns, suffix), "%s node %d: kernel %s is not %s",
                  file, i, k, fpay_isa_name(isa));
        const fpay_node *node = &g->nodes[i];
        const fpay_tensor *w = &g->tensors[node->inputs[1]];
        bool pointwise = node->op == FPAY_OP_CONV_2D && w->dims[1] == 1 && w->dims[2] == 1 &&
                         node->attr.conv.stride_h == 1 && node->attr.conv.stride_w == 1;
        if (pointwise || node->op == FPAY_OP_FULLY_CONNECTED)
            cr_expect(strstr(k, "_gemm_") != NULL, "%s node %d: 1x1 conv on %s, not a GEMM",
                      file, i, k);
    }
    printf("%s at %s: %d of %d conv/dwconv/fc/pool nodes on SIMD kernels, %ld packs\n", file,
           fpay_isa_name(isa), with_kernel, families, fpay_cpu_state_packs(s));
    /* Extending to nodes it already has packs nothing again. */
    long packs = fpay_cpu_state_packs(s);
    cr_assert_eq(fpay_cpu_prepare_more(state, g, NULL, err, sizeof err), FPAY_OK, "%s", err);
    cr_expect_eq(fpay_cpu_state_packs(s), packs, "%s: weights packed again", file);
    fpay_cpu_release(state);
    fpay_model_free(m);
}

static void check_isa(fpay_isa isa)
{
    if (!fpay_isa_supported(isa))
        cr_skip_test("%s: this CPU lacks it (detected: %s)", fpay_isa_name(isa),
                     fpay_cpu_features_get()->summary);
    for (size_t k = 0; k < sizeof k_models / sizeof k_models[0]; k++)
        check_model(k_models[k], isa);
}

Test(cpu_fast, reference_isa_uses_no_simd_kernel) { check_isa(FPAY_ISA_REF); }
Test(cpu_fast, avx2_kernel_on_every_node_with_a_family) { check_isa(FPAY_ISA_AVX2); }
Test(cpu_fast, avx512_kernel_on_every_node_with_a_family) { check_isa(FPAY_ISA_AVX512); }
