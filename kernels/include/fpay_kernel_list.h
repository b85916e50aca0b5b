/*
 * fpay_kernel_list.h - one X-macro list per kernel family. Each list drives
 * the prototypes and the dispatch table (kernels/dispatch.c), the tests
 * (tests/test_simd_kernels.c) and the benchmarks (facepay-bench kernels).
 * Adding a kernel = its file (named after the function) + one line here +
 * its source in kernels/CMakeLists.txt.
 *
 * Order inside a family and ISA: most specific first (dispatch takes the
 * first entry that fits). NEON: add FPAY_*_KERNELS_NEON lists under
 * __aarch64__ below; nothing else changes.
 */
#ifndef FPAY_KERNEL_LIST_H
#define FPAY_KERNEL_LIST_H

#if defined(FPAY_NO_SIMD)
/* Built with -DFACEPAY_SIMD=OFF: reference kernels only (empty lists below). */
#elif defined(__x86_64__) || defined(_M_X64)

/* X(name, isa, mr, nr): C[mr x nr] register tile */
#define FPAY_GEMM_KERNELS(X)                          \
    X(fpay_f32_gemm_6x64__avx512, AVX512, 6, 64)      \
    X(fpay_f32_gemm_7x32__avx512, AVX512, 7, 32)      \
    X(fpay_f32_gemm_6x16__avx2, AVX2, 6, 16)

/* X(name, isa, mr, nr): mr pixels of a row x nr output channels */
#define FPAY_CONV_KERNELS(X)                          \
    X(fpay_f32_conv_7x32__avx512, AVX512, 7, 32)      \
    X(fpay_f32_conv_6x16__avx2, AVX2, 6, 16)

/* X(name, isa, kh, kw, sh, sw); 0 = any */
#define FPAY_DWCONV_KERNELS(X)                                   \
    X(fpay_f32_dwconv3x3s1__avx512, AVX512, 3, 3, 1, 1)          \
    X(fpay_f32_dwconv3x3s2__avx512, AVX512, 3, 3, 2, 2)          \
    X(fpay_f32_dwconv__avx512, AVX512, 0, 0, 0, 0)               \
    X(fpay_f32_dwconv3x3s1__avx2, AVX2, 3, 3, 1, 1)              \
    X(fpay_f32_dwconv3x3s2__avx2, AVX2, 3, 3, 2, 2)              \
    X(fpay_f32_dwconv__avx2, AVX2, 0, 0, 0, 0)

/* X(name, isa) */
#define FPAY_MAXPOOL_KERNELS(X)                       \
    X(fpay_f32_maxpool__avx512, AVX512)               \
    X(fpay_f32_maxpool__avx2, AVX2)

/* Image operations, bit-exact with the reference (fpay_simd.h).
 * X(name, isa, tile): resize: output bytes per vector step (doubles per
 * vector); warp: output pixels per step; normalise: bytes per step. */
#define FPAY_RESIZE_KERNELS(X)                               \
    X(fpay_u8_resize_bilinear_x8__avx512, AVX512, 8)         \
    X(fpay_u8_resize_bilinear_x4__avx2, AVX2, 4)

#define FPAY_WARP_KERNELS(X)                                 \
    X(fpay_u8_warp_affine_x8__avx512, AVX512, 8)             \
    X(fpay_u8_warp_affine_x4__avx2, AVX2, 4)

#define FPAY_NORMALIZE_KERNELS(X)                            \
    X(fpay_u8_f32_normalize_x16__avx512, AVX512, 16)         \
    X(fpay_u8_f32_normalize_x8__avx2, AVX2, 8)

#elif defined(__aarch64__)

/* NEON (kernels/neon/: the kernels/x86 templates over simd_neon.h, 4 x f32).
 * Same X(...) columns as the x86 lists above. */
#define FPAY_GEMM_KERNELS_NEON(X)                     \
    X(fpay_f32_gemm_6x8__neon, NEON, 6, 8)

#define FPAY_CONV_KERNELS_NEON(X)                     \
    X(fpay_f32_conv_6x8__neon, NEON, 6, 8)

#define FPAY_DWCONV_KERNELS_NEON(X)                              \
    X(fpay_f32_dwconv3x3s1__neon, NEON, 3, 3, 1, 1)              \
    X(fpay_f32_dwconv3x3s2__neon, NEON, 3, 3, 2, 2)              \
    X(fpay_f32_dwconv__neon, NEON, 0, 0, 0, 0)

#define FPAY_MAXPOOL_KERNELS_NEON(X)                  \
    X(fpay_f32_maxpool__neon, NEON)

#define FPAY_RESIZE_KERNELS_NEON(X)                   \
    X(fpay_u8_resize_bilinear_x2__neon, NEON, 2)

#define FPAY_WARP_KERNELS_NEON(X)                     \
    X(fpay_u8_warp_affine_x2__neon, NEON, 2)

#define FPAY_NORMALIZE_KERNELS_NEON(X)                \
    X(fpay_u8_f32_normalize_x4__neon, NEON, 4)

#define FPAY_GEMM_KERNELS(X) FPAY_GEMM_KERNELS_NEON(X)
#define FPAY_CONV_KERNELS(X) FPAY_CONV_KERNELS_NEON(X)
#define FPAY_DWCONV_KERNELS(X) FPAY_DWCONV_KERNELS_NEON(X)
#define FPAY_MAXPOOL_KERNELS(X) FPAY_MAXPOOL_KERNELS_NEON(X)
#define FPAY_RESIZE_KERNELS(X) FPAY_RESIZE_KERNELS_NEON(X)
#define FPAY_WARP_KERNELS(X) FPAY_WARP_KERNELS_NEON(X)
#define FPAY_NORMALIZE_KERNELS(X) FPAY_NORMALIZE_KERNELS_NEON(X)

#endif

#if defined(FPAY_NO_SIMD) || !(defined(__x86_64__) || defined(_M_X64) || defined(__aarch64__))
/* no SIMD kernels for this architecture or build */

#define FPAY_GEMM_KERNELS(X)
#define FPAY_CONV_KERNELS(X)
#define FPAY_DWCONV_KERNELS(X)
#define FPAY_MAXPOOL_KERNELS(X)
#define FPAY_RESIZE_KERNELS(X)
#define FPAY_WARP_KERNELS(X)
#define FPAY_NORMALIZE_KERNELS(X)

#endif

#endif /* FPAY_KERNEL_LIST_H */
