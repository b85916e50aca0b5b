/*
 * fpay_simd.h - the optimized kernels: argument blocks, weight packing and
 * the per-ISA dispatch table.
 *
 * Every family has one X-macro list (fpay_kernel_list.h) that generates the
 * prototypes, the dispatch table, tests/test_simd_kernels.c and the
 * `facepay-bench kernels` rows. Kernels are named op, dtype, tile, ISA as
 * XNNPACK does: fpay_f32_gemm_7x32__avx512 computes 7 rows x 32 columns per
 * microkernel call with AVX-512.
 *
 * Work split: every kernel takes a range [begin, end) of independent tasks
 * (fpay_*_tasks gives the count); the CPU backend hands ranges to threads.
 * The value of an output never depends on which task or thread computed it.
 *
 * Numerics (the contract with the reference kernels, fpay_kernels.h): each
 * output accumulates its taps from 0 in the reference's tap order (ky, kx,
 * ci), with one fused multiply-add per tap (one rounding instead of two),
 * THEN adds the bias, THEN the residual, THEN applies the activation, which
 * is bit-exact. So the only difference from the reference is FMA's skipped
 * rounding of each product: |simd - ref| <= 2 * K * 2^-24 * sum_k |x_k w_k|
 * (first-order bound for two K-term recursive sums), which the tests check
 * as 1e-5 * sum|terms| + 1e-6 (tests/test_simd_kernels.c says why).
 */
#ifndef FPAY_SIMD_H
#define FPAY_SIMD_H

#include "fpay_cpu.h"
#include "fpay_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Channel padding of every packed array: the widest vector tile (32 floats)
 * so one packing serves every ISA's kernel whose NR divides it. */
#define FPAY_PACK_ALIGN 32

/* Epilogue of the optimized kernels. bias and slope are padded to the
 * kernel's channel padding (the kernels load whole vectors); residual has
 * the output's layout and is added after the bias, before the activation. */
typedef struct fpay_kepilogue {
    const float *bias;      /* NULL: none */
    fpay_kact act;
    float alpha;            /* LEAKY_RELU */
    const float *slope;     /* PRELU */
    const float *residual;  /* NULL: none; row stride = output's */
} fpay_kepilogue;

/* C[m][n] = epilogue(sum_k A[m][k] * W[n][k]): 1x1 conv (m = pixels) and
 * fully connected (m = rows). packed_w from fpay_pack_weights_f32. */
typedef struct fpay_gemm_args {
    int m, n, k;
    const float *a;
    size_t lda;
    const float *packed_w;
    fpay_kepilogue ep;
    float *c;
    size_t ldc;
} fpay_gemm_args;

/* Any full convolution (kernel, stride, dilation, padding) as direct
 * convolution over packed weights: no im2col buffer. */
typedef struct fpay_conv_args {
    fpay_conv_params p;
    const float *in;
    const float *packed_w;
    fpay_kepilogue ep;
    float *out;
} fpay_conv_args;

/* Depthwise convolution with depth multiplier 1; weights from
 * fpay_pack_dw_weights_f32. */
typedef struct fpay_dwconv_args {
    fpay_conv_params p;
    const float *in;
    const float *packed_w;
    fpay_kepilogue ep;
    float *out;
} fpay_dwconv_args;

typedef struct fpay_pool_args {
    fpay_pool_params p;
    const float *in;
    float *out;
} fpay_pool_args;

typedef void (*fpay_gemm_fn)(const fpay_gemm_args *a, size_t begin, size_t end);
typedef void (*fpay_conv_fn)(const fpay_conv_args *a, size_t begin, size_t end);
typedef void (*fpay_dwconv_fn)(const fpay_dwconv_args *a, size_t begin, size_t end);
typedef void (*fpay_pool_fn)(const fpay_pool_args *a, size_t begin, size_t end);

