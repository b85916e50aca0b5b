/*
 * test_simd_kernels.c - every kernel of the dispatch tables (generated from
 * fpay_kernel_list.h) against the reference kernels, on random shapes that
 * include the awkward ones: channel counts that are not a multiple of the
 * vector width, 1x1 maps, odd sizes, stride 2 on odd inputs, padding on
 * every side, dilation, every epilogue (bias or not, each activation,
 * residual). Kernels of ISAs this CPU lacks are skipped.
 *
 * The shapes, the runners and the tolerance (1e-5 * sum|terms| + 1e-6,
 * scaled by the PReLU slope or alpha; max pool and the image kernels
 * (resize, warp, normalise) exact) live in
 * kernel_check.[ch], shared with the NEON test (tests/neon); here each
 * check's result becomes a Criterion assertion.
 */
#include "kernel_check.h"
#include "test_util.h"

#include "facepay/facepay.h"
#include "fpay_kernel_list.h"
#include "fpay_simd.h"

#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void skip_if_unsupported(fpay_isa isa, const char *family)
{
    if (!fpay_isa_supported(isa))
        cr_skip_test("%s %s: this CPU lacks it (detected: %s)", family, fpay_isa_name(isa),
                     fpay_cpu_features_get()->summary);
}

/* One Criterion test per kernel, named after it (generated from
 * fpay_kernel_list.h), so that `test_simd_kernels --list | grep NAME` finds
 * a kernel's test and `--filter 'simd_kernels/NAME'` runs it alone; a kernel
 * of an ISA this CPU lacks shows as skipped. The variadic part runs the
 * family's check on kernel i_ into res_. */
