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
const fpay_gemm_ukernel *fpay_gemm_select(fpay_isa isa);
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

#ifdef __cplusplus
}
#endif

#endif /* FPAY_SIMD_H */