/* One entry of a family's table. */
typedef struct fpay_gemm_ukernel {
    const char *name; fpay_isa isa; fpay_gemm_fn fn; int mr, nr;
} fpay_gemm_ukernel;
typedef struct fpay_conv_ukernel {
    const char *name; fpay_isa isa; fpay_conv_fn fn; int mr, nr;
} fpay_conv_ukernel;
/* kh/kw/sh/sw = 0: any. */
typedef struct fpay_dwconv_ukernel {
    const char *name; fpay_isa isa; fpay_dwconv_fn fn; int kh, kw, sh, sw;
} fpay_dwconv_ukernel;
typedef struct fpay_pool_ukernel {
    const char *name; fpay_isa isa; fpay_pool_fn fn;
} fpay_pool_ukernel;

/* Every kernel built in, for tests and benchmarks. */
extern const fpay_gemm_ukernel fpay_gemm_ukernels[];
extern const int fpay_gemm_ukernel_count;
extern const fpay_conv_ukernel fpay_conv_ukernels[];
extern const int fpay_conv_ukernel_count;
extern const fpay_dwconv_ukernel fpay_dwconv_ukernels[];
extern const int fpay_dwconv_ukernel_count;
extern const fpay_pool_ukernel fpay_maxpool_ukernels[];
extern const int fpay_maxpool_ukernel_count;

/* The kernel to use for `isa`, or NULL (then the reference kernel runs). */
/* GEMM: the tile for n output columns: the first (widest) entry of the ISA
 * whose nr divides n, else the one that pads n the least (a 64-wide tile
 * on n = 10 would compute 54 columns of zeros). n <= 0: the widest. */
const fpay_gemm_ukernel *fpay_gemm_select(fpay_isa isa, int n);
const fpay_conv_ukernel *fpay_conv_select(fpay_isa isa);
/* The most specific depthwise kernel for this shape (3x3 s1, 3x3 s2, any). */
const fpay_dwconv_ukernel *fpay_dwconv_select(fpay_isa isa, int kh, int kw, int sh,
                                              int sw);
const fpay_pool_ukernel *fpay_maxpool_select(fpay_isa isa);

/* Task counts (ranges passed to the kernels split these). */
size_t fpay_gemm_tasks(const fpay_gemm_args *a, int mr, int nr);
size_t fpay_conv_tasks(const fpay_conv_args *a, int nr);
size_t fpay_dwconv_tasks(const fpay_dwconv_args *a);
size_t fpay_pool_tasks(const fpay_pool_args *a);

/* Rounds n up to FPAY_PACK_ALIGN. */
size_t fpay_pack_padded(size_t n);
/* Packs [n][k] row-major weights (OHWI conv weights with k = kh*kw*ci, or
 * fully connected [units][in]) into ceil(n/nr) panels of [k][nr], zero
 * padded: floats needed = fpay_pack_weights_size(n, k, nr). */
size_t fpay_pack_weights_size(int n, int k, int nr);
void fpay_pack_weights_f32(int n, int k, int nr, const float *w, float *packed);
/* Depthwise [1,KH,KW,C] weights into [KH*KW][padded C], zero padded. */
size_t fpay_pack_dw_weights_size(int taps, int channels);
void fpay_pack_dw_weights_f32(int taps, int channels, const float *w, float *packed);
/* A per-channel vector (bias, slope) copied and zero padded to
 * fpay_pack_padded(n); src NULL gives NULL-free zeros. */
void fpay_pack_channels_f32(int n, const float *src, float *dst);

/* ------------------------------------------------------------- images
 * The pipeline's image operations (fpay_kernels.h has the reference and its
 * exact formulas). Every SIMD version is BIT-EXACT with the reference: the
 * same IEEE operations in the same order, in double for resize and warp
 * (no FMA; -ffp-contract=off on these files), in float for normalise (a
 * true division, or a multiplication by 1/div when div is a power of two,
 * which gives the same bits: both round the same exact quotient once). */

/* Horizontal taps of a resize, per output element e = x * 3 + ch (3 * out_w
 * entries, padded with harmless zeros to a multiple of 16): byte offsets in
 * a source row and weights (1 - fx, fx). Filled once per resize by
 * fpay_resize_xtab_fill in memory of fpay_resize_xtab_bytes(out_w) bytes
 * (64-byte aligned is best; 8-byte aligned is required). */
