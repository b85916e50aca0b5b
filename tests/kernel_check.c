/*
 * kernel_check.c - the SIMD-kernel-versus-reference checks shared by the x86
 * (Criterion) and NEON (self-checking) kernel tests; see kernel_check.h for
 * the shapes and the tolerance.
 */
#include "kernel_check.h"

#include "test_util.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Records a failure in res (the first one only). */
__attribute__((format(printf, 2, 3))) static void kc_fail(kc_result *res, const char *fmt, ...)
{
    if (!res->ok)
        return;
    res->ok = false;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->msg, sizeof res->msg, fmt, ap);
    va_end(ap);
}

static void kc_begin(kc_result *res)
{
    res->ok = true;
    res->msg[0] = '\0';
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

float *kc_aligned_floats(size_t n)
{
    /* aligned_alloc needs a size that is a multiple of the alignment. */
    size_t bytes = (n * sizeof(float) + 64 + 63) / 64 * 64;
    float *p = aligned_alloc(64, bytes);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

static float *rand_buf(fpay_test_rng *r, size_t n, float lo, float hi)
{
    float *p = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        p[i] = fpay_test_rng_uniform(r, lo, hi);
    return p;
}

static float *abs_copy(const float *p, size_t n)
{
    float *q = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        q[i] = fabsf(p[i]);
    return q;
}

float *kc_padded_copy(const float *p, int n)
{
    float *q = kc_aligned_floats(fpay_pack_padded((size_t)n));
    fpay_pack_channels_f32(n, p, q);
    return q;
}

static int rint_in(fpay_test_rng *r, int lo, int hi)
{
    return lo + (int)(fpay_test_rng_next(r) % (uint64_t)(hi - lo + 1));
}

/* ------------------------------------------------- epilogue, comparison */

/* A random epilogue over `channels`: bias or not, one of the activations,
 * residual or not. Reference-side pointers and kernel-side (padded) ones. */
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
        e->bias_p = kc_padded_copy(e->bias, channels);
    }
    if (e->act == FPAY_KACT_PRELU) {
        e->slope = rand_buf(r, (size_t)channels, -3, 3);
        e->slope_p = kc_padded_copy(e->slope, channels);
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

/* The reference's epilogue: with a residual the op runs with no activation
 * and ref_finish adds the residual with the activation (what the fused node
 * means). */
static fpay_epilogue epi_ref(const epi_case *e)
{
    fpay_epilogue ep = {e->residual ? FPAY_KACT_NONE : e->act, e->alpha, e->slope};
    return ep;
}

static void ref_finish(const epi_case *e, int channels, size_t count, float *out)
{
    if (!e->residual)
        return;
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

/* got (SIMD) against want (reference) within the tolerance of
 * kernel_check.h; absref is the reference run on |x|, |w|, |bias|. */
static void compare(kc_result *res, const char *what, const epi_case *e, int channels,
                    size_t count, const float *got, const float *want, const float *absref)
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
        if (!(err <= tol)) {
            kc_fail(res,
                    "%s: output %zu (channel %zu): got %.9g, reference %.9g, "
                    "|err| %.3g > tol %.3g",
                    what, i, i % (size_t)channels, got[i], want[i], err, tol);
            return;
        }
    }
}

/* The buffers of one case: kernel output, reference output, reference on
 * absolute values. */
typedef struct outs {
    float *got, *want, *absref;
} outs;

static outs outs_make(size_t count)
{
    outs o = {xmalloc(count * sizeof(float)), xmalloc(count * sizeof(float)),
              xmalloc(count * sizeof(float))};
    return o;
}

static void outs_free(outs *o)
{
    free(o->got);
    free(o->want);
    free(o->absref);
}

/* ---------------------------------------------------------------- gemm */

static void gemm_case(const fpay_gemm_ukernel *uk, fpay_test_rng *r, int m, int n, int k,
                      int variant, kc_result *res)
{
    float *a = rand_buf(r, (size_t)m * k, -1, 1);
    float *w = rand_buf(r, (size_t)n * k, -1, 1);
    float *packed = kc_aligned_floats(fpay_pack_weights_size(n, k, uk->nr));
    fpay_pack_weights_f32(n, k, uk->nr, w, packed);
    size_t count = (size_t)m * n;
    epi_case e;
    epi_make(r, n, count, variant, &e);
    outs o = outs_make(count);
    fpay_gemm_args g = {m, n, k, a, (size_t)k, packed, epi_kernel(&e), o.got, (size_t)n};
    size_t tasks = fpay_gemm_tasks(&g, uk->mr, uk->nr);
    uk->fn(&g, 0, tasks / 2); /* two ranges, as two threads would run them */
    uk->fn(&g, tasks / 2, tasks);

    fpay_epilogue ep = epi_ref(&e);
    fpay_ref_fully_connected_f32(m, k, n, a, w, e.bias, &ep, o.want);
    ref_finish(&e, n, count, o.want);
    float *aa = abs_copy(a, (size_t)m * k), *aw = abs_copy(w, (size_t)n * k);
    float *ab = e.bias ? abs_copy(e.bias, (size_t)n) : NULL;
    fpay_ref_fully_connected_f32(m, k, n, aa, aw, ab, NULL, o.absref);
    char what[160];
    snprintf(what, sizeof what, "%s m=%d n=%d k=%d act=%d bias=%d res=%d", uk->name, m, n, k,
             e.act, !!e.bias, !!e.residual);
    compare(res, what, &e, n, count, o.got, o.want, o.absref);
    free(aa), free(aw), free(ab), free(a), free(w), free(packed);
    outs_free(&o);
    epi_free(&e);
}

int kc_check_gemm(const fpay_gemm_ukernel *uk, int table_index, kc_result *res)
{
    kc_begin(res);
    fpay_test_rng r;
    fpay_test_rng_seed(&r, 1000 + (uint64_t)table_index);
    const int fixed[][3] = {{1, 1, 1}, {49, 128, 512}, {7, 32, 64}, {13, 33, 17},
                            {1, 192, 512}, {3136, 64, 3}, {6, 16, 1}, {8, 47, 9}};
    int cases = 0;
    for (size_t f = 0; f < sizeof fixed / sizeof fixed[0]; f++, cases++)
        gemm_case(uk, &r, fixed[f][0], fixed[f][1], fixed[f][2], (int)f * 5, res);
    /* The same call as before the split (argument evaluation order, so the
     * draws' order, is the compiler's), so the same shapes. */
    for (int v = 0; v < 120; v++, cases++)
        gemm_case(uk, &r, rint_in(&r, 1, 30), rint_in(&r, 1, 80), rint_in(&r, 1, 70), v, res);
    return cases;
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

static void geom_str(char *s, size_t n, const char *name, const fpay_conv_params *p,
                     const epi_case *e)
{
    snprintf(s, n,
             "%s n%d %dx%dx%d -> %dx%dx%d k%dx%d s%dx%d d%dx%d pad %d,%d act=%d bias=%d res=%d",
             name, p->batch, p->in_h, p->in_w, p->in_c, p->out_h, p->out_w, p->out_c,
             p->kernel_h, p->kernel_w, p->stride_h, p->stride_w, p->dilation_h, p->dilation_w,
             p->pad_top, p->pad_left, e->act, !!e->bias, !!e->residual);
}

static void conv_case(const fpay_conv_ukernel *uk, fpay_test_rng *r, const fpay_conv_params *p0,
                      int variant, kc_result *res)
{
    fpay_conv_params p = *p0;
    const size_t in_n = (size_t)p.batch * p.in_h * p.in_w * p.in_c;
    const int k = p.kernel_h * p.kernel_w * p.in_c;
    const size_t w_n = (size_t)p.out_c * k;
    const size_t count = (size_t)p.batch * p.out_h * p.out_w * p.out_c;
    float *x = rand_buf(r, in_n, -1, 1), *w = rand_buf(r, w_n, -1, 1);
    float *packed = kc_aligned_floats(fpay_pack_weights_size(p.out_c, k, uk->nr));
    fpay_pack_weights_f32(p.out_c, k, uk->nr, w, packed);
    epi_case e;
    epi_make(r, p.out_c, count, variant, &e);
    outs o = outs_make(count);
    fpay_conv_args g = {p, x, packed, epi_kernel(&e), o.got};
    size_t tasks = fpay_conv_tasks(&g, uk->nr);
    uk->fn(&g, 0, tasks / 3);
    uk->fn(&g, tasks / 3, tasks);
    fpay_epilogue ep = epi_ref(&e);
    fpay_ref_conv2d_f32(&p, x, w, e.bias, &ep, o.want);
    ref_finish(&e, p.out_c, count, o.want);
    float *ax = abs_copy(x, in_n), *aw = abs_copy(w, w_n);
    float *ab = e.bias ? abs_copy(e.bias, (size_t)p.out_c) : NULL;
    fpay_ref_conv2d_f32(&p, ax, aw, ab, NULL, o.absref);
    char what[256];
    geom_str(what, sizeof what, uk->name, &p, &e);
    compare(res, what, &e, p.out_c, count, o.got, o.want, o.absref);
    free(ax), free(aw), free(ab), free(x), free(w), free(packed);
    outs_free(&o);
    epi_free(&e);
}

int kc_check_conv(const fpay_conv_ukernel *uk, int table_index, kc_result *res)
{
    kc_begin(res);
    fpay_test_rng r;
    fpay_test_rng_seed(&r, 2000 + (uint64_t)table_index);
    /* MobileFaceNet's first conv: 3x3 s2 SAME, 3 channels, odd input. */
    fpay_conv_params first = {1, 15, 15, 3, 8, 8, 64, 3, 3, 2, 2, 1, 1, 1, 1, 1};
    conv_case(uk, &r, &first, 0, res);
    int cases = 1;
    for (int v = 0, done = 0; done < 150; v++) {
        fpay_conv_params p;
        if (!conv_geometry(&r, 0, 0, 0, 0, &p))
            continue;
        p.in_c = rint_in(&r, 1, 9);
        p.out_c = rint_in(&r, 1, 70);
        conv_case(uk, &r, &p, v, res);
        done++, cases++;
    }
    return cases;
}

static void dw_case(const fpay_dwconv_ukernel *uk, fpay_test_rng *r, const fpay_conv_params *p0,
                    int variant, kc_result *res)
{
    fpay_conv_params p = *p0;
    const int c = p.in_c, taps = p.kernel_h * p.kernel_w;
    const size_t in_n = (size_t)p.batch * p.in_h * p.in_w * c;
    const size_t count = (size_t)p.batch * p.out_h * p.out_w * c;
    float *x = rand_buf(r, in_n, -1, 1), *w = rand_buf(r, (size_t)taps * c, -1, 1);
    float *packed = kc_aligned_floats(fpay_pack_dw_weights_size(taps, c));
    fpay_pack_dw_weights_f32(taps, c, w, packed);
    epi_case e;
    epi_make(r, c, count, variant, &e);
    outs o = outs_make(count);
    fpay_dwconv_args g = {p, x, packed, epi_kernel(&e), o.got};
    size_t tasks = fpay_dwconv_tasks(&g);
    uk->fn(&g, 0, tasks / 2);
    uk->fn(&g, tasks / 2, tasks);
    fpay_epilogue ep = epi_ref(&e);
    fpay_ref_dwconv2d_f32(&p, x, w, e.bias, &ep, o.want);
    ref_finish(&e, c, count, o.want);
    float *ax = abs_copy(x, in_n), *aw = abs_copy(w, (size_t)taps * c);
    float *ab = e.bias ? abs_copy(e.bias, (size_t)c) : NULL;
    fpay_ref_dwconv2d_f32(&p, ax, aw, ab, NULL, o.absref);
    char what[256];
    geom_str(what, sizeof what, uk->name, &p, &e);
    compare(res, what, &e, c, count, o.got, o.want, o.absref);
    free(ax), free(aw), free(ab), free(x), free(w), free(packed);
    outs_free(&o);
    epi_free(&e);
}

int kc_check_dwconv(const fpay_dwconv_ukernel *uk, int table_index, kc_result *res)
{
    kc_begin(res);
    fpay_test_rng r;
    fpay_test_rng_seed(&r, 3000 + (uint64_t)table_index);
    int cases = 0;
    if (!uk->kh) { /* MobileFaceNet's global 7x7 VALID depthwise */
        fpay_conv_params gdc = {1, 7, 7, 40, 1, 1, 40, 7, 7, 1, 1, 1, 1, 0, 0, 1};
        dw_case(uk, &r, &gdc, 0, res);
        cases++;
    }
    for (int v = 0, done = 0; done < 150; v++) {
        fpay_conv_params p;
        if (!conv_geometry(&r, uk->kh, uk->kw, uk->sh, uk->sw, &p))
            continue;
        p.in_c = p.out_c = rint_in(&r, 1, 70);
        dw_case(uk, &r, &p, v, res);
        done++, cases++;
    }
    return cases;
}

/* ------------------------------------------------------------ max pool */

int kc_check_maxpool(const fpay_pool_ukernel *uk, int table_index, bool signed_zeros,
                     kc_result *res)
{
    kc_begin(res);
    fpay_test_rng r;
    fpay_test_rng_seed(&r, 4000 + (uint64_t)table_index);
    int cases = 0;
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
            x[(size_t)v % in_n] = NAN;
        if (signed_zeros && v % 11 == 0) /* the reference keeps the first */
            for (size_t i = 0; i < in_n; i += 3)
                x[i] = (i / 3) % 2 ? 0.0f : -0.0f;
        float *got = xmalloc(count * sizeof(float)), *want = xmalloc(count * sizeof(float));
        fpay_pool_args g = {p, x, got};
        uk->fn(&g, 0, fpay_pool_tasks(&g));
        fpay_ref_max_pool2d_f32(&p, x, want);
        if (memcmp(got, want, count * sizeof(float)) != 0)
            kc_fail(res, "%s: %dx%dx%d f%dx%d s%dx%d pad %d,%d differs from the reference",
                    uk->name, p.in_h, p.in_w, p.channels, p.filter_h, p.filter_w, p.stride_h,
                    p.stride_w, p.pad_top, p.pad_left);
        free(x), free(got), free(want);
        done++, cases++;
    }
    return cases;
}

/* -------------------------------------------------------------- images */

/* Random bytes: uniform, only 0 / 255, or all 255 (the clamp). */
static uint8_t *rand_bytes(fpay_test_rng *r, size_t n, int kind)
{
    uint8_t *p = xmalloc(n);
    for (size_t i = 0; i < n; i++) {
        uint64_t b = fpay_test_rng_next(r);
        p[i] = kind == 0 ? (uint8_t)(b >> 24) : kind == 1 ? ((b >> 30) & 1 ? 255 : 0) : 255;
    }
    return p;
}

/* Bytes of an image of h rows `stride` apart: the last row ends the buffer,
 * so a read past it is a read past the allocation. */
static size_t img_bytes(int w, int h, size_t stride)
{
    return (size_t)(h - 1) * stride + (size_t)w * 3;
}

static void resize_case(const fpay_resize_ukernel *uk, fpay_test_rng *r, int iw, int ih, int ow,
                        int oh, int variant, kc_result *res)
{
    const size_t is = (size_t)iw * 3 + (size_t)rint_in(r, 0, 5);
    const size_t os = (size_t)ow * 3 + (size_t)rint_in(r, 0, 5);
    uint8_t *in = rand_bytes(r, img_bytes(iw, ih, is), variant % 3);
    const size_t on = (size_t)oh * os;
    uint8_t *got = xmalloc(on), *want = xmalloc(on);
    memset(got, 0xA5, on); /* stride padding must stay untouched */
    memset(want, 0xA5, on);
    void *mem = kc_aligned_floats(fpay_resize_xtab_bytes(ow) / sizeof(float) + 1);
    fpay_resize_xtab xt;
    fpay_resize_xtab_fill(iw, ow, mem, &xt);
    fpay_resize_args g = {in, iw, ih, is, got, ow, oh, os, &xt};
    const size_t tasks = fpay_resize_tasks(&g);
    uk->fn(&g, 0, tasks / 2);
    uk->fn(&g, tasks / 2, tasks);
    fpay_ref_u8_resize_bilinear(in, iw, ih, is, want, ow, oh, os, 0, oh);
    for (size_t i = 0; i < on; i++)
        if (got[i] != want[i]) {
            kc_fail(res, "%s: %dx%d -> %dx%d (strides %zu, %zu): byte %zu (row %zu) is %u, "
                    "reference %u", uk->name, iw, ih, ow, oh, is, os, i, i / os, got[i], want[i]);
            break;
        }
    free(in), free(got), free(want), free(mem);
}

int kc_check_resize(const fpay_resize_ukernel *uk, int table_index, kc_result *res)
{
    kc_begin(res);
    fpay_test_rng r;
    fpay_test_rng_seed(&r, 5000 + (uint64_t)table_index);
    const int fixed[][4] = {{1, 1, 1, 1},     {1, 1, 5, 7},    {7, 1, 3, 9},
                            {2, 2, 1, 1},     {640, 480, 227, 170}, {200, 180, 48, 48},
                            {30, 17, 24, 24}, {97, 131, 256, 256}};
    int cases = 0;
    for (size_t f = 0; f < sizeof fixed / sizeof fixed[0]; f++, cases++)
        resize_case(uk, &r, fixed[f][0], fixed[f][1], fixed[f][2], fixed[f][3], (int)f, res);
    for (int v = 0; v < 200; v++, cases++) {
        const int iw = rint_in(&r, 1, 40), ih = rint_in(&r, 1, 40);
        const int ow = rint_in(&r, 1, 60), oh = rint_in(&r, 1, 60);
        resize_case(uk, &r, iw, ih, ow, oh, v, res);
    }
    return cases;
}

static void warp_case(const fpay_warp_ukernel *uk, fpay_test_rng *r, int iw, int ih, int ow,
                      int oh, const double m[6], int variant, kc_result *res)
{
    const size_t is = (size_t)iw * 3 + (size_t)rint_in(r, 0, 5);
    const size_t os = (size_t)ow * 3 + (size_t)rint_in(r, 0, 5);
    uint8_t *in = rand_bytes(r, img_bytes(iw, ih, is), variant % 3);
    const size_t on = (size_t)oh * os;
    uint8_t *got = xmalloc(on), *want = xmalloc(on);
    memset(got, 0xA5, on);
    memset(want, 0xA5, on);
    fpay_warp_args g = {in, iw, ih, is, {m[0], m[1], m[2], m[3], m[4], m[5]}, got, ow, oh, os};
    const size_t tasks = fpay_warp_tasks(&g);
    uk->fn(&g, 0, tasks / 3);
    uk->fn(&g, tasks / 3, tasks);
    fpay_ref_u8_warp_affine(in, iw, ih, is, m, want, ow, oh, os, 0, oh);
    for (size_t i = 0; i < on; i++)
        if (got[i] != want[i]) {
            kc_fail(res, "%s: %dx%d -> %dx%d m=[%g %g %g; %g %g %g]: byte %zu (row %zu) is %u, "
                    "reference %u", uk->name, iw, ih, ow, oh, m[0], m[1], m[2], m[3], m[4], m[5],
                    i, i / os, got[i], want[i]);
            break;
        }
    free(in), free(got), free(want);
}

int kc_check_warp(const fpay_warp_ukernel *uk, int table_index, kc_result *res)
{
    kc_begin(res);
    fpay_test_rng r;
    fpay_test_rng_seed(&r, 6000 + (uint64_t)table_index);
    const double c10 = cos(0.17), s10 = sin(0.17);
    const struct {
        int iw, ih, ow, oh;
        double m[6];
    } fixed[] = {
        {9, 7, 9, 7, {1, 0, 0, 0, 1, 0}},                   /* identity: zero weights */
        {9, 7, 11, 5, {1, 0, -3, 0, 1, 2}},                 /* integer shift, off the edges */
        {9, 7, 9, 7, {1, 0, 0.5, 0, 1, -0.5}},              /* half-pixel shift */
        {13, 11, 13, 11, {-1, 0, 12, 0, 1, 0}},             /* reflection */
        {10, 10, 10, 10, {0, -1, 9, 1, 0, 0}},              /* 90 degrees */
        {1, 1, 5, 5, {0.3, 0.1, -1, -0.1, 0.3, -1}},        /* 1x1 source */
        {40, 30, 1, 1, {1, 0, 20.25, 0, 1, 14.75}},         /* 1x1 output */
        {8, 8, 9, 9, {NAN, 0, 0, 0, 1, 0}},                 /* NaN: black */
        {8, 8, 9, 9, {1e300, 0, 0, 0, 1, 1e300}},           /* huge: black */
        {250, 250, 112, 112, {1.7 * c10, -1.7 * s10, 60, 1.7 * s10, 1.7 * c10, 40}}, /* align */
    };
    int cases = 0;
    for (size_t f = 0; f < sizeof fixed / sizeof fixed[0]; f++, cases++)
        warp_case(uk, &r, fixed[f].iw, fixed[f].ih, fixed[f].ow, fixed[f].oh, fixed[f].m, (int)f,
                  res);
    for (int v = 0; v < 200; v++, cases++) {
        const int iw = rint_in(&r, 1, 50), ih = rint_in(&r, 1, 50);
        const int ow = rint_in(&r, 1, 40), oh = rint_in(&r, 1, 40);
        const double ang = fpay_test_rng_uniform(&r, 0, 6.2831853f);
        const double sc = exp(fpay_test_rng_uniform(&r, -1.3863f, 1.3863f)); /* 1/4..4 */
        const double flip = v % 5 == 0 ? -1.0 : 1.0;
        double m[6] = {sc * cos(ang) * flip, -sc * sin(ang), 0, sc * sin(ang) * flip,
                       sc * cos(ang), 0};
        /* The output centre lands near the source centre, off by up to a
         * third of the source: some maps stay inside, some leave it. */
        const double cx = iw / 2.0 + fpay_test_rng_uniform(&r, -1, 1) * iw / 3.0;
        const double cy = ih / 2.0 + fpay_test_rng_uniform(&r, -1, 1) * ih / 3.0;
        m[2] = cx - (m[0] * ow / 2.0 + m[1] * oh / 2.0);
        m[5] = cy - (m[3] * ow / 2.0 + m[4] * oh / 2.0);
        if (v % 7 == 0) { /* integer translation: many zero weights */
            m[2] = floor(m[2]);
            m[5] = floor(m[5]);
        }
        warp_case(uk, &r, iw, ih, ow, oh, m, v, res);
    }
    return cases;
}

int kc_check_normalize(const fpay_normalize_ukernel *uk, int table_index, kc_result *res)
{
    kc_begin(res);
    fpay_test_rng r;
    fpay_test_rng_seed(&r, 7000 + (uint64_t)table_index);
    const float params[][2] = {{127.5f, 128.0f}, {0.0f, 255.0f}, {0.5f, 3.0f},
                               {-1.0f, 0.1f},    {10.0f, 1.0f},  {0.0f, 1.0f / 1024.0f},
                               {3.25f, 0.75f}};
    const int np = (int)(sizeof params / sizeof params[0]);
    int cases = 0;
    for (int v = 0; v < 300; v++, cases++) {
        const size_t count = (size_t)(v < 20 ? v : rint_in(&r, 0, 300));
        const size_t skew = (size_t)rint_in(&r, 0, 15); /* unaligned starts */
        uint8_t *buf = rand_bytes(&r, count + skew, v % 2);
        const uint8_t *in = buf + skew;
        float *got = xmalloc((count + 1) * sizeof(float)), *want = xmalloc((count + 1) * sizeof(float));
        const float sub = params[v % np][0], div = params[v % np][1];
        fpay_normalize_args g = {in, got, count, sub, div};
        const size_t a = count / 3, b = 2 * count / 3;
        uk->fn(&g, 0, a);
        uk->fn(&g, a, b);
        uk->fn(&g, b, count);
        fpay_ref_u8_f32_normalize(in, sub, div, want, 0, count);
        if (count && memcmp(got, want, count * sizeof(float)) != 0)
            for (size_t i = 0; i < count; i++)
                if (memcmp(&got[i], &want[i], sizeof(float)) != 0) {
                    kc_fail(res, "%s: count %zu, (p - %g) / %g: element %zu (p = %u) is %.9g, "
                            "reference %.9g", uk->name, count, (double)sub, (double)div, i,
                            in[i], (double)got[i], (double)want[i]);
                    break;
                }
        free(buf), free(got), free(want);
    }
    return cases;
}
