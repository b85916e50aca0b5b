/*
 * bench_kernels.c - `facepay-bench kernels`: every SIMD kernel of the
 * tables (fpay_kernel_list.h) on MobileFaceNet's shapes, in GFLOP/s and as a
 * fraction of the ISA's single-core FMA peak.
 *
 * Peaks (docs/TOOLCHAIN facts for this Xeon at 2.6 GHz, two FMA ports):
 * AVX2 2 x 8 lanes x 2 FLOP x 2.6 GHz = 83 GFLOP/s, AVX-512 166 GFLOP/s.
 * FACEPAY_BENCH_GHZ overrides the clock when the machine differs. Each
 * number is the median of 15 timed batches (min_us / at_min: the fastest
 * batch, steadier on a shared machine), each batch at least 2 ms of
 * repeated calls (warm caches: the weights of one layer fit in L2, as they
 * do when the layer runs inside the model).
 */
#include "bench.h"

#include "fpay_simd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The calling thread's CPU time: the kernels run on this thread only, so it
 * equals wall time on an idle machine and leaves out the time other
 * processes hold the core on a shared one. */
typedef void (*call_fn)(const void *kernel, const void *args);

/* Fastest batch of the last time_call (seconds per call): on a shared,
 * noisy machine the minimum is the steadier number to compare. */
static double last_min_s;

/* Median seconds per call (the minimum goes to last_min_s). */
static double time_call(call_fn call, const void *kernel, const void *args)
{
    call(kernel, args);
    long reps = 1;
    for (;;) {
        double t0 = fpay_bench_thread_cpu_s();
        for (long i = 0; i < reps; i++)
            call(kernel, args);
        if (fpay_bench_thread_cpu_s() - t0 > 2e-3 || reps > (1L << 24))
            break;
        reps *= 2;
    }
    double t[15];
    for (int b = 0; b < 15; b++) {
        double t0 = fpay_bench_thread_cpu_s();
        for (long i = 0; i < reps; i++)
            call(kernel, args);
        t[b] = (fpay_bench_thread_cpu_s() - t0) / (double)reps;
    }
    qsort(t, 15, sizeof t[0], fpay_bench_cmp_double);
    last_min_s = t[0];
    return t[7];
}

static double peak_gflops(fpay_isa isa)
{
    const char *ghz_env = getenv("FACEPAY_BENCH_GHZ");
    double ghz = ghz_env ? atof(ghz_env) : 2.6;
    if (ghz <= 0)
        ghz = 2.6;
    int lanes = isa == FPAY_ISA_AVX512 ? 16 : isa == FPAY_ISA_AVX2 ? 8 : 4;
    return 2.0 /* ports */ * lanes * 2.0 /* FLOP per FMA */ * ghz;
}