typedef struct fpay_resize_xtab {
    const int32_t *off0, *off1;
    const double *w0, *w1;
} fpay_resize_xtab;
size_t fpay_resize_xtab_bytes(int out_w);
void fpay_resize_xtab_fill(int in_w, int out_w, void *mem, fpay_resize_xtab *xt);

typedef struct fpay_resize_args {
    const uint8_t *in;
    int in_w, in_h;
    size_t in_stride;
    uint8_t *out;
    int out_w, out_h;
    size_t out_stride;
    const fpay_resize_xtab *xt; /* for in_w -> out_w */
} fpay_resize_args;

typedef struct fpay_warp_args {
    const uint8_t *in;
    int in_w, in_h;
    size_t in_stride;
    double m[6]; /* output (u, v) samples x = (m0 u + m1 v) + m2, y = (m3 u + m4 v) + m5 */
    uint8_t *out;
    int out_w, out_h;
    size_t out_stride;
} fpay_warp_args;

/* out[i] = ((float)in[i] - sub) / div over the task range (tasks = elements). */
typedef struct fpay_normalize_args {
    const uint8_t *in;
    float *out;
    size_t count;
    float sub, div;
} fpay_normalize_args;

typedef void (*fpay_resize_fn)(const fpay_resize_args *a, size_t begin, size_t end);
typedef void (*fpay_warp_fn)(const fpay_warp_args *a, size_t begin, size_t end);
typedef void (*fpay_normalize_fn)(const fpay_normalize_args *a, size_t begin, size_t end);

/* tile: output elements (resize), output pixels (warp) or elements
 * (normalise) per vector step. */
typedef struct fpay_resize_ukernel {
    const char *name; fpay_isa isa; fpay_resize_fn fn; int tile;
} fpay_resize_ukernel;
typedef struct fpay_warp_ukernel {
    const char *name; fpay_isa isa; fpay_warp_fn fn; int tile;
} fpay_warp_ukernel;
typedef struct fpay_normalize_ukernel {
    const char *name; fpay_isa isa; fpay_normalize_fn fn; int tile;
} fpay_normalize_ukernel;

extern const fpay_resize_ukernel fpay_resize_ukernels[];
extern const int fpay_resize_ukernel_count;
extern const fpay_warp_ukernel fpay_warp_ukernels[];
extern const int fpay_warp_ukernel_count;
extern const fpay_normalize_ukernel fpay_normalize_ukernels[];
extern const int fpay_normalize_ukernel_count;

const fpay_resize_ukernel *fpay_resize_select(fpay_isa isa);
const fpay_warp_ukernel *fpay_warp_select(fpay_isa isa);
const fpay_normalize_ukernel *fpay_normalize_select(fpay_isa isa);

/* Tasks: output rows (resize, warp), elements (normalise). */
size_t fpay_resize_tasks(const fpay_resize_args *a);
size_t fpay_warp_tasks(const fpay_warp_args *a);
size_t fpay_normalize_tasks(const fpay_normalize_args *a);

/* Whole-image drivers for the pipeline (core/src): the kernel of `isa`, or
 * the reference when `isa` has none, over every task on the calling thread.
 * fpay_image_isa() is the ISA they should use: FACEPAY_ISA or the best one
 * (the reference when FACEPAY_ISA names one this machine lacks: sessions
 * report that error; image operations give the same bits on every path). */
fpay_isa fpay_image_isa(void);
/* a->xt must be filled for a->in_w -> a->out_w. */
void fpay_u8_resize_bilinear_run(fpay_isa isa, const fpay_resize_args *a);
void fpay_u8_warp_affine_run(fpay_isa isa, const fpay_warp_args *a);
void fpay_u8_f32_normalize_run(fpay_isa isa, const uint8_t *in, size_t count, float sub,
                               float div, float *out);

#ifdef __cplusplus
}
#endif

#endif /* FPAY_SIMD_H */