#define FPAY_KERNEL_TEST_(table, count, family, kname, isa, ...)                  \
    Test(simd_kernels, kname)                                                     \
    {                                                                             \
        skip_if_unsupported(FPAY_ISA_##isa, family);                              \
        int i_ = -1;                                                              \
        for (int k_ = 0; k_ < (count) && i_ < 0; k_++)                            \
            if (!strcmp((table)[k_].name, #kname))                                \
                i_ = k_;                                                          \
        cr_assert_geq(i_, 0, "%s is not in the dispatch table", #kname);          \
        kc_result res_;                                                           \
        __VA_ARGS__;                                                              \
        cr_assert(res_.ok, "%s", res_.msg);                                       \
    }

#define GEMM_TEST_(kname, isa, ...)                                                \
    FPAY_KERNEL_TEST_(fpay_gemm_ukernels, fpay_gemm_ukernel_count, "gemm", kname, isa, \
                      kc_check_gemm(&fpay_gemm_ukernels[i_], i_, &res_))
#define CONV_TEST_(kname, isa, ...)                                                \
    FPAY_KERNEL_TEST_(fpay_conv_ukernels, fpay_conv_ukernel_count, "conv", kname, isa, \
                      kc_check_conv(&fpay_conv_ukernels[i_], i_, &res_))
#define DWCONV_TEST_(kname, isa, ...)                                              \
    FPAY_KERNEL_TEST_(fpay_dwconv_ukernels, fpay_dwconv_ukernel_count, "dwconv", kname,  \
                      isa, kc_check_dwconv(&fpay_dwconv_ukernels[i_], i_, &res_))
/* The x86 max pool check keeps its inputs as before: no signed-zero runs. */
#define MAXPOOL_TEST_(kname, isa, ...)                                             \
    FPAY_KERNEL_TEST_(fpay_maxpool_ukernels, fpay_maxpool_ukernel_count, "maxpool",     \
                      kname, isa,                                                  \
                      kc_check_maxpool(&fpay_maxpool_ukernels[i_], i_, false, &res_))
#define RESIZE_TEST_(kname, isa, ...)                                              \
    FPAY_KERNEL_TEST_(fpay_resize_ukernels, fpay_resize_ukernel_count, "resize", kname,  \
                      isa, kc_check_resize(&fpay_resize_ukernels[i_], i_, &res_))
#define WARP_TEST_(kname, isa, ...)                                                \
    FPAY_KERNEL_TEST_(fpay_warp_ukernels, fpay_warp_ukernel_count, "warp", kname, isa,   \
                      kc_check_warp(&fpay_warp_ukernels[i_], i_, &res_))
#define NORMALIZE_TEST_(kname, isa, ...)                                           \
    FPAY_KERNEL_TEST_(fpay_normalize_ukernels, fpay_normalize_ukernel_count,          \
                      "normalize", kname, isa,                                     \
                      kc_check_normalize(&fpay_normalize_ukernels[i_], i_, &res_))

#if defined(FPAY_GEMM_KERNELS)
FPAY_GEMM_KERNELS(GEMM_TEST_)
FPAY_CONV_KERNELS(CONV_TEST_)
FPAY_DWCONV_KERNELS(DWCONV_TEST_)
FPAY_MAXPOOL_KERNELS(MAXPOOL_TEST_)
FPAY_RESIZE_KERNELS(RESIZE_TEST_)
FPAY_WARP_KERNELS(WARP_TEST_)
FPAY_NORMALIZE_KERNELS(NORMALIZE_TEST_)
#endif

/* Every kernel of the dispatch tables has its test above: a kernel added
 * to a table by hand, outside the list, would otherwise go untested. */
Test(simd_kernels, every_dispatched_kernel_is_in_the_list)
{
    int listed = 0;
#define COUNT_(...) listed++;
#if defined(FPAY_GEMM_KERNELS)
    FPAY_GEMM_KERNELS(COUNT_)
    FPAY_CONV_KERNELS(COUNT_)
    FPAY_DWCONV_KERNELS(COUNT_)
    FPAY_MAXPOOL_KERNELS(COUNT_)
    FPAY_RESIZE_KERNELS(COUNT_)
    FPAY_WARP_KERNELS(COUNT_)
    FPAY_NORMALIZE_KERNELS(COUNT_)
#endif
#undef COUNT_
    int dispatched = fpay_gemm_ukernel_count + fpay_conv_ukernel_count +
                     fpay_dwconv_ukernel_count + fpay_maxpool_ukernel_count +
                     fpay_resize_ukernel_count + fpay_warp_ukernel_count +
                     fpay_normalize_ukernel_count;
    cr_expect_eq(listed, dispatched, "%d kernels listed, %d dispatched", listed, dispatched);
}

Test(simd_kernels, isa_selection)
{
    const fpay_cpu_features *f = fpay_cpu_features_get();
    cr_assert(f->summary[0]);
    cr_assert(fpay_isa_supported(FPAY_ISA_REF));
    cr_assert(fpay_isa_supported(fpay_isa_best()));
    /* Every supported ISA has a kernel in every family (x86 today), unless
     * the build left the SIMD kernels out (-DFACEPAY_SIMD=OFF). */
#if defined(FPAY_NO_SIMD)
    cr_assert_null(fpay_gemm_select(fpay_isa_best(), 0));
    return;
#endif
    for (int isa = FPAY_ISA_AVX2; isa <= FPAY_ISA_AVX512; isa++) {
        if (!fpay_isa_supported((fpay_isa)isa))
            continue;
        cr_assert_not_null(fpay_gemm_select((fpay_isa)isa, 0));
        cr_assert_not_null(fpay_conv_select((fpay_isa)isa));
        cr_assert_not_null(fpay_maxpool_select((fpay_isa)isa));
        cr_assert_not_null(fpay_resize_select((fpay_isa)isa));
        cr_assert_not_null(fpay_warp_select((fpay_isa)isa));
        cr_assert_not_null(fpay_normalize_select((fpay_isa)isa));
        const fpay_dwconv_ukernel *d = fpay_dwconv_select((fpay_isa)isa, 3, 3, 2, 2);
        cr_assert_not_null(d);
        cr_assert(strstr(d->name, "3x3s2") != NULL, "%s", d->name);
        d = fpay_dwconv_select((fpay_isa)isa, 7, 7, 1, 1);
        cr_assert(d && d->kh == 0);
        /* GEMM tile per layer: never more padding than the narrowest tile
         * of the ISA needs, and the widest tile when it divides n. */
        int widest = 0, narrowest = 1 << 30;
        for (int i = 0; i < fpay_gemm_ukernel_count; i++)
            if (fpay_gemm_ukernels[i].isa == (fpay_isa)isa) {
                const int nr = fpay_gemm_ukernels[i].nr;
                widest = nr > widest ? nr : widest;
                narrowest = nr < narrowest ? nr : narrowest;
            }
        cr_assert_eq(fpay_gemm_select((fpay_isa)isa, 0)->nr, widest);
        cr_assert_eq(fpay_gemm_select((fpay_isa)isa, 4 * widest)->nr, widest);
        static const int ns[] = {1, 2, 10, 16, 24, 32, 48, 96, 192, 200};
        for (size_t j = 0; j < sizeof ns / sizeof ns[0]; j++) {
            const int nr = fpay_gemm_select((fpay_isa)isa, ns[j])->nr;
            const int pad = (nr - ns[j] % nr) % nr;
            cr_assert_leq(pad, (narrowest - ns[j] % narrowest) % narrowest, "n=%d nr=%d",
                          ns[j], nr);
        }
    }
}

/* fpay_cpu_report (what `facepay cpuinfo` prints) tells the same as the
 * dispatch: the supported ISAs, the chosen one, the GEMM tiles of it. */
Test(simd_kernels, cpu_report_matches_the_dispatch)
{
    char r[4096];
    unsetenv("FACEPAY_ISA");
    cr_assert_eq(fpay_cpu_report(r, sizeof r), FPAY_OK, "%s", r);
    char want[128];
    snprintf(want, sizeof want, "chosen:    %s (best detected)", fpay_isa_name(fpay_isa_best()));
    cr_expect(strstr(r, want), "'%s' lacks '%s'", r, want);
    for (int isa = 0; isa < FPAY_ISA_COUNT_; isa++) {
        snprintf(want, sizeof want, " %s", fpay_isa_name((fpay_isa)isa));
        const char *sup = strstr(r, "supported:"), *eol = sup ? strchr(sup, '\n') : NULL;
        cr_assert(sup && eol);
        const char *at = strstr(sup, want);
        cr_expect_eq(at != NULL && at < eol, fpay_isa_supported((fpay_isa)isa),
                     "%s listed wrongly: %.*s", fpay_isa_name((fpay_isa)isa), (int)(eol - sup),
                     sup);
    }
    const fpay_gemm_ukernel *g = fpay_gemm_select(fpay_isa_best(), 0);
    cr_expect(g ? strstr(r, g->name) != NULL : strstr(r, "conv 1x1 (GEMM)      reference") != NULL,
              "%s", r);
    setenv("FACEPAY_ISA", "ref", 1);
    cr_assert_eq(fpay_cpu_report(r, sizeof r), FPAY_OK);
    cr_expect(strstr(r, "chosen:    ref (FACEPAY_ISA)") && strstr(r, "max pool             reference"),
              "%s", r);
    setenv("FACEPAY_ISA", "sse9", 1);
    cr_expect_eq(fpay_cpu_report(r, sizeof r), FPAY_INVALID_ARGUMENT);
    cr_expect(strstr(r, "FACEPAY_ISA=sse9 is not one of"), "%s", r);
    unsetenv("FACEPAY_ISA");
    /* Short buffers are cut, never overrun; none at all is refused. */
    char tiny[16];
    memset(tiny, 'x', sizeof tiny);
    cr_expect_eq(fpay_cpu_report(tiny, 10), FPAY_OK);
    cr_expect_eq(strlen(tiny), 9);
    cr_expect_eq(tiny[10], 'x');
    cr_expect_eq(fpay_cpu_report(NULL, 10), FPAY_INVALID_ARGUMENT);
    cr_expect_eq(fpay_cpu_report(tiny, 0), FPAY_INVALID_ARGUMENT);
}

/* A forced ISA the CPU (or build) lacks is a clear session error. */
Test(simd_kernels, forced_isa_unavailable_fails_session)
{
    fpay_model *m = NULL;
    char err[320] = "";
    cr_assert_eq(fpay_model_load_file(fpay_test_model_path("MobileFaceNet.tflite"), 0, &m, err,
                                      sizeof err),
                 FPAY_OK, "%s", err);
    const char *lacking = NULL;
    for (int isa = FPAY_ISA_COUNT_ - 1; isa > 0 && !lacking; isa--)
        if (!fpay_isa_supported((fpay_isa)isa))
            lacking = fpay_isa_name((fpay_isa)isa);
    cr_assert_not_null(lacking);
    setenv("FACEPAY_ISA", lacking, 1);
    fpay_session_options o;
    fpay_session_options_init(&o);
    o.backend = "cpu";
    fpay_session *s = NULL;
    fpay_status st = fpay_session_create(m, &o, &s, err, sizeof err);
    cr_assert_eq(st, FPAY_BACKEND_UNAVAILABLE, "%s", err);
    cr_assert(strstr(err, "FACEPAY_ISA=") && strstr(err, "lacks") && strstr(err, "detected"),
              "%s", err);
    setenv("FACEPAY_ISA", "sse9", 1);
    cr_assert_eq(fpay_session_create(m, &o, &s, err, sizeof err), FPAY_BACKEND_UNAVAILABLE);
    unsetenv("FACEPAY_ISA");
    fpay_model_free(m);
}