static float *filled(size_t n)
{
    float *p = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64 + 64);
    if (!p) {
        fprintf(stderr, "facepay-bench: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++)
        p[i] = (float)((i * 2654435761u) % 2001) / 1000.0f - 1.0f;
    return p;
}

static void row(const char *name, fpay_isa isa, const char *shape, double flop, double s)
{
    double gf = flop / s / 1e9, gf_min = flop / last_min_s / 1e9;
    printf("%-32s %-34s %9.1f %10.2f %6.0f%% %9.1f %6.0f%%\n", name, shape, s * 1e6, gf,
           100.0 * gf / peak_gflops(isa), last_min_s * 1e6, 100.0 * gf_min / peak_gflops(isa));
}

static void call_gemm(const void *k, const void *a)
{
    const fpay_gemm_ukernel *uk = k;
    const fpay_gemm_args *g = a;
    uk->fn(g, 0, fpay_gemm_tasks(g, uk->mr, uk->nr));
}
static void call_conv(const void *k, const void *a)
{
    const fpay_conv_ukernel *uk = k;
    uk->fn(a, 0, fpay_conv_tasks(a, uk->nr));
}
static void call_dw(const void *k, const void *a)
{
    const fpay_dwconv_ukernel *uk = k;
    uk->fn(a, 0, fpay_dwconv_tasks(a));
}
static void call_pool(const void *k, const void *a)
{
    const fpay_pool_ukernel *uk = k;
    uk->fn(a, 0, fpay_pool_tasks(a));
}

int fpay_bench_kernels(void)
{
    printf("# facepay-bench kernels | 1 thread | peak: AVX2 %.0f, AVX-512 %.0f GFLOP/s\n",
           peak_gflops(FPAY_ISA_AVX2), peak_gflops(FPAY_ISA_AVX512));
    printf("%-32s %-34s %9s %10s %7s %9s %7s\n", "kernel", "shape (MobileFaceNet)", "us",
           "GFLOP/s", "peak", "min_us", "at_min");
    /* 1x1 convs: pixels x in -> out, with bias + PReLU as in the model. */
    static const int gemm_shapes[][3] = {{3136, 64, 128}, {784, 128, 64}, {784, 64, 128},
                                         {196, 128, 256}, {196, 256, 128}, {49, 128, 512},
                                         {49, 512, 128},  {1, 512, 192}};
    for (int i = 0; i < fpay_gemm_ukernel_count; i++) {
        const fpay_gemm_ukernel *uk = &fpay_gemm_ukernels[i];
        if (!fpay_isa_supported(uk->isa))
            continue;
        for (size_t s = 0; s < sizeof gemm_shapes / sizeof gemm_shapes[0]; s++) {
            int m = gemm_shapes[s][0], k = gemm_shapes[s][1], n = gemm_shapes[s][2];
            float *a = filled((size_t)m * k), *w = filled((size_t)n * k);
            float *c = filled((size_t)m * n), *bias = filled(fpay_pack_padded((size_t)n));
            float *slope = filled(fpay_pack_padded((size_t)n));
            float *packed = filled(fpay_pack_weights_size(n, k, uk->nr));
            fpay_pack_weights_f32(n, k, uk->nr, w, packed);
            fpay_gemm_args g = {m, n, k, a, (size_t)k, packed,
                                {bias, FPAY_KACT_PRELU, 0, slope, NULL}, c, (size_t)n};
            char shape[64];
            snprintf(shape, sizeof shape, "%dpx %d->%d", m, k, n);
            row(uk->name, uk->isa, shape, 2.0 * m * n * k, time_call(call_gemm, uk, &g));
            free(a), free(w), free(c), free(bias), free(slope), free(packed);
        }
    }
    /* Depthwise 3x3: (in size, channels, stride). */
    static const int dw_shapes[][3] = {{56, 64, 1}, {56, 128, 2}, {28, 128, 1},
                                       {28, 256, 2}, {14, 256, 1}, {7, 512, 7}};
    for (int i = 0; i < fpay_dwconv_ukernel_count; i++) {
        const fpay_dwconv_ukernel *uk = &fpay_dwconv_ukernels[i];
        if (!fpay_isa_supported(uk->isa))
            continue;
        for (size_t s = 0; s < sizeof dw_shapes / sizeof dw_shapes[0]; s++) {
            int hw = dw_shapes[s][0], ch = dw_shapes[s][1], st = dw_shapes[s][2];
            int kk = st == 7 ? 7 : 3, sd = st == 7 ? 1 : st;
            if ((uk->kh && uk->kh != kk) || (uk->sh && uk->sh != sd))
                continue;
            int pad = kk == 7 ? 0 : (st == 1 ? 1 : 0);
            int out = kk == 7 ? 1 : (hw + st - 1) / st;
            fpay_conv_params p = {1, hw, hw, ch, out, out, ch, kk, kk, sd, sd, 1, 1, pad,
                                  pad, 1};
            float *x = filled((size_t)hw * hw * ch), *y = filled((size_t)out * out * ch);
            float *w = filled(fpay_pack_dw_weights_size(kk * kk, ch));
            float *bias = filled(fpay_pack_padded((size_t)ch));
            fpay_dwconv_args g = {p, x, w, {bias, FPAY_KACT_NONE, 0, NULL, NULL}, y};
            char shape[64];
            snprintf(shape, sizeof shape, "%dx%dx%d k%d s%d", hw, hw, ch, kk, sd);
            row(uk->name, uk->isa, shape, 2.0 * out * out * ch * kk * kk,
                time_call(call_dw, uk, &g));
            free(x), free(y), free(w), free(bias);
        }
    }
    /* The first conv: 112x112x3 -> 56x56x64, 3x3 s2 SAME. */
    for (int i = 0; i < fpay_conv_ukernel_count; i++) {
        const fpay_conv_ukernel *uk = &fpay_conv_ukernels[i];
        if (!fpay_isa_supported(uk->isa))
            continue;
        fpay_conv_params p = {1, 112, 112, 3, 56, 56, 64, 3, 3, 2, 2, 1, 1, 0, 0, 1};
        float *x = filled(112 * 112 * 3), *y = filled(56 * 56 * 64), *w = filled(64 * 27);
        float *packed = filled(fpay_pack_weights_size(64, 27, uk->nr));
        fpay_pack_weights_f32(64, 27, uk->nr, w, packed);
        fpay_conv_args g = {p, x, packed, {NULL, FPAY_KACT_NONE, 0, NULL, NULL}, y};
        row(uk->name, uk->isa, "112x112x3 -> 64, 3x3 s2", 2.0 * 56 * 56 * 64 * 27,
            time_call(call_conv, uk, &g));
        free(x), free(y), free(w), free(packed);
    }
    for (int i = 0; i < fpay_maxpool_ukernel_count; i++) {
        const fpay_pool_ukernel *uk = &fpay_maxpool_ukernels[i];
        if (!fpay_isa_supported(uk->isa))
            continue;
        fpay_pool_params p = {1, 46, 46, 10, 23, 23, 2, 2, 2, 2, 0, 0}; /* pnet */
        float *x = filled(46 * 46 * 10), *y = filled(23 * 23 * 10);
        fpay_pool_args g = {p, x, y};
        row(uk->name, uk->isa, "46x46x10 2x2 s2 (pnet)", 23.0 * 23 * 10 * 4,
            time_call(call_pool, uk, &g));
        free(x), free(y);
    }
    return 0;
}
