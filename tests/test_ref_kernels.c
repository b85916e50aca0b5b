/*
 * test_ref_kernels.c - the reference kernels against independent, direct
 * formulations computed in double precision.
 *
 * Tolerances. Let u = 2^-24, float's unit roundoff. A float sum of n
 * products differs from the exact sum by at most gamma_{n+1} * sum|terms|,
 * gamma_k = k*u / (1 - k*u) (Higham, Accuracy and Stability, 3.1). The
 * project's policy names 1e-5 of sum|terms|; that covers gamma for sums up to
 * ~160 terms, so the larger of the two is used (long 7x7 sums need more).
 * The oracle's own double error is ~1e-16 relative and is ignored. One-op
 * results (binary, compare, unary except exp, casts, slices, max) must match
 * exactly: double rounds +,-,*,/ of floats back to the same float.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fpay_kernels.h"
#include "test_util.h"

#define U_F32 (1.0 / 16777216.0)

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    cr_assert_not_null(p, "out of memory");
    return p;
}

static int irand(fpay_test_rng *r, int lo, int hi)
{
    return lo + (int)(fpay_test_rng_next(r) % (uint64_t)(hi - lo + 1));
}

static float *rand_floats(fpay_test_rng *r, size_t n, float lo, float hi)
{
    float *v = xcalloc(n, sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = fpay_test_rng_uniform(r, lo, hi);
    return v;
}

/* Output buffers start as NaN so an element the kernel never writes fails. */
static float *nan_floats(size_t n)
{
    float *v = xcalloc(n, sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = NAN;
    return v;
}

static double sum_tol(int n_terms, double mag)
{
    const double g = (n_terms + 1) * U_F32 / (1.0 - (n_terms + 1) * U_F32);
    return (g > 1e-5 ? g : 1e-5) * mag;
}

static double act_ref(const fpay_epilogue *ep, double x, size_t c)
{
    switch (ep->act) {
    case FPAY_KACT_NONE: return x;
    case FPAY_KACT_RELU: return fmax(x, 0.0);
    case FPAY_KACT_RELU_N1_TO_1: return fmin(fmax(x, -1.0), 1.0);
    case FPAY_KACT_RELU6: return fmin(fmax(x, 0.0), 6.0);
    case FPAY_KACT_PRELU: return x >= 0 ? x : ep->slope[c] * x;
    case FPAY_KACT_LEAKY_RELU: return x >= 0 ? x : ep->alpha * x;
    }
    return NAN;
}

/* The activations are piecewise linear and continuous, so they magnify an
 * error in their input by at most their steepest slope. */
static double act_gain(const fpay_epilogue *ep, int channels)
{
    double g = 1.0;
    if (ep->act == FPAY_KACT_LEAKY_RELU)
        g = fmax(g, fabs(ep->alpha));
    for (int c = 0; ep->act == FPAY_KACT_PRELU && c < channels; c++)
        g = fmax(g, fabs(ep->slope[c]));
    return g;
}

static void expect_close(const char *what, int case_no, const float *got,
                         const double *want, const double *tol, size_t n)
{
    for (size_t i = 0; i < n; i++)
        cr_assert(fabs((double)got[i] - want[i]) <= tol[i],
                  "%s case %d: element %zu is %.9g, want %.9g (tol %.3g)",
                  what, case_no, i, (double)got[i], want[i], tol[i]);
}

/* ------------------------------------------------------------ convolution */

typedef struct conv_case {
    int n, h, w, ci, co, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, mult;
} conv_case;

/* 0 when the padded input is smaller than the dilated kernel. */
static int make_conv(const conv_case *c, int depthwise, fpay_conv_params *p)
{
    const int ekh = (c->kh - 1) * c->dh + 1, ekw = (c->kw - 1) * c->dw + 1;
    const int nh = c->h + c->pt + c->pb - ekh, nw = c->w + c->pl + c->pr - ekw;
    if (nh < 0 || nw < 0)
        return 0;
    *p = (fpay_conv_params){
        .batch = c->n, .in_h = c->h, .in_w = c->w, .in_c = c->ci,
        .out_h = nh / c->sh + 1, .out_w = nw / c->sw + 1,
        .out_c = depthwise ? c->ci * c->mult : c->co,
        .kernel_h = c->kh, .kernel_w = c->kw, .stride_h = c->sh,
        .stride_w = c->sw, .dilation_h = c->dh, .dilation_w = c->dw,
        .pad_top = c->pt, .pad_left = c->pl,
        .depth_multiplier = depthwise ? c->mult : 1};
    return 1;
}

/* Builds the zero-padded input explicitly, then sums every tap of the
 * dilated window (padding taps included) in double. */
static void conv_oracle(const fpay_conv_params *p, int depthwise,
                        const float *in, const float *wt, const float *bias,
                        const fpay_epilogue *ep, double *want, double *tol)
{
    const int ekh = (p->kernel_h - 1) * p->dilation_h + 1;
    const int ekw = (p->kernel_w - 1) * p->dilation_w + 1;
    const int hp = (int)fmax(p->pad_top + p->in_h, (p->out_h - 1) * p->stride_h + ekh);
    const int wp = (int)fmax(p->pad_left + p->in_w, (p->out_w - 1) * p->stride_w + ekw);
    const int ci_n = p->in_c, co_n = p->out_c;
    double *pad = xcalloc((size_t)p->batch * hp * wp * ci_n, sizeof *pad);
    for (int n = 0; n < p->batch; n++)
        for (int y = 0; y < p->in_h; y++)
            for (int x = 0; x < p->in_w; x++)
                for (int c = 0; c < ci_n; c++)
                    pad[(((size_t)n * hp + y + p->pad_top) * wp + x + p->pad_left) * ci_n + c] =
                        in[(((size_t)n * p->in_h + y) * p->in_w + x) * ci_n + c];
    const double gain = act_gain(ep, co_n);
    size_t o = 0;
    for (int n = 0; n < p->batch; n++)
        for (int oy = 0; oy < p->out_h; oy++)
            for (int ox = 0; ox < p->out_w; ox++)
                for (int oc = 0; oc < co_n; oc++, o++) {
                    double s = bias ? bias[oc] : 0.0, mag = fabs(s);
                    int terms = 1;
                    for (int ky = 0; ky < p->kernel_h; ky++)
                        for (int kx = 0; kx < p->kernel_w; kx++) {
                            const int py = oy * p->stride_h + ky * p->dilation_h;
                            const int px = ox * p->stride_w + kx * p->dilation_w;
                            const double *v = pad + (((size_t)n * hp + py) * wp + px) * ci_n;
                            for (int ci = 0; ci < ci_n; ci++) {
                                if (depthwise && ci != oc / p->depth_multiplier)
                                    continue;
                                const size_t tap = (size_t)ky * p->kernel_w + kx;
                                const double t = v[ci] * (depthwise
                                    ? wt[tap * co_n + oc]
                                    : wt[((size_t)oc * p->kernel_h * p->kernel_w + tap) * ci_n + ci]);
                                s += t;
                                mag += fabs(t);
                                terms++;
                            }
                        }
                    want[o] = act_ref(ep, s, (size_t)oc);
                    /* + one rounding of the PRELU/LEAKY multiply */
                    tol[o] = sum_tol(terms, mag) * gain + 2 * U_F32 * fabs(want[o]);
                }
    free(pad);
}

static void run_conv_case(fpay_test_rng *r, const conv_case *c, int depthwise,
                          int case_no)
{
    fpay_conv_params p;
    cr_assert(make_conv(c, depthwise, &p), "case %d: bad shape", case_no);
    const size_t in_n = (size_t)p.batch * p.in_h * p.in_w * p.in_c;
    const size_t w_n = (size_t)p.kernel_h * p.kernel_w * p.out_c * (depthwise ? 1 : p.in_c);
    const size_t out_n = (size_t)p.batch * p.out_h * p.out_w * p.out_c;
    float *in = rand_floats(r, in_n, -1, 1), *wt = rand_floats(r, w_n, -1, 1);
    float *bias = case_no % 3 == 2 ? NULL : rand_floats(r, (size_t)p.out_c, -1, 1);
    float *slope = rand_floats(r, (size_t)p.out_c, -1.5f, 1.5f);
    const fpay_epilogue ep = {(fpay_kact)(case_no % 6), 0.3f, slope};
    float *got = nan_floats(out_n);
    double *want = xcalloc(out_n, sizeof *want), *tol = xcalloc(out_n, sizeof *tol);
    if (depthwise)
        fpay_ref_dwconv2d_f32(&p, in, wt, bias, &ep, got);
    else
        fpay_ref_conv2d_f32(&p, in, wt, bias, &ep, got);
    conv_oracle(&p, depthwise, in, wt, bias, &ep, want, tol);
    expect_close(depthwise ? "dwconv" : "conv", case_no, got, want, tol, out_n);
    free(in), free(wt), free(bias), free(slope), free(got), free(want), free(tol);
}

/*              n  h   w  ci co kh kw sh sw dh dw pt pl pb pr mult */
static const conv_case awkward_convs[] = {
    {1, 1, 1, 3, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2},      /* 1x1 map, SAME */
    {1, 7, 5, 13, 9, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1},     /* 1x1 kernel */
    {1, 7, 7, 3, 8, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 2},      /* stride 2, odd */
    {1, 8, 6, 5, 7, 3, 3, 2, 2, 1, 1, 0, 0, 1, 1, 1},      /* SAME, pad only bottom/right */
    {1, 9, 11, 4, 6, 5, 5, 2, 2, 1, 1, 2, 1, 1, 2, 2},     /* 5x5, asymmetric */
    {1, 10, 10, 3, 8, 7, 7, 2, 2, 1, 1, 3, 3, 3, 3, 1},    /* 7x7 stem */
    {2, 7, 9, 6, 4, 2, 2, 2, 2, 1, 1, 0, 0, 0, 0, 2},      /* 2x2 VALID, odd, batch 2 */
    {1, 9, 9, 5, 5, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2, 1},      /* dilation 2 */
    {1, 2, 3, 2, 3, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2, 2},      /* dilated, mostly padding */
    {1, 1, 1, 2, 3, 2, 2, 1, 1, 2, 2, 1, 1, 1, 1, 2},      /* every tap in padding */
    {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1},      /* scalar */
    {1, 6, 5, 67, 35, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1},    /* long sums */
    {1, 5, 7, 9, 10, 3, 5, 1, 2, 2, 1, 1, 0, 2, 2, 2},     /* mixed per axis */
};

Test(conv2d, awkward_shapes)
{
    fpay_test_rng r;
    fpay_test_rng_seed(&r, 1);
    const int n = (int)(sizeof awkward_convs / sizeof awkward_convs[0]);
    for (int i = 0; i < n; i++)
        for (int k = 0; k < 6; k++) { /* every activation on every shape */
            run_conv_case(&r, &awkward_convs[i], 0, i * 6 + k);
            run_conv_case(&r, &awkward_convs[i], 1, i * 6 + k);
        }
}

static conv_case rand_conv_case(fpay_test_rng *r)
{
    static const int ks[] = {1, 2, 3, 5, 7};
    for (;;) {
        /* one statement per draw: initializer lists are unsequenced */
        conv_case c = {0};
        c.n = irand(r, 1, 2), c.h = irand(r, 1, 12), c.w = irand(r, 1, 12);
        c.ci = irand(r, 1, 19), c.co = irand(r, 1, 19), c.mult = irand(r, 1, 2);
        c.kh = ks[irand(r, 0, 4)];
        c.kw = irand(r, 0, 3) ? c.kh : ks[irand(r, 0, 4)];
        c.sh = irand(r, 1, 2), c.sw = irand(r, 1, 2);
        c.dh = irand(r, 0, 3) ? 1 : 2, c.dw = irand(r, 0, 3) ? 1 : 2;
        const int mode = irand(r, 0, 2);
        if (mode == 1) { /* SAME as TFLite computes it */
            const int th = ((c.h + c.sh - 1) / c.sh - 1) * c.sh + (c.kh - 1) * c.dh + 1 - c.h;
            const int tw = ((c.w + c.sw - 1) / c.sw - 1) * c.sw + (c.kw - 1) * c.dw + 1 - c.w;
            c.pt = th > 0 ? th / 2 : 0, c.pb = th > 0 ? th - th / 2 : 0;
            c.pl = tw > 0 ? tw / 2 : 0, c.pr = tw > 0 ? tw - tw / 2 : 0;
        } else if (mode == 2) { /* explicit and lopsided */
            c.pt = irand(r, 0, 1), c.pl = irand(r, 0, 1);
            c.pb = irand(r, 0, 2), c.pr = irand(r, 0, 2);
        }
        fpay_conv_params p;
        if (make_conv(&c, 0, &p))
            return c;
    }
}

Test(conv2d, random_shapes)
{
    fpay_test_rng r;
    fpay_test_rng_seed(&r, 2);
    for (int i = 0; i < 200; i++) {
        const conv_case c = rand_conv_case(&r);
        run_conv_case(&r, &c, 0, i);
        run_conv_case(&r, &c, 1, i);
    }
}

Test(fully_connected, random_shapes)
{
    fpay_test_rng r;
    fpay_test_rng_seed(&r, 3);
    for (int i = 0; i < 60; i++) {
        const int rows = irand(&r, 1, 4), k_n = irand(&r, 1, 300), units = irand(&r, 1, 40);
        float *in = rand_floats(&r, (size_t)rows * k_n, -1, 1);
        float *wt = rand_floats(&r, (size_t)units * k_n, -1, 1);
        float *bias = i % 3 == 2 ? NULL : rand_floats(&r, (size_t)units, -1, 1);
        float *slope = rand_floats(&r, (size_t)units, -1.5f, 1.5f);
        const fpay_epilogue ep = {(fpay_kact)(i % 6), 0.3f, slope};
        float *got = nan_floats((size_t)rows * units);
        double *want = xcalloc((size_t)rows * units, sizeof *want);
        double *tol = xcalloc((size_t)rows * units, sizeof *tol);
        fpay_ref_fully_connected_f32(rows, k_n, units, in, wt, bias, &ep, got);
        for (int rr = 0; rr < rows; rr++)
            for (int u = 0; u < units; u++) {
                double s = bias ? bias[u] : 0.0, mag = fabs(s);
                for (int k = 0; k < k_n; k++) {
                    const double t = (double)in[rr * k_n + k] * wt[u * k_n + k];
                    s += t, mag += fabs(t);
                }
                want[rr * units + u] = act_ref(&ep, s, (size_t)u);
                tol[rr * units + u] = sum_tol(k_n + 1, mag) * act_gain(&ep, units) +
                                      2 * U_F32 * fabs(want[rr * units + u]);
            }
        expect_close("fc", i, got, want, tol, (size_t)rows * units);
        free(in), free(wt), free(bias), free(slope), free(got), free(want), free(tol);
    }
}

/* ---------------------------------------------------------------- pooling */

/* Pads explicitly: -inf cells for max, and a 0/1 mask counted for average,
 * instead of clipping windows as the kernel does. */
static void run_pool_case(fpay_test_rng *r, int n, int h, int w, int ch,
                          int fh, int fw, int sh, int sw, int pt, int pl,
                          int pb, int pr, int case_no)
{
    const fpay_pool_params p = {n, h, w, ch, (h + pt + pb - fh) / sh + 1,
                                (w + pl + pr - fw) / sw + 1, fh, fw, sh, sw, pt, pl};
    const int hp = h + pt + pb, wp = w + pl + pr;
    const size_t in_n = (size_t)n * h * w * ch, out_n = (size_t)n * p.out_h * p.out_w * ch;
    /* max: all negative half the time, so a padding 0 would win; avg:
     * positive so a wrong divisor cannot cancel out. */
    float *in = rand_floats(r, in_n, case_no % 2 ? -3.0f : 1.0f, case_no % 2 ? -1.0f : 2.0f);
    double *padv = xcalloc((size_t)n * hp * wp * ch, sizeof *padv);
    double *mask = xcalloc((size_t)n * hp * wp * ch, sizeof *mask);
    for (size_t i = 0; i < (size_t)n * hp * wp * ch; i++)
        padv[i] = -INFINITY;
    for (int b = 0; b < n; b++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                for (int c = 0; c < ch; c++) {
                    const size_t q = (((size_t)b * hp + y + pt) * wp + x + pl) * ch + c;
                    padv[q] = in[(((size_t)b * h + y) * w + x) * ch + c];
                    mask[q] = 1.0;
                }
    float *got_max = nan_floats(out_n), *got_avg = nan_floats(out_n);
    double *want_max = xcalloc(out_n, sizeof(double)), *zero = xcalloc(out_n, sizeof(double));
    double *want_avg = xcalloc(out_n, sizeof(double)), *tol = xcalloc(out_n, sizeof(double));
    size_t o = 0;
    for (int b = 0; b < n; b++)
        for (int oy = 0; oy < p.out_h; oy++)
            for (int ox = 0; ox < p.out_w; ox++)
                for (int c = 0; c < ch; c++, o++) {
                    double mx = -INFINITY, sum = 0, mag = 0, cnt = 0;
                    for (int ky = 0; ky < fh; ky++)
                        for (int kx = 0; kx < fw; kx++) {
                            const size_t q =
                                (((size_t)b * hp + oy * sh + ky) * wp + ox * sw + kx) * ch + c;
                            mx = fmax(mx, padv[q]);
                            if (mask[q])
                                sum += padv[q], mag += fabs(padv[q]), cnt++;
                        }
                    want_max[o] = mx;
                    want_avg[o] = sum / cnt;
                    /* float sum, then one divide */
                    tol[o] = sum_tol((int)cnt, mag) / cnt + 2 * U_F32 * fabs(want_avg[o]);
                }
    fpay_ref_max_pool2d_f32(&p, in, got_max);
    fpay_ref_avg_pool2d_f32(&p, in, got_avg);
    expect_close("max_pool", case_no, got_max, want_max, zero, out_n);
    expect_close("avg_pool", case_no, got_avg, want_avg, tol, out_n);
    free(in), free(padv), free(mask), free(got_max), free(got_avg);
    free(want_max), free(want_avg), free(zero), free(tol);
}

Test(pool2d, shapes)
{
    fpay_test_rng r;
    fpay_test_rng_seed(&r, 4);
    run_pool_case(&r, 1, 1, 1, 3, 1, 1, 1, 1, 0, 0, 0, 0, 0);   /* 1x1 */
    run_pool_case(&r, 1, 7, 7, 5, 3, 3, 2, 2, 1, 1, 1, 1, 1);   /* SAME, odd */
    run_pool_case(&r, 1, 8, 8, 5, 3, 3, 2, 2, 0, 0, 1, 1, 2);   /* pad only bottom/right */
    run_pool_case(&r, 2, 5, 9, 11, 2, 2, 2, 2, 0, 0, 0, 0, 3);  /* VALID, odd */
    run_pool_case(&r, 1, 4, 4, 3, 5, 5, 1, 1, 2, 2, 2, 2, 4);   /* filter > image */
    run_pool_case(&r, 1, 7, 6, 9, 7, 7, 1, 1, 3, 3, 3, 3, 5);   /* 7x7 */
    for (int i = 6; i < 200; i++) {
        const int fh = irand(&r, 1, 5), fw = irand(&r, 1, 5);
        const int h = irand(&r, 1, 10), w = irand(&r, 1, 10);
        const int pt = irand(&r, 0, fh - 1), pb = irand(&r, 0, fh - 1);
        const int pl = irand(&r, 0, fw - 1), pr = irand(&r, 0, fw - 1);
        const int n = irand(&r, 1, 2), ch = irand(&r, 1, 19);
        const int sh = irand(&r, 1, 3), sw = irand(&r, 1, 3);
        if (h + pt + pb >= fh && w + pl + pr >= fw)
            run_pool_case(&r, n, h, w, ch, fh, fw, sh, sw, pt, pl, pb, pr, i);
    }
}

/* ----------------------------------------------------- broadcast binary */

typedef struct shape {
    int rank;
    int64_t d[FPAY_KMAX_RANK];
} shape;

/* numpy rules: shapes align on the right, missing dims are 1. */
static int64_t dim_at(const shape *s, int rank, int d)
{
    const int k = d - (rank - s->rank);
    return k < 0 ? 1 : s->d[k];
}

static void make_bcast(const shape *a, const shape *b, fpay_bcast *bc)
{
    bc->rank = a->rank > b->rank ? a->rank : b->rank;
    int64_t sa = 1, sb = 1;
    for (int d = bc->rank - 1; d >= 0; d--) {
        const int64_t da = dim_at(a, bc->rank, d), db = dim_at(b, bc->rank, d);
        bc->out_dims[d] = da > db ? da : db;
        bc->a_strides[d] = da == 1 && bc->out_dims[d] > 1 ? 0 : sa;
        bc->b_strides[d] = db == 1 && bc->out_dims[d] > 1 ? 0 : sb;
        sa *= da, sb *= db;
    }
}

/* Element of operand s that output element `flat` reads, from coordinates. */
static size_t operand_index(const shape *s, const fpay_bcast *bc, size_t flat)
{
    size_t idx = 0, stride = 1;
    for (int d = bc->rank - 1; d >= 0; d--) {
        const size_t coord = flat % (size_t)bc->out_dims[d];
        flat /= (size_t)bc->out_dims[d];
        const int64_t dd = dim_at(s, bc->rank, d);
        idx += (dd == 1 ? 0 : coord) * stride;
        stride *= (size_t)dd;
    }
    return idx;
}

static size_t shape_count(const shape *s)
{
    size_t n = 1;
    for (int d = 0; d < s->rank; d++)
        n *= (size_t)s->d[d];
    return n;
}

static const shape bc_pairs[][2] = {
    {{4, {2, 3, 5, 7}}, {1, {7}}},             /* [N,H,W,C] op [C] */
    {{4, {2, 3, 5, 2}}, {4, {2, 3, 5, 1}}},    /* [N,H,W,2] op [N,H,W,1] */
    {{2, {1, 1}}, {0, {0}}},                   /* [1,1] op scalar */
    {{0, {0}}, {0, {0}}},                      /* scalar op scalar */
    {{2, {4, 6}}, {2, {4, 6}}},                /* dense */
    {{1, {7}}, {4, {2, 3, 5, 7}}},             /* a broadcast */
    {{4, {1, 4, 1, 3}}, {4, {2, 1, 5, 1}}},    /* both broadcast */
    {{4, {2, 3, 4, 5}}, {4, {1, 3, 1, 5}}},    /* middle dims */
    {{3, {3, 1, 1}}, {2, {1, 5}}},             /* size-1 out dims */
    {{6, {2, 1, 3, 1, 2, 3}}, {5, {4, 3, 5, 2, 1}}}, /* rank 6 */
};

#define N_PAIRS (sizeof bc_pairs / sizeof bc_pairs[0])

/* Pair i's bcast block and element counts; returns the output count. */
static size_t pair_setup(size_t i, fpay_bcast *bc, size_t *na, size_t *nb)
{
    make_bcast(&bc_pairs[i][0], &bc_pairs[i][1], bc);
    *na = shape_count(&bc_pairs[i][0]);
    *nb = shape_count(&bc_pairs[i][1]);
    size_t n = 1;
    for (int d = 0; d < bc->rank; d++)
        n *= (size_t)bc->out_dims[d];
    return n;
}

Test(binary, broadcast_patterns)
{
    fpay_test_rng r;
    fpay_test_rng_seed(&r, 5);
    for (size_t i = 0; i < N_PAIRS; i++)
        for (int op = FPAY_KBIN_ADD; op <= FPAY_KBIN_DIV; op++)
            for (int act = 0; act < 6; act++) {
                fpay_bcast bc;
                size_t na, nb;
                const size_t n = pair_setup(i, &bc, &na, &nb);
                const size_t last = bc.rank ? (size_t)bc.out_dims[bc.rank - 1] : 1;
                float *a = rand_floats(&r, na, -4, 4), *b = rand_floats(&r, nb, 0.5f, 2);
                for (size_t k = 0; k < nb; k += 2)
                    b[k] = -b[k]; /* both signs, never near 0 (DIV) */
                float *slope = rand_floats(&r, last, -1.5f, 1.5f), *got = nan_floats(n);
                const fpay_epilogue ep = {(fpay_kact)act, 0.3f, slope};
                fpay_ref_binary_f32((fpay_kbinary)op, &bc, a, b, &ep, got);
                for (size_t k = 0; k < n; k++) {
                    const double x = a[operand_index(&bc_pairs[i][0], &bc, k)];
                    const double y = b[operand_index(&bc_pairs[i][1], &bc, k)];
                    const double v = op == FPAY_KBIN_ADD ? x + y : op == FPAY_KBIN_SUB ? x - y
                                   : op == FPAY_KBIN_MUL ? x * y : x / y;
                    const float want = (float)act_ref(&ep, (float)v, k % last);
                    cr_assert(got[k] == want, "pair %zu op %d act %d: [%zu] %.9g want %.9g",
                              i, op, act, k, (double)got[k], (double)want);
                }
                free(a), free(b), free(slope), free(got);
            }
}

Test(compare, broadcast_patterns)
{
    fpay_test_rng r;
    fpay_test_rng_seed(&r, 6);
    for (size_t i = 0; i < N_PAIRS; i++)
        for (int op = FPAY_KCMP_GREATER_EQUAL; op <= FPAY_KCMP_LESS; op++) {
            fpay_bcast bc;
            size_t na, nb;
            const size_t n = pair_setup(i, &bc, &na, &nb);
            /* small integers, so ties (where >= and > differ) are common */
            float *a = xcalloc(na, sizeof *a), *b = xcalloc(nb, sizeof *b);
            for (size_t k = 0; k < na + nb; k++)
                *(k < na ? &a[k] : &b[k - na]) = (float)irand(&r, -2, 2);
            uint8_t *got = xcalloc(n, 1);
            memset(got, 0xAA, n);
            fpay_ref_compare_f32((fpay_kcompare)op, &bc, a, b, got);
            for (size_t k = 0; k < n; k++) {
                const float x = a[operand_index(&bc_pairs[i][0], &bc, k)];
                const float y = b[operand_index(&bc_pairs[i][1], &bc, k)];
                const int want = op == FPAY_KCMP_LESS ? !(x >= y) : !(x < y);
                cr_assert(got[k] == want, "compare pair %zu op %d: [%zu] = %d", i, op, k, got[k]);
            }
            free(a), free(b), free(got);
        }
}

Test(unary, all_ops)
{
    fpay_test_rng r;
    fpay_test_rng_seed(&r, 7);
    enum { N = 1000 };
    float *in = rand_floats(&r, N, -20, 20), got[N], slope[5] = {0.5f, -1, 0, 2, 0.1f};
    in[0] = -0.0f, in[1] = 0.0f, in[2] = 6.0f, in[3] = 100.0f, in[4] = -200.0f;
    for (int op = FPAY_KUN_ABS; op <= FPAY_KUN_EXP; op++) {
        fpay_ref_unary_f32((fpay_kunary)op, N, in, got);
        for (int i = 0; i < N; i++) {
            const double x = in[i];
            const double want = op == FPAY_KUN_ABS ? fabs(x) : op == FPAY_KUN_NEG ? -x
                              : op == FPAY_KUN_RELU ? fmax(x, 0) : op == FPAY_KUN_RELU6
                              ? fmin(fmax(x, 0), 6) : exp(x);
            /* expf: glibc's error is under 1 ulp <= 2u relative (plus the
             * smallest subnormal where it underflows); beyond FLT_MAX: inf */
            const double tol = op == FPAY_KUN_EXP ? 2 * U_F32 * want + 2e-45 : 0;
            cr_assert(fabs(got[i] - want) <= tol || (isinf(got[i]) && want > 3.5e38),
                      "unary %d: f(%.9g) = %.9g, want %.9g", op, x, (double)got[i], want);
        }
    }
    fpay_ref_leaky_relu_f32(N, 0.2f, in, got);
    for (int i = 0; i < N; i++)
        cr_assert(got[i] == (in[i] >= 0 ? in[i] : (float)(0.2f * (double)in[i])), "leaky %d", i);
    fpay_ref_prelu_f32(N, 5, slope, in, got);
    for (int i = 0; i < N; i++)
        cr_assert(got[i] == (in[i] >= 0 ? in[i] : (float)(slope[i % 5] * (double)in[i])),
                  "prelu %d", i);
    free(in);
}

/* ---------------------------------------------------------- reductions */

Test(reduce, axes_masks)
{
    static const shape shapes[] = {{4, {2, 3, 4, 5}}, {1, {9}}, {3, {1, 7, 3}}, {2, {6, 1}}};
    static const unsigned masks[] = {0x8, 0x6, 0xF, 0x1, 0x0, 0x5, 0x2};
    fpay_test_rng r;
    fpay_test_rng_seed(&r, 8);
    for (size_t s = 0; s < 4; s++)
        for (size_t m = 0; m < 7; m++) {
            const shape *sh = &shapes[s];
            const unsigned mask = masks[m] & ((1u << sh->rank) - 1);
            const size_t n = shape_count(sh);
            size_t out_n = 1;
            for (int d = 0; d < sh->rank; d++)
                out_n *= mask & (1u << d) ? 1 : (size_t)sh->d[d];
            float *in = rand_floats(&r, n, -5, 5), *mx = nan_floats(out_n), *sm = nan_floats(out_n);
            fpay_ref_reduce_f32(FPAY_KRED_MAX, sh->rank, sh->d, mask, in, mx);
            fpay_ref_reduce_f32(FPAY_KRED_SUM, sh->rank, sh->d, mask, in, sm);
            /* For each output, scan all inputs and keep those whose kept
             * coordinates spell the output's index. */
            for (size_t j = 0; j < out_n; j++) {
                double want_max = -INFINITY, want_sum = 0, mag = 0;
                int terms = 0;
                for (size_t i = 0; i < n; i++) {
                    size_t rem = i, key = 0, stride = 1;
                    for (int d = sh->rank - 1; d >= 0; d--) {
                        const size_t coord = rem % (size_t)sh->d[d];
                        rem /= (size_t)sh->d[d];
                        if (!(mask & (1u << d)))
                            key += coord * stride, stride *= (size_t)sh->d[d];
                    }
                    if (key != j)
                        continue;
                    want_max = fmax(want_max, in[i]);
                    want_sum += in[i], mag += fabs(in[i]), terms++;
                }
                cr_assert(mx[j] == want_max, "max shape %zu mask %x [%zu]", s, mask, j);
                cr_assert(fabs(sm[j] - want_sum) <= sum_tol(terms, mag),
                          "sum shape %zu mask %x [%zu]: %.9g want %.9g", s, mask, j,
                          (double)sm[j], want_sum);
            }
            free(in), free(mx), free(sm);
        }
}

Test(softmax, decomposed_bit_exact)
{
    static const int cols[] = {1, 2, 7, 64, 1000};
    fpay_test_rng r;
    fpay_test_rng_seed(&r, 9);
    for (size_t t = 0; t < 5; t++) {
        const int c_n = cols[t], rows = 3;
        float *in = rand_floats(&r, (size_t)rows * c_n, -10, 10);
        float *got = nan_floats((size_t)rows * c_n);
        /* row 2 would overflow exp without the max subtraction */
        for (int c = 0; c < c_n; c++)
            in[2 * c_n + c] += 1000.0f;
        fpay_ref_softmax_f32((size_t)rows, c_n, in, got);
        for (int rr = 0; rr < rows; rr++) {
            const float *x = in + rr * c_n, *y = got + rr * c_n;
            float m = -INFINITY, sum = 0.0f;
            double dm = -INFINITY, dsum = 0;
            for (int c = 0; c < c_n; c++)
                m = fmaxf(m, x[c]), dm = fmax(dm, x[c]);
            for (int c = 0; c < c_n; c++)
                sum += expf(x[c] - m), dsum += exp(x[c] - dm);
            for (int c = 0; c < c_n; c++) {
                const float want = expf(x[c] - m) / sum;
                cr_assert(memcmp(&y[c], &want, sizeof want) == 0,
                          "softmax cols %d row %d [%d]: %.9g want %.9g", c_n, rr, c,
                          (double)y[c], (double)want);
                /* and it is a softmax: x - max rounds (|x - max| <= 20 here,
                 * so 20u in exp's result), exp and divide once each, the
                 * sum of positive terms by gamma_n; the 1e-5 floor covers
                 * the short rows */
                const double exact = exp(x[c] - dm) / dsum;
                cr_assert(fabs(y[c] - exact) <= sum_tol(c_n + 4, exact), "softmax vs double");
            }
        }
        free(in), free(got);
    }
}

Test(l2_normalize, rows_and_epsilon)
{
    fpay_test_rng r;
    fpay_test_rng_seed(&r, 10);
    enum { C = 128 };
    float *in = rand_floats(&r, 4 * C, -3, 3), *got = nan_floats(4 * C);
    for (int c = 0; c < C; c++) {
        in[2 * C + c] = 1e-8f * (float)(c % 3); /* sum ~2e-14 < eps: norm sqrt(eps) */
        in[3 * C + c] = 0.0f;
    }
    const float eps = 1e-12f;
    fpay_ref_l2_normalize_f32(4, C, eps, in, got);
    for (int rr = 0; rr < 4; rr++) {
        double ss = 0;
        for (int c = 0; c < C; c++)
            ss += (double)in[rr * C + c] * in[rr * C + c];
        const double norm = sqrt(fmax(ss, eps));
        for (int c = 0; c < C; c++) {
            const double want = in[rr * C + c] / norm;
            /* float sum of squares (gamma_C), half of it through sqrt, plus
             * the sqrt and divide roundings */
            const double tol = sum_tol(C + 4, fabs(want));
            cr_assert(fabs(got[rr * C + c] - want) <= tol, "l2 row %d [%d]: %.9g want %.9g", rr, c,
                      (double)got[rr * C + c], want);
        }
    }
    free(in), free(got);
}

/* ------------------------------------------------------ data movement */

static void run_slice(int rank, size_t es, const int64_t *in_dims, const int64_t *begin,
                      const int64_t *strides, const int64_t *out_dims, fpay_test_rng *r)
{
    size_t in_n = 1, out_n = 1;
    for (int d = 0; d < rank; d++)
        in_n *= (size_t)in_dims[d], out_n *= (size_t)out_dims[d];
    uint8_t *in = xcalloc(in_n, es), *got = xcalloc(out_n, es);
    for (size_t i = 0; i < in_n * es; i++)
        in[i] = (uint8_t)fpay_test_rng_next(r);
    fpay_ref_strided_slice(es, rank, in_dims, begin, strides, out_dims, in, got);
    for (size_t k = 0; k < out_n; k++) {
        size_t rem = k, src = 0, stride = 1;
        for (int d = rank - 1; d >= 0; d--) {
            const int64_t i = (int64_t)(rem % (size_t)out_dims[d]);
            rem /= (size_t)out_dims[d];
            src += (size_t)(begin[d] + i * strides[d]) * stride;
            stride *= (size_t)in_dims[d];
        }
        cr_assert(memcmp(got + k * es, in + src * es, es) == 0, "slice rank %d [%zu]", rank, k);
    }
    free(in), free(got);
}

Test(data, strided_slice)
{
    fpay_test_rng r;
    fpay_test_rng_seed(&r, 11);
    run_slice(4, 4, (int64_t[]){2, 5, 6, 7}, (int64_t[]){1, 4, 0, 1},
              (int64_t[]){1, -1, 2, 3}, (int64_t[]){1, 5, 3, 2}, &r);
    run_slice(1, 1, (int64_t[]){9}, (int64_t[]){8}, (int64_t[]){-2}, (int64_t[]){5}, &r);
    run_slice(2, 8, (int64_t[]){3, 4}, (int64_t[]){0, 1}, (int64_t[]){1, 1}, (int64_t[]){3, 2}, &r);
    run_slice(3, 2, (int64_t[]){4, 3, 5}, (int64_t[]){3, 2, 4}, (int64_t[]){-3, -2, -1},
              (int64_t[]){2, 2, 5}, &r);
    run_slice(0, 4, NULL, NULL, NULL, NULL, &r); /* one element */
}

Test(data, concat)
{
    fpay_test_rng r;
    fpay_test_rng_seed(&r, 12);
    static const size_t ess[] = {1, 4, 8};
    /* [outer][axis_i * inner] pieces; axis sizes 1, 3, 2 */
    for (size_t e = 0; e < 3; e++)
        for (size_t outer = 1; outer <= 6; outer += 5)
            for (size_t inner = 1; inner <= 4; inner += 3) {
                const size_t es = ess[e], ax[3] = {1, 3, 2}, ax_total = 6;
                size_t bytes[3];
                uint8_t *ins[3], *got = xcalloc(outer * ax_total * inner, es);
                const void *srcs[3];
                for (int i = 0; i < 3; i++) {
                    bytes[i] = ax[i] * inner * es;
                    ins[i] = xcalloc(outer, bytes[i]);
                    for (size_t k = 0; k < outer * bytes[i]; k++)
                        ins[i][k] = (uint8_t)fpay_test_rng_next(&r);
                    srcs[i] = ins[i];
                }
                fpay_ref_concat(3, outer, bytes, srcs, got);
                for (size_t o = 0; o < outer; o++)
                    for (size_t a = 0; a < ax_total; a++) {
                        const int i = a < 1 ? 0 : a < 4 ? 1 : 2;
                        const size_t local = a - (i == 0 ? 0 : i == 1 ? 1 : 4);
                        const uint8_t *want = ins[i] + (o * ax[i] + local) * inner * es;
                        const uint8_t *at = got + (o * ax_total + a) * inner * es;
                        cr_assert(memcmp(at, want, inner * es) == 0,
                                  "concat es %zu outer %zu [%zu][%zu]", es, outer, o, a);
                    }
                for (int i = 0; i < 3; i++)
                    free(ins[i]);
                free(got);
            }
}

/* Casts the list IN of T_IN to T_OUT and expects exactly the list WANT. */
#define LIST(...) __VA_ARGS__
#define CAST_CHECK(from, to, T_IN, T_OUT, IN, WANT)                           \
    do {                                                                     \
        const T_IN in_[] = {LIST IN};                                        \
        const T_OUT want_[] = {LIST WANT};                                   \
        T_OUT got_[sizeof in_ / sizeof in_[0]];                              \
        cr_assert(sizeof want_ == sizeof got_, "table size");               \
        fpay_ref_cast(FPAY_KT_##from, FPAY_KT_##to, sizeof in_ / sizeof in_[0], \
                      in_, got_);                                            \
        cr_assert(memcmp(got_, want_, sizeof got_) == 0, "cast %s -> %s",     \
                  #from, #to);                                               \
    } while (0)

Test(data, cast)
{
    /* float to int truncates toward zero; beyond the range it saturates
     * (2^63 is the first float above INT64_MAX) and NaN gives 0 */
    CAST_CHECK(F32, I32, float, int32_t,
               (-1.7f, -0.5f, 0.5f, 2.9f, -2.9f, 3e9f, -3e9f, NAN, 16777216.0f),
               (-1, 0, 0, 2, -2, INT32_MAX, INT32_MIN, 0, 16777216));
    CAST_CHECK(F32, I64, float, int64_t,
               (1e19f, 9223372036854775808.0f, -9223372036854775808.0f, -1e19f, -12345.9f),
               (INT64_MAX, INT64_MAX, INT64_MIN, INT64_MIN, -12345));
    CAST_CHECK(F32, U8, float, uint8_t, (300.0f, -5.0f, 7.9f, -0.9f), (255, 0, 7, 0));
    CAST_CHECK(F32, I8, float, int8_t, (1000.0f, -1000.0f, -7.5f), (127, -128, -7));
    /* anything to bool is x != 0 (NaN too); any non-zero bool byte is 1 */
    CAST_CHECK(F32, BOOL, float, uint8_t, (0.0f, -0.0f, 0.5f, -3.0f, NAN, INFINITY, 1e-45f),
               (0, 0, 1, 1, 1, 1, 1));
    CAST_CHECK(I32, BOOL, int32_t, uint8_t, (0, 1, -7, INT32_MIN), (0, 1, 1, 1));
    CAST_CHECK(BOOL, F32, uint8_t, float, (0, 1, 2), (0, 1, 1));
    CAST_CHECK(BOOL, BOOL, uint8_t, uint8_t, (0, 1, 2), (0, 1, 1));
    /* int to float rounds to nearest even (2^24 + 1, 2^53 + 1) */
    CAST_CHECK(I32, F32, int32_t, float, (16777217, -3, INT32_MAX),
               (16777216.0f, -3.0f, 2147483648.0f));
    CAST_CHECK(I64, F32, int64_t, float, (-9007199254740993LL, 3LL),
               (-9007199254740992.0f, 3.0f));
    /* integer narrowing wraps modulo 2^bits, widening sign-extends */
    CAST_CHECK(I64, I32, int64_t, int32_t, (4294967301LL, 2147483648LL, -1LL, 7LL),
               (5, INT32_MIN, -1, 7));
    CAST_CHECK(I32, I64, int32_t, int64_t, (-5, INT32_MAX, 0), (-5, INT32_MAX, 0));
    CAST_CHECK(U8, I8, uint8_t, int8_t, (200, 127, 0, 255), (-56, 127, 0, -1));
    CAST_CHECK(I8, U8, int8_t, uint8_t, (-1, -128, 3), (255, 128, 3));
    /* same type is a plain copy, NaN payload included */
    CAST_CHECK(F32, F32, uint32_t, uint32_t, (0x7fc01234u, 0x80000000u),
               (0x7fc01234u, 0x80000000u));
    /* every u8 / i8 through f32 and i32 and back */
    for (int v = -128; v < 256; v++) {
        const fpay_ktype t = v < 0 ? FPAY_KT_I8 : FPAY_KT_U8;
        const uint8_t byte = (uint8_t)(v & 0xff);
        float f;
        int32_t i;
        uint8_t back;
        fpay_ref_cast(t, FPAY_KT_F32, 1, &byte, &f);
        fpay_ref_cast(t, FPAY_KT_I32, 1, &byte, &i);
        fpay_ref_cast(FPAY_KT_F32, t, 1, &f, &back);
        cr_assert(f == (float)v && i == v && back == byte,
                  "small int %d", v);
    }
}

/* ---------------------------------------------------------------- f16 */

Test(f16, exhaustive)
{
    static uint16_t all[65536];
    static float out[65536];
    for (uint32_t h = 0; h < 65536; h++)
        all[h] = (uint16_t)h;
    fpay_ref_dequantize_f16_f32(65536, all, out);
    for (uint32_t h = 0; h < 65536; h++) {
        const float got = fpay_ref_f16_to_f32((uint16_t)h);
        const int neg = (h >> 15) != 0, e = (h >> 10) & 0x1f, m = h & 0x3ff;
        uint32_t bits;
        memcpy(&bits, &got, sizeof bits);
        cr_assert(memcmp(&out[h], &got, sizeof got) == 0, "dequantize %#x", h);
        cr_assert(!!signbit(got) == neg, "sign of %#x", h);
        if (e == 31) {
            /* inf, or NaN whose payload lands in the top mantissa bits */
            const uint32_t want = (uint32_t)neg << 31 | 0x7f800000u | (uint32_t)m << 13;
            cr_assert(bits == want && (m ? isnan(got) : isinf(got)), "%#x -> %#x", h, bits);
        } else {
            /* (2^10 + m) * 2^(e - 25) normal, m * 2^-24 subnormal */
            const double mag = e ? ldexp(1024 + m, e - 25) : ldexp(m, -24);
            cr_assert((double)got == (neg ? -mag : mag), "%#x -> %.9g", h, (double)got);
        }
    }
}

/* The bias is added after the taps (fpay_kernels.h): with taps 1e8 and -1e8
 * and bias 1, taps-then-bias gives exactly 1, bias-first gives 0 (1 + 1e8
 * rounds to 1e8). The optimizer's exact bias fusion depends on this order. */
Test(ref_kernels, bias_is_added_after_the_taps)
{
    const float in[2] = {1e4f, 1e4f};
    const float w[2] = {1e4f, -1e4f};
    const float bias[1] = {1.0f};
    float out = -7.0f;

    fpay_conv_params p = {.batch = 1, .in_h = 1, .in_w = 1, .in_c = 2, .out_h = 1,
                          .out_w = 1, .out_c = 1, .kernel_h = 1, .kernel_w = 1,
                          .stride_h = 1, .stride_w = 1, .dilation_h = 1, .dilation_w = 1,
                          .depth_multiplier = 1};
    fpay_ref_conv2d_f32(&p, in, w, bias, NULL, &out);
    cr_assert_eq(out, 1.0f, "conv: %g", (double)out);

    out = -7.0f;
    fpay_ref_fully_connected_f32(1, 2, 1, in, w, bias, NULL, &out);
    cr_assert_eq(out, 1.0f, "fully connected: %g", (double)out);

    /* Depthwise: one channel, a 2x1 kernel over a 2x1 image (VALID). */
    fpay_conv_params d = {.batch = 1, .in_h = 2, .in_w = 1, .in_c = 1, .out_h = 1,
                          .out_w = 1, .out_c = 1, .kernel_h = 2, .kernel_w = 1,
                          .stride_h = 1, .stride_w = 1, .dilation_h = 1, .dilation_w = 1,
                          .depth_multiplier = 1};
    out = -7.0f;
    fpay_ref_dwconv2d_f32(&d, in, w, bias, NULL, &out);
    cr_assert_eq(out, 1.0f, "depthwise: %g", (double)out);
}
