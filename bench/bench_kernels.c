/*
 * bench_kernels.c - `facepay-bench kernels`: every SIMD kernel of the
 * tables (fpay_kernel_list.h) on MobileFaceNet's shapes, in GFLOP/s and as a
 * fraction of the ISA's single-core FMA peak.
 *
 * Peaks are measured, not taken from the data sheet: a loop of 12
 * independent FMA chains (no loads) per ISA, timed like the kernels. The
 * nominal clock overstates them: this Xeon is sold as 2.5 GHz, runs its
 * FMA loop at 2.38 GHz for both AVX2 and AVX-512 (76 and 152 GFLOP/s),
 * and a kernel cannot beat that loop. FACEPAY_BENCH_GHZ=G replaces the
 * measurement with 2 ports x lanes x 2 FLOP x G (the old fixed 2.6). Each
 * number is the median of 15 timed batches (min_us / at_min: the fastest
 * batch, steadier on a shared machine), each batch at least 2 ms of
 * repeated calls (warm caches: the weights of one layer fit in L2, as they
 * do when the layer runs inside the model).
 *
 * The image kernels (resize, warp, normalise) follow in their own table in
 * Mpixel/s, each ISA next to the reference measured in the same run.
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

#if defined(__x86_64__)
#define FMA12(r)                                                                    \
    "vfmadd231ps %%" r "0,%%" r "0,%%" r "1\n\t vfmadd231ps %%" r "0,%%" r "0,%%" r "2\n\t" \
    "vfmadd231ps %%" r "0,%%" r "0,%%" r "3\n\t vfmadd231ps %%" r "0,%%" r "0,%%" r "4\n\t" \
    "vfmadd231ps %%" r "0,%%" r "0,%%" r "5\n\t vfmadd231ps %%" r "0,%%" r "0,%%" r "6\n\t" \
    "vfmadd231ps %%" r "0,%%" r "0,%%" r "7\n\t vfmadd231ps %%" r "0,%%" r "0,%%" r "8\n\t" \
    "vfmadd231ps %%" r "0,%%" r "0,%%" r "9\n\t vfmadd231ps %%" r "0,%%" r "0,%%" r "10\n\t" \
    "vfmadd231ps %%" r "0,%%" r "0,%%" r "11\n\t vfmadd231ps %%" r "0,%%" r "0,%%" r "12\n\t"

/* n iterations of 12 independent FMAs (4-cycle latency x 2 ports needs 8
 * chains in flight; 12 leave slack). Only called after the CPU check said
 * the ISA is there. */
