/*
 * test_simd_kernels.c - every kernel of the dispatch tables (generated from
 * fpay_kernel_list.h) against the reference kernels, on random shapes that
 * include the awkward ones: channel counts that are not a multiple of the
 * vector width, 1x1 maps, odd sizes, stride 2 on odd inputs, padding on
 * every side, dilation, every epilogue (bias or not, each activation,
 * residual). Kernels of ISAs this CPU lacks are skipped.
 *
 * Tolerance. The SIMD kernels sum the same taps in the same order as the
 * reference but with fused multiply-adds (one rounding per tap instead of
 * two), so for an output with K taps |simd - ref| <= about 2K * 2^-24 *
 * sum|x_k w_k| (the classic bound for recursive summation, once per path).
 * With K <= 500 here that is < 6e-5 * sum|terms|; we allow
 *     |simd - ref| <= 1e-5 * (sum|terms| + |bias| + |residual|) * s + 1e-6
 * (s = max(1, |PReLU slope|, |alpha|)), which real kernels meet with two
 * orders of magnitude to spare (errors are random-walk, not worst case),
 * while a wrong tap, pad, channel or epilogue is off by O(|term|). sum|terms|
 * is computed by running the reference itself on |x| and |w|. Max pool only
 * compares and must match exactly.
 */
#include "test_util.h"

#include "facepay/facepay.h"
#include "fpay_simd.h"

#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float *rand_buf(fpay_test_rng *r, size_t n, float lo, float hi)
{
    float *p = malloc((n ? n : 1) * sizeof(float));
    cr_assert_not_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = fpay_test_rng_uniform(r, lo, hi);
    return p;
}

static float *abs_copy(const float *p, size_t n)
{
    float *q = malloc((n ? n : 1) * sizeof(float));
    cr_assert_not_null(q);
    for (size_t i = 0; i < n; i++)
        q[i] = fabsf(p[i]);
    return q;
}

static float *padded_copy(const float *p, int n)
{
    float *q = aligned_alloc(64, fpay_pack_padded((size_t)n) * sizeof(float) + 64);
    cr_assert_not_null(q);
    fpay_pack_channels_f32(n, p, q);
    return q;
}

static int rint_in(fpay_test_rng *r, int lo, int hi)
{
    return lo + (int)(fpay_test_rng_next(r) % (uint64_t)(hi - lo + 1));
}

/* A random epilogue over `channels`: bias or not, one of the activations,
 * residual or not. Reference-side pointers (ref_*) and kernel-side ones. */
typedef struct epi_case {
    float *bias, *slope, *residual;
    float *bias_p, *slope_p; /* padded */
    fpay_kact act;
    float alpha;
} epi_case;

static void epi_make(fpay_test_rng *r, int channels, size_t out_count, int variant,
                     epi_case *e)
{
    memset(e, 0, sizeof *e);
    e->act = (fpay_kact)(variant % 6);
    e->alpha = 0.2f;
    if ((variant / 6) % 2 == 0) {
        e->bias = rand_buf(r, (size_t)channels, -1, 1);
        e->bias_p = padded_copy(e->bias, channels);
    }
    if (e->act == FPAY_KACT_PRELU) {
        e->slope = rand_buf(r, (size_t)channels, -3, 3);
        e->slope_p = padded_copy(e->slope, channels);
    }
    if ((variant / 12) % 2 == 1)
        e->residual = rand_buf(r, out_count, -2, 2);
}

static void epi_free(epi_case *e)
{
    free(e->bias);
    free(e->slope);
    free(e->residual);
    free(e->bias_p);
    free(e->slope_p);
}

static fpay_kepilogue epi_kernel(const epi_case *e)
{
    fpay_kepilogue k = {e->bias_p, e->act, e->alpha, e->slope_p, e->residual};
    return k;
}

/* Reference with the residual: conv/fc with no activation, then ADD with
 * the activation (what the fused node means). `run` fills out from (ep). */
static void ref_finish(const epi_case *e, int channels, size_t count, float *out)
{
    fpay_epilogue ep = {e->act, e->alpha, e->slope};
    fpay_bcast bc;
    memset(&bc, 0, sizeof bc);
    bc.rank = 2;
    bc.out_dims[0] = (int64_t)(count / (size_t)channels);
    bc.out_dims[1] = channels;
    bc.a_strides[0] = bc.b_strides[0] = channels;
    bc.a_strides[1] = bc.b_strides[1] = 1;
    fpay_ref_binary_f32(FPAY_KBIN_ADD, &bc, out, e->residual, &ep, out);
}

