/*
 * kernel_check.h - the SIMD-kernel-versus-reference checks shared by
 * tests/test_simd_kernels.c (Criterion, x86) and tests/neon/test_neon_main.c
 * (self-checking, aarch64 under qemu). Plain C11, no test framework: each
 * check runs every case of one kernel and returns the first failure in a
 * kc_result, which the caller turns into a Criterion assertion or a printed
 * FAIL line.
 *
 * Shapes. Random awkward shapes, seeded per kernel table index (1000 + i for
 * GEMM, 2000 + i conv, 3000 + i depthwise, 4000 + i max pool): channel counts
 * that are not a multiple of the vector width, 1x1 maps, odd sizes, stride 2
 * on odd inputs, padding on every side, dilation, every epilogue (bias or
 * not, each activation, residual), plus MobileFaceNet's own shapes. Kernels
 * run in two or three task ranges, as threads would run them.
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
 * compares and must match exactly (NaN included).
 */
#ifndef FPAY_TESTS_KERNEL_CHECK_H
#define FPAY_TESTS_KERNEL_CHECK_H

#include "fpay_simd.h"

#include <stdbool.h>
#include <stddef.h>

/* The outcome of a check: ok, or the first failing case's message. */
typedef struct kc_result {
    bool ok;
    char msg[512];
} kc_result;

/* Every check below runs all its cases (a failure does not stop the run),
 * records the first failure in *res (which it initialises) and returns the
 * number of cases run. */

/* GEMM: 8 fixed shapes and 120 random ones (128 cases). */
int kc_check_gemm(const fpay_gemm_ukernel *uk, int table_index, kc_result *res);

/* Conv: MobileFaceNet's first conv and 150 random geometries (151 cases). */
int kc_check_conv(const fpay_conv_ukernel *uk, int table_index, kc_result *res);

/* Depthwise: 150 random geometries with the kernel's fixed kernel/stride,
 * plus MobileFaceNet's global 7x7 for the generic kernel (150 or 151). */
int kc_check_dwconv(const fpay_dwconv_ukernel *uk, int table_index, kc_result *res);

/* Max pool, exact: 150 random geometries, a NaN in every 7th input; with
 * signed_zeros, every 11th input also gets runs of -0/+0 (the reference
 * keeps the first). */
int kc_check_maxpool(const fpay_pool_ukernel *uk, int table_index, bool signed_zeros,
                     kc_result *res);

/* Image kernels, all EXACT (byte for byte, float bit for bit; the kernels
 * and the reference run the same IEEE operations in the same order, see
 * fpay_simd.h): seeds 5000 + i (resize), 6000 + i (warp), 7000 + i
 * (normalise).
 * Resize: 1x1 and 1-pixel-wide/high sources, odd sizes, widths that are not
 * a multiple of any vector width, scale up and down by up to 60x, rows
 * with stride padding (which must stay untouched), the pipeline's shapes
 * (a 640x480 pyramid level, 24/48 crops, the 256 liveness crop), bytes
 * uniform, only 0/255 and all 255 (the clamp); 2 task ranges. 8 fixed +
 * 200 random cases.
 * Warp: rotations through the whole circle, scales 1/4..4, reflections,
 * integer and half-pixel translations (zero tap weights), maps that leave
 * the image partly or wholly, 1x1 sources and outputs, NaN and huge
 * coordinates (black), the 112x112 alignment shape. 10 fixed + 200 random.
 * Normalise: counts 0..300 from unaligned starts, (p - 127.5) / 128,
 * p / 255 and other sub/div (power-of-two and not), 3 task ranges. 300. */
int kc_check_resize(const fpay_resize_ukernel *uk, int table_index, kc_result *res);
int kc_check_warp(const fpay_warp_ukernel *uk, int table_index, kc_result *res);
int kc_check_normalize(const fpay_normalize_ukernel *uk, int table_index, kc_result *res);

/* Allocation helpers (exit(2) when out of memory). kc_aligned_floats: 64-byte
 * aligned, room for n floats plus 64 bytes; kc_padded_copy: p[0..n) packed to
 * fpay_pack_padded(n) channels. Both freed with free(). */
float *kc_aligned_floats(size_t n);
float *kc_padded_copy(const float *p, int n);

#endif