static void fma_loop(fpay_isa isa, long n)
{
    if (isa == FPAY_ISA_AVX512)
        __asm__ volatile("vxorps %%xmm0,%%xmm0,%%xmm0\n1:\n\t" FMA12("zmm") "dec %0\n\tjnz 1b"
                         : "+r"(n)
                         :
                         : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",
                           "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "cc");
    else
        __asm__ volatile("vxorps %%xmm0,%%xmm0,%%xmm0\n1:\n\t" FMA12("ymm") "dec %0\n\tjnz 1b"
                         : "+r"(n)
                         :
                         : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",
                           "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "cc");
}
#undef FMA12
#endif

static const char *isa_label(fpay_isa isa)
{
    return isa == FPAY_ISA_AVX512 ? "AVX-512"
           : isa == FPAY_ISA_AVX2 ? "AVX2"
           : isa == FPAY_ISA_NEON ? "NEON"
                                  : fpay_isa_name(isa);
}

static double peak_gflops(fpay_isa isa)
{
    const int lanes = isa == FPAY_ISA_AVX512 ? 16 : isa == FPAY_ISA_AVX2 ? 8 : 4;
    const char *ghz_env = getenv("FACEPAY_BENCH_GHZ");
    if (ghz_env && atof(ghz_env) > 0)
        return 2.0 /* ports */ * lanes * 2.0 /* FLOP per FMA */ * atof(ghz_env);
    static double measured[FPAY_ISA_COUNT_];
    if ((unsigned)isa < FPAY_ISA_COUNT_ && measured[isa] > 0)
        return measured[isa];
    double gf = 2.0 * lanes * 2.0 * 2.6; /* no loop for this ISA: nominal */
#if defined(__x86_64__)
    if ((isa == FPAY_ISA_AVX2 || isa == FPAY_ISA_AVX512) && fpay_isa_supported(isa)) {
        const long n = 2000000; /* 24 M FMAs: about 5 ms at 2.4 GHz */
        double best = 1e9;
        for (int r = 0; r < 7; r++) {
            const double t0 = fpay_bench_thread_cpu_s();
            fma_loop(isa, n);
            const double t = fpay_bench_thread_cpu_s() - t0;
            best = t < best ? t : best;
        }
        gf = (double)n * 12.0 * lanes * 2.0 / best / 1e9;
    }
#endif
    if ((unsigned)isa < FPAY_ISA_COUNT_)
        measured[isa] = gf;
    return gf;
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

/* ------------------------------------------------------------ images */

/* One variant of an image op: the reference (kernel NULL) or a table entry. */
typedef struct img_variant {
    const char *name;
    fpay_isa isa;
    const void *kernel;
} img_variant;

static void call_resize(const void *k, const void *a)
{
    const fpay_resize_args *g = a;
    if (k)
        ((const fpay_resize_ukernel *)k)->fn(g, 0, fpay_resize_tasks(g));
    else
        fpay_ref_u8_resize_bilinear(g->in, g->in_w, g->in_h, g->in_stride, g->out, g->out_w,
                                    g->out_h, g->out_stride, 0, g->out_h);
}
static void call_warp(const void *k, const void *a)
{
    const fpay_warp_args *g = a;
    if (k)
        ((const fpay_warp_ukernel *)k)->fn(g, 0, fpay_warp_tasks(g));
    else
        fpay_ref_u8_warp_affine(g->in, g->in_w, g->in_h, g->in_stride, g->m, g->out, g->out_w,
                                g->out_h, g->out_stride, 0, g->out_h);
}
static void call_normalize(const void *k, const void *a)
{
    const fpay_normalize_args *g = a;
    if (k)
        ((const fpay_normalize_ukernel *)k)->fn(g, 0, g->count);
    else
        fpay_ref_u8_f32_normalize(g->in, g->sub, g->div, g->out, 0, g->count);
}

/* Times every variant on one shape, interleaved: 3 rounds of ref, ISA 1,
 * ISA 2, ... so that a slow spell of a shared machine hits all of them;
 * each variant keeps its best round (of medians and of minima). Prints
 * Mpixel/s (output pixels) and the speed-up over the reference. */
static void image_rows(const char *op, const char *shape, double pixels, call_fn call,
                       const void *args, const img_variant *v, int nv)
{
    double med[8], mn[8];
    for (int i = 0; i < nv; i++)
        med[i] = mn[i] = 1e30;
    for (int round = 0; round < 3; round++)
        for (int i = 0; i < nv; i++) {
            double s = time_call(call, v[i].kernel, args);
            if (s < med[i])
                med[i] = s;
            if (last_min_s < mn[i])
                mn[i] = last_min_s;
        }
    for (int i = 0; i < nv; i++)
        printf("%-38s %-10s %-30s %9.1f %9.1f %7.2fx %9.1f %7.2fx\n", v[i].name, op, shape,
               med[i] * 1e6, pixels / med[i] / 1e6, med[0] / med[i], mn[i] * 1e6,
               mn[0] / mn[i]);
}

/* Variants of one family: the reference, then every kernel this CPU runs. */
#define IMG_VARIANTS_(table, count, refname, out, nout)                    \
    do {                                                                   \
        nout = 0;                                                          \
        out[nout++] = (img_variant){refname, FPAY_ISA_REF, NULL};          \
        for (int i_ = 0; i_ < (count) && nout < 8; i_++)                   \
            if (fpay_isa_supported((table)[i_].isa))                       \
                out[nout++] = (img_variant){(table)[i_].name, (table)[i_].isa, \
                                            &(table)[i_]};                 \
    } while (0)

static uint8_t *bytes_filled(size_t n)
{
    uint8_t *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "facepay-bench: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)((i * 2654435761u) >> 13);
    return p;
}

/* The pipeline's image operations (fpay_kernels.h), every ISA against the
 * reference in the same run: bit-exact, so only speed differs. */
static void bench_images(void)
{
    printf("\n# image kernels | 1 thread | Mpx/s = output pixels per second; x ref = "
           "speed-up over the reference in this run (3 interleaved rounds, best kept)\n");
    printf("%-38s %-10s %-30s %9s %9s %8s %9s %8s\n", "kernel", "op", "shape", "us", "Mpx/s",
           "x ref", "min_us", "x ref");
    img_variant v[8];
    int nv;
    /* Resize: a pyramid level (640x480 at 12/20), O-Net and R-Net crops of
     * a box, the liveness crop (upscaled). */
    static const int rs[][4] = {{640, 480, 384, 288}, {250, 250, 48, 48}, {90, 90, 24, 24},
                                {150, 150, 256, 256}};
    IMG_VARIANTS_(fpay_resize_ukernels, fpay_resize_ukernel_count, "fpay_ref_u8_resize_bilinear",
                  v, nv);
    for (size_t i = 0; i < sizeof rs / sizeof rs[0]; i++) {
        const int iw = rs[i][0], ih = rs[i][1], ow = rs[i][2], oh = rs[i][3];
        uint8_t *in = bytes_filled((size_t)iw * ih * 3), *out = bytes_filled((size_t)ow * oh * 3);
        void *mem = filled(fpay_resize_xtab_bytes(ow) / sizeof(float) + 1);
        fpay_resize_xtab xt;
        fpay_resize_xtab_fill(iw, ow, mem, &xt);
        fpay_resize_args g = {in, iw, ih, (size_t)iw * 3, out, ow, oh, (size_t)ow * 3, &xt};
        char shape[64];
        snprintf(shape, sizeof shape, "%dx%d -> %dx%d", iw, ih, ow, oh);
        image_rows("resize", shape, (double)ow * oh, call_resize, &g, v, nv);
        free(in), free(out), free(mem);
    }
    /* Warp: a 640x480 photo onto the 112x112 template (10 degrees, 1/0.6). */
    IMG_VARIANTS_(fpay_warp_ukernels, fpay_warp_ukernel_count, "fpay_ref_u8_warp_affine", v, nv);
    {
        uint8_t *in = bytes_filled(640 * 480 * 3), *out = bytes_filled(112 * 112 * 3);
        const double c = 1.6 * 0.9848, s = 1.6 * 0.1736;
        fpay_warp_args g = {in, 640, 480, 640 * 3, {c, -s, 250, s, c, 180}, out, 112, 112,
                            112 * 3};
        image_rows("warp", "640x480 -> 112x112 (rot 10)", 112.0 * 112, call_warp, &g, v, nv);
        free(in), free(out);
    }
    /* Normalise: MobileFaceNet's 112x112 (p - 127.5) / 128, FaceAntiSpoofing's
     * 256x256 p / 255. */
    IMG_VARIANTS_(fpay_normalize_ukernels, fpay_normalize_ukernel_count,
                  "fpay_ref_u8_f32_normalize", v, nv);
    static const int ns[][2] = {{112, 128}, {256, 255}};
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
        const size_t n = (size_t)ns[i][0] * ns[i][0] * 3;
        uint8_t *in = bytes_filled(n);
        float *out = filled(n);
        fpay_normalize_args g = {in, out, n, ns[i][1] == 128 ? 127.5f : 0.0f, (float)ns[i][1]};
        char shape[64];
        snprintf(shape, sizeof shape, "%dx%dx3 %s", ns[i][0], ns[i][0],
                 ns[i][1] == 128 ? "(p-127.5)/128" : "p/255");
        image_rows("normalize", shape, (double)n / 3, call_normalize, &g, v, nv);
        free(in), free(out);
    }
}

int fpay_bench_kernels(void)
{
    /* The peak of each SIMD ISA this CPU runs, and only those: a peak for
     * an ISA the CPU lacks would be the nominal formula, not a measurement,
     * and no row of the table uses it. */
#if defined(__x86_64__)
    const char *how = "measured FMA loop";
#else
    const char *how = "nominal 2.6 GHz, no FMA loop on this architecture";
#endif
    printf("# facepay-bench kernels | 1 thread | peak (%s):",
           getenv("FACEPAY_BENCH_GHZ") ? "FACEPAY_BENCH_GHZ" : how);
    int n_peaks = 0;
    for (int k = 0; k < FPAY_ISA_COUNT_; k++)
        if (k != FPAY_ISA_REF && fpay_isa_supported((fpay_isa)k))
            printf("%s %s %.0f", n_peaks++ ? "," : "", isa_label((fpay_isa)k),
                   peak_gflops((fpay_isa)k));
    printf(n_peaks ? " GFLOP/s\n" : " none (no SIMD ISA on this CPU)\n");
    printf("%-32s %-34s %9s %10s %7s %9s %7s\n", "kernel", "shape (MobileFaceNet)", "us",
           "GFLOP/s", "peak", "min_us", "at_min");
    /* 1x1 convs: pixels x in -> out, with bias + PReLU as in the model. */
    static const int gemm_shapes[][3] = {{3136, 64, 128}, {784, 128, 64}, {784, 64, 128},
                                         {196, 128, 256}, {196, 256, 128}, {49, 128, 512},
                                         {49, 512, 128},  {1, 512, 192}};
    /* Shape outer, kernel inner, in 3 interleaved rounds (best median and
     * fastest batch over the rounds): kernels of one ISA (a new tile next to
     * the one it replaces) are compared in the same conditions. */
    for (size_t s = 0; s < sizeof gemm_shapes / sizeof gemm_shapes[0]; s++) {
        const int m = gemm_shapes[s][0], k = gemm_shapes[s][1], n = gemm_shapes[s][2];
        double med[16], mins[16];
        for (int i = 0; i < fpay_gemm_ukernel_count && i < 16; i++)
            med[i] = mins[i] = 1e30;
        for (int round = 0; round < 3; round++)
            for (int i = 0; i < fpay_gemm_ukernel_count && i < 16; i++) {
                const fpay_gemm_ukernel *uk = &fpay_gemm_ukernels[i];
                if (!fpay_isa_supported(uk->isa))
                    continue;
                float *a = filled((size_t)m * k), *w = filled((size_t)n * k);
                float *c = filled((size_t)m * n), *bias = filled(fpay_pack_padded((size_t)n));
                float *slope = filled(fpay_pack_padded((size_t)n));
                float *packed = filled(fpay_pack_weights_size(n, k, uk->nr));
                fpay_pack_weights_f32(n, k, uk->nr, w, packed);
                fpay_gemm_args g = {m, n, k, a, (size_t)k, packed,
                                    {bias, FPAY_KACT_PRELU, 0, slope, NULL}, c, (size_t)n};
                const double t = time_call(call_gemm, uk, &g);
                med[i] = t < med[i] ? t : med[i];
                mins[i] = last_min_s < mins[i] ? last_min_s : mins[i];
                free(a), free(w), free(c), free(bias), free(slope), free(packed);
            }
        for (int i = 0; i < fpay_gemm_ukernel_count && i < 16; i++) {
            const fpay_gemm_ukernel *uk = &fpay_gemm_ukernels[i];
            if (!fpay_isa_supported(uk->isa))
                continue;
            char shape[64];
            snprintf(shape, sizeof shape, "%dpx %d->%d", m, k, n);
            last_min_s = mins[i];
            row(uk->name, uk->isa, shape, 2.0 * m * n * k, med[i]);
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
            float *slope = filled(fpay_pack_padded((size_t)ch));
            /* As in MobileFaceNet: the 3x3 layers with bias + PReLU (the
             * kernels' specialised epilogue), the 7x7 global one bias only. */
            fpay_dwconv_args g = {p, x, w,
                                  {bias, kk == 3 ? FPAY_KACT_PRELU : FPAY_KACT_NONE, 0,
                                   kk == 3 ? slope : NULL, NULL},
                                  y};
            char shape[64];
            snprintf(shape, sizeof shape, "%dx%dx%d k%d s%d", hw, hw, ch, kk, sd);
            row(uk->name, uk->isa, shape, 2.0 * out * out * ch * kk * kk,
                time_call(call_dw, uk, &g));
            free(x), free(y), free(w), free(bias), free(slope);
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
    bench_images();
    return 0;
}