static void compare(const char *what, const epi_case *e, int channels, size_t count,
                    const float *got, const float *want, const float *absref)
{
    float s = 1.0f;
    if (e->act == FPAY_KACT_LEAKY_RELU && fabsf(e->alpha) > s)
        s = fabsf(e->alpha);
    for (size_t i = 0; i < count; i++) {
        float si = s;
        if (e->act == FPAY_KACT_PRELU && fabsf(e->slope[i % (size_t)channels]) > si)
            si = fabsf(e->slope[i % (size_t)channels]);
        double mag = absref[i] + (e->residual ? fabs(e->residual[i]) : 0.0);
        double tol = 1e-5 * mag * si + 1e-6;
        double err = fabs((double)got[i] - want[i]);
        if (!(err <= tol))
            cr_assert_fail("%s: output %zu (channel %zu): got %.9g, reference %.9g, "
                           "|err| %.3g > tol %.3g",
                           what, i, i % (size_t)channels, got[i], want[i], err, tol);
    }
}

static void skip_if_unsupported(fpay_isa isa, const char *family)
{
    if (!fpay_isa_supported(isa))
        cr_skip_test("%s %s: this CPU lacks it (detected: %s)", family, fpay_isa_name(isa),
                     fpay_cpu_features_get()->summary);
}

/* ---------------------------------------------------------------- gemm */

static void gemm_case(const fpay_gemm_ukernel *uk, fpay_test_rng *r, int m, int n, int k,
                      int variant)
{
    float *a = rand_buf(r, (size_t)m * k, -1, 1);
    float *w = rand_buf(r, (size_t)n * k, -1, 1);
    float *packed = aligned_alloc(64, fpay_pack_weights_size(n, k, uk->nr) * sizeof(float) + 64);
    fpay_pack_weights_f32(n, k, uk->nr, w, packed);
    size_t count = (size_t)m * n;
    epi_case e;
    epi_make(r, n, count, variant, &e);
    float *got = malloc(count * sizeof(float)), *want = malloc(count * sizeof(float));
    float *absref = malloc(count * sizeof(float));
    fpay_gemm_args g = {m, n, k, a, (size_t)k, packed, epi_kernel(&e), got, (size_t)n};
    /* Two ranges, as two threads would run them. */
    size_t tasks = fpay_gemm_tasks(&g, uk->mr, uk->nr);
    uk->fn(&g, 0, tasks / 2);
    uk->fn(&g, tasks / 2, tasks);

    fpay_epilogue ep = {e.residual ? FPAY_KACT_NONE : e.act, e.alpha, e.slope};
    fpay_ref_fully_connected_f32(m, k, n, a, w, e.bias, &ep, want);
    if (e.residual)
        ref_finish(&e, n, count, want);
    float *aa = abs_copy(a, (size_t)m * k), *aw = abs_copy(w, (size_t)n * k);
    float *ab = e.bias ? abs_copy(e.bias, (size_t)n) : NULL;
    fpay_ref_fully_connected_f32(m, k, n, aa, aw, ab, NULL, absref);
    char what[160];
    snprintf(what, sizeof what, "%s m=%d n=%d k=%d act=%d bias=%d res=%d", uk->name, m, n, k,
             e.act, !!e.bias, !!e.residual);
    compare(what, &e, n, count, got, want, absref);
    free(aa), free(aw), free(ab), free(a), free(w), free(packed), free(got), free(want),
        free(absref);
    epi_free(&e);
}

static void check_gemm(fpay_isa isa)
{
    skip_if_unsupported(isa, "gemm");
    for (int i = 0; i < fpay_gemm_ukernel_count; i++) {
        if (fpay_gemm_ukernels[i].isa != isa)
            continue;
        const fpay_gemm_ukernel *uk = &fpay_gemm_ukernels[i];
        fpay_test_rng r;
        fpay_test_rng_seed(&r, 1000 + (uint64_t)i);
        const int fixed[][3] = {{1, 1, 1}, {49, 128, 512}, {7, 32, 64}, {13, 33, 17},
                                {1, 192, 512}, {3136, 64, 3}, {6, 16, 1}, {8, 47, 9}};
        for (size_t f = 0; f < sizeof fixed / sizeof fixed[0]; f++)
            gemm_case(uk, &r, fixed[f][0], fixed[f][1], fixed[f][2], (int)f * 5);
        for (int v = 0; v < 120; v++)
            gemm_case(uk, &r, rint_in(&r, 1, 30), rint_in(&r, 1, 80), rint_in(&r, 1, 70), v);
        printf("ok %s\n", uk->name);
    }
}

/* ------------------------------------------------------ conv / dwconv */

/* Random conv geometry; kh/kw/sh/sw > 0 are imposed. Returns false if the
 * draw has no output. */
static bool conv_geometry(fpay_test_rng *r, int kh, int kw, int sh, int sw,
                          fpay_conv_params *p)
{
    memset(p, 0, sizeof *p);
    p->batch = rint_in(r, 1, 2);
    p->kernel_h = kh ? kh : rint_in(r, 1, 5);
    p->kernel_w = kw ? kw : rint_in(r, 1, 5);
    p->stride_h = sh ? sh : rint_in(r, 1, 2);
    p->stride_w = sw ? sw : rint_in(r, 1, 2);
    p->dilation_h = (kh || rint_in(r, 0, 3)) ? 1 : 2;
    p->dilation_w = (kw || rint_in(r, 0, 3)) ? 1 : 2;
    p->in_h = rint_in(r, 1, 13);
    p->in_w = rint_in(r, 1, 13);
    const int eh = (p->kernel_h - 1) * p->dilation_h + 1;
    const int ew = (p->kernel_w - 1) * p->dilation_w + 1;
    p->pad_top = rint_in(r, 0, eh - 1);
    p->pad_left = rint_in(r, 0, ew - 1);
    const int pb = rint_in(r, 0, eh - 1), pr = rint_in(r, 0, ew - 1);
    const int h = p->in_h + p->pad_top + pb - eh, w = p->in_w + p->pad_left + pr - ew;
    if (h < 0 || w < 0)
        return false;
    p->out_h = h / p->stride_h + 1;
    p->out_w = w / p->stride_w + 1;
    p->depth_multiplier = 1;
    return true;
}

static void conv_case(const fpay_conv_ukernel *uk, fpay_test_rng *r, const fpay_conv_params *p0,
                      int variant)
{
    fpay_conv_params p = *p0;
    const size_t in_n = (size_t)p.batch * p.in_h * p.in_w * p.in_c;
    const int k = p.kernel_h * p.kernel_w * p.in_c;
    const size_t w_n = (size_t)p.out_c * k;
    const size_t count = (size_t)p.batch * p.out_h * p.out_w * p.out_c;
    float *x = rand_buf(r, in_n, -1, 1), *w = rand_buf(r, w_n, -1, 1);
    float *packed = aligned_alloc(64, fpay_pack_weights_size(p.out_c, k, uk->nr) * sizeof(float) + 64);
    fpay_pack_weights_f32(p.out_c, k, uk->nr, w, packed);
    epi_case e;
    epi_make(r, p.out_c, count, variant, &e);
    float *got = malloc(count * sizeof(float)), *want = malloc(count * sizeof(float));
    float *absref = malloc(count * sizeof(float));
    fpay_conv_args g = {p, x, packed, epi_kernel(&e), got};
    size_t tasks = fpay_conv_tasks(&g, uk->nr);
    uk->fn(&g, 0, tasks / 3);
    uk->fn(&g, tasks / 3, tasks);
    fpay_epilogue ep = {e.residual ? FPAY_KACT_NONE : e.act, e.alpha, e.slope};
    fpay_ref_conv2d_f32(&p, x, w, e.bias, &ep, want);
    if (e.residual)
        ref_finish(&e, p.out_c, count, want);
    float *ax = abs_copy(x, in_n), *aw = abs_copy(w, w_n);
    float *ab = e.bias ? abs_copy(e.bias, (size_t)p.out_c) : NULL;
    fpay_ref_conv2d_f32(&p, ax, aw, ab, NULL, absref);
    char what[256];
    snprintf(what, sizeof what,
             "%s n%d %dx%dx%d -> %dx%dx%d k%dx%d s%dx%d d%dx%d pad %d,%d act=%d bias=%d res=%d",
             uk->name, p.batch, p.in_h, p.in_w, p.in_c, p.out_h, p.out_w, p.out_c, p.kernel_h,
             p.kernel_w, p.stride_h, p.stride_w, p.dilation_h, p.dilation_w, p.pad_top,
             p.pad_left, e.act, !!e.bias, !!e.residual);
    compare(what, &e, p.out_c, count, got, want, absref);
    free(ax), free(aw), free(ab), free(x), free(w), free(packed), free(got), free(want),
        free(absref);
    epi_free(&e);
}

static void check_conv(fpay_isa isa)
{
    skip_if_unsupported(isa, "conv");
    for (int i = 0; i < fpay_conv_ukernel_count; i++) {
        if (fpay_conv_ukernels[i].isa != isa)
            continue;
        const fpay_conv_ukernel *uk = &fpay_conv_ukernels[i];
        fpay_test_rng r;
        fpay_test_rng_seed(&r, 2000 + (uint64_t)i);
        /* MobileFaceNet's first conv: 3x3 s2 SAME, 3 channels, odd input. */
        fpay_conv_params first = {1, 15, 15, 3, 8, 8, 64, 3, 3, 2, 2, 1, 1, 1, 1, 1};
        conv_case(uk, &r, &first, 0);
        for (int v = 0, done = 0; done < 150; v++) {
            fpay_conv_params p;
            if (!conv_geometry(&r, 0, 0, 0, 0, &p))
                continue;
            p.in_c = rint_in(&r, 1, 9);
            p.out_c = rint_in(&r, 1, 70);
            conv_case(uk, &r, &p, v);
            done++;
        }
        printf("ok %s\n", uk->name);
    }
}

static void dw_case(const fpay_dwconv_ukernel *uk, fpay_test_rng *r, const fpay_conv_params *p0,
                    int variant)
{
    fpay_conv_params p = *p0;
    const int c = p.in_c, taps = p.kernel_h * p.kernel_w;
    const size_t in_n = (size_t)p.batch * p.in_h * p.in_w * c;
    const size_t count = (size_t)p.batch * p.out_h * p.out_w * c;
    float *x = rand_buf(r, in_n, -1, 1), *w = rand_buf(r, (size_t)taps * c, -1, 1);
    float *packed = aligned_alloc(64, fpay_pack_dw_weights_size(taps, c) * sizeof(float) + 64);
    fpay_pack_dw_weights_f32(taps, c, w, packed);
    epi_case e;
    epi_make(r, c, count, variant, &e);
    float *got = malloc(count * sizeof(float)), *want = malloc(count * sizeof(float));
    float *absref = malloc(count * sizeof(float));
    fpay_dwconv_args g = {p, x, packed, epi_kernel(&e), got};
    size_t tasks = fpay_dwconv_tasks(&g);
    uk->fn(&g, 0, tasks / 2);
    uk->fn(&g, tasks / 2, tasks);
    fpay_epilogue ep = {e.residual ? FPAY_KACT_NONE : e.act, e.alpha, e.slope};
    fpay_ref_dwconv2d_f32(&p, x, w, e.bias, &ep, want);
    if (e.residual)
        ref_finish(&e, c, count, want);
    float *ax = abs_copy(x, in_n), *aw = abs_copy(w, (size_t)taps * c);
    float *ab = e.bias ? abs_copy(e.bias, (size_t)c) : NULL;
    fpay_ref_dwconv2d_f32(&p, ax, aw, ab, NULL, absref);
    char what[256];
    snprintf(what, sizeof what,
             "%s n%d %dx%dx%d -> %dx%d k%dx%d s%dx%d d%dx%d pad %d,%d act=%d bias=%d res=%d",
             uk->name, p.batch, p.in_h, p.in_w, c, p.out_h, p.out_w, p.kernel_h, p.kernel_w,
             p.stride_h, p.stride_w, p.dilation_h, p.dilation_w, p.pad_top, p.pad_left, e.act,
             !!e.bias, !!e.residual);
    compare(what, &e, c, count, got, want, absref);
    free(ax), free(aw), free(ab), free(x), free(w), free(packed), free(got), free(want),
        free(absref);
    epi_free(&e);
}

static void check_dwconv(fpay_isa isa)
{
    skip_if_unsupported(isa, "dwconv");
    for (int i = 0; i < fpay_dwconv_ukernel_count; i++) {
        if (fpay_dwconv_ukernels[i].isa != isa)
            continue;
        const fpay_dwconv_ukernel *uk = &fpay_dwconv_ukernels[i];
        fpay_test_rng r;
        fpay_test_rng_seed(&r, 3000 + (uint64_t)i);
        if (!uk->kh) { /* MobileFaceNet's global 7x7 VALID depthwise */
            fpay_conv_params gdc = {1, 7, 7, 40, 1, 1, 40, 7, 7, 1, 1, 1, 1, 0, 0, 1};
            dw_case(uk, &r, &gdc, 0);
        }
        for (int v = 0, done = 0; done < 150; v++) {
            fpay_conv_params p;
            if (!conv_geometry(&r, uk->kh, uk->kw, uk->sh, uk->sw, &p))
                continue;
            p.in_c = p.out_c = rint_in(&r, 1, 70);
            dw_case(uk, &r, &p, v);
            done++;
        }
        printf("ok %s\n", uk->name);
    }
}

static void check_maxpool(fpay_isa isa)
{
    skip_if_unsupported(isa, "maxpool");
    for (int i = 0; i < fpay_maxpool_ukernel_count; i++) {
        if (fpay_maxpool_ukernels[i].isa != isa)
            continue;
        const fpay_pool_ukernel *uk = &fpay_maxpool_ukernels[i];
        fpay_test_rng r;
        fpay_test_rng_seed(&r, 4000 + (uint64_t)i);
        for (int v = 0, done = 0; done < 150; v++) {
            fpay_conv_params c;
            if (!conv_geometry(&r, 0, 0, 0, 0, &c) || c.dilation_h != 1 || c.dilation_w != 1)
                continue;
            fpay_pool_params p = {c.batch, c.in_h, c.in_w, rint_in(&r, 1, 70), c.out_h,
                                  c.out_w, c.kernel_h, c.kernel_w, c.stride_h, c.stride_w,
                                  c.pad_top, c.pad_left};
            size_t in_n = (size_t)p.batch * p.in_h * p.in_w * p.channels;
            size_t count = (size_t)p.batch * p.out_h * p.out_w * p.channels;
            float *x = rand_buf(&r, in_n, -1, 1);
            if (v % 7 == 0)
                x[v % in_n] = NAN;
            float *got = malloc(count * sizeof(float)), *want = malloc(count * sizeof(float));
            fpay_pool_args g = {p, x, got};
            uk->fn(&g, 0, fpay_pool_tasks(&g));
            fpay_ref_max_pool2d_f32(&p, x, want);
            cr_assert_eq(memcmp(got, want, count * sizeof(float)), 0,
                         "%s: %dx%dx%d f%dx%d s%dx%d pad %d,%d differs from the reference",
                         uk->name, p.in_h, p.in_w, p.channels, p.filter_h, p.filter_w,
                         p.stride_h, p.stride_w, p.pad_top, p.pad_left);
            free(x), free(got), free(want);
            done++;
        }
        printf("ok %s\n", uk->name);
    }
}

/* One test per family and ISA, so a missing ISA shows as skipped. */
#define FPAY_FAMILY_TESTS_(fam)                                  \
    Test(simd_kernels, fam##_avx2) { check_##fam(FPAY_ISA_AVX2); } \
    Test(simd_kernels, fam##_avx512) { check_##fam(FPAY_ISA_AVX512); }
FPAY_FAMILY_TESTS_(gemm)
FPAY_FAMILY_TESTS_(conv)
FPAY_FAMILY_TESTS_(dwconv)
FPAY_FAMILY_TESTS_(maxpool)

Test(simd_kernels, isa_selection)
{
    const fpay_cpu_features *f = fpay_cpu_features_get();
    cr_assert(f->summary[0]);
    cr_assert(fpay_isa_supported(FPAY_ISA_REF));
    cr_assert(fpay_isa_supported(fpay_isa_best()));
    /* Every supported ISA has a kernel in every family (x86 today). */
    for (int isa = FPAY_ISA_AVX2; isa <= FPAY_ISA_AVX512; isa++) {
        if (!fpay_isa_supported((fpay_isa)isa))
            continue;
        cr_assert_not_null(fpay_gemm_select((fpay_isa)isa));
        cr_assert_not_null(fpay_conv_select((fpay_isa)isa));
        cr_assert_not_null(fpay_maxpool_select((fpay_isa)isa));
        const fpay_dwconv_ukernel *d = fpay_dwconv_select((fpay_isa)isa, 3, 3, 2, 2);
        cr_assert_not_null(d);
        cr_assert(strstr(d->name, "3x3s2") != NULL, "%s", d->name);
        d = fpay_dwconv_select((fpay_isa)isa, 7, 7, 1, 1);
        cr_assert(d && d->kh == 0);
    }
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
