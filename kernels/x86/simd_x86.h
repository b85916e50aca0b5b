/*
 * simd_x86.h - one vocabulary of f32 vector operations over AVX2 and
 * AVX-512, so each kernel template (kernels/x86/NAME.inc) is written once and
 * compiled per ISA by the thin files in kernels/avx2/ and kernels/avx512/
 * (XNNPACK generates per-ISA files from templates for the same reason).
 *
 * The including file defines FPAY_SIMD_AVX512 or FPAY_SIMD_AVX2 and is
 * compiled with that ISA's flags (kernels/CMakeLists.txt); nothing here may
 * be included by code that runs before the CPU check.
 *
 * Activation helpers reproduce fpay_ref_act exactly, NaN included: x86
 * max/min return their SECOND operand when either is NaN or both are zero,
 * so the constant goes first and x (NaN, -0.0) comes through as the
 * reference's compare-and-select does.
 */
#ifndef FPAY_SIMD_X86_H
#define FPAY_SIMD_X86_H

#include "fpay_simd.h"

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define FPAY_INLINE static inline __attribute__((always_inline))

#if defined(FPAY_SIMD_AVX512)
typedef __m512 V;
#define VL 16
FPAY_INLINE V vzero(void) { return _mm512_setzero_ps(); }
FPAY_INLINE V vset1(float x) { return _mm512_set1_ps(x); }
FPAY_INLINE V vload(const float *p) { return _mm512_loadu_ps(p); }
FPAY_INLINE void vstore(float *p, V v) { _mm512_storeu_ps(p, v); }
FPAY_INLINE V vfma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
FPAY_INLINE V vadd(V a, V b) { return _mm512_add_ps(a, b); }
FPAY_INLINE V vmul(V a, V b) { return _mm512_mul_ps(a, b); }
FPAY_INLINE V vmax(V a, V b) { return _mm512_max_ps(a, b); }
FPAY_INLINE V vmin(V a, V b) { return _mm512_min_ps(a, b); }
FPAY_INLINE V vsub(V a, V b) { return _mm512_sub_ps(a, b); }
FPAY_INLINE V vdiv(V a, V b) { return _mm512_div_ps(a, b); }
/* VL bytes widened to floats (exact). */
FPAY_INLINE V vload_u8(const uint8_t *p)
{
    return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)p)));
}
/* x >= 0 ? x : neg */
FPAY_INLINE V vsel_ge0(V x, V neg)
{
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GE_OQ),
                                neg, x);
}
/* n in 1..VL elements; the rest read as 0 / left untouched. */
FPAY_INLINE V vload_n(const float *p, int n)
{
    return _mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1u), p);
}
FPAY_INLINE void vstore_n(float *p, V v, int n)
{
    _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1u), v);
}
#elif defined(FPAY_SIMD_AVX2)
typedef __m256 V;
#define VL 8
FPAY_INLINE V vzero(void) { return _mm256_setzero_ps(); }
FPAY_INLINE V vset1(float x) { return _mm256_set1_ps(x); }
FPAY_INLINE V vload(const float *p) { return _mm256_loadu_ps(p); }
FPAY_INLINE void vstore(float *p, V v) { _mm256_storeu_ps(p, v); }
FPAY_INLINE V vfma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
FPAY_INLINE V vadd(V a, V b) { return _mm256_add_ps(a, b); }
FPAY_INLINE V vmul(V a, V b) { return _mm256_mul_ps(a, b); }
FPAY_INLINE V vmax(V a, V b) { return _mm256_max_ps(a, b); }
FPAY_INLINE V vmin(V a, V b) { return _mm256_min_ps(a, b); }
FPAY_INLINE V vsub(V a, V b) { return _mm256_sub_ps(a, b); }
FPAY_INLINE V vdiv(V a, V b) { return _mm256_div_ps(a, b); }
/* VL bytes widened to floats (exact). */
FPAY_INLINE V vload_u8(const uint8_t *p)
{
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)p)));
}
FPAY_INLINE V vsel_ge0(V x, V neg)
{
    return _mm256_blendv_ps(neg, x, _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GE_OQ));
}
/* maskload/maskstore take a per-lane sign mask: a sliding window over
 * 8 x -1 then 8 x 0 gives the first n lanes. */
static const int fpay_avx2_mask_table[16] = {-1, -1, -1, -1, -1, -1, -1, -1,
                                             0,  0,  0,  0,  0,  0,  0,  0};
FPAY_INLINE __m256i vmask_n(int n)
{
    return _mm256_loadu_si256((const __m256i *)(const void *)(fpay_avx2_mask_table + 8 - n));
}
FPAY_INLINE V vload_n(const float *p, int n) { return _mm256_maskload_ps(p, vmask_n(n)); }
FPAY_INLINE void vstore_n(float *p, V v, int n) { _mm256_maskstore_ps(p, vmask_n(n), v); }
#else
#error "define FPAY_SIMD_AVX512 or FPAY_SIMD_AVX2 before including simd_x86.h"
#endif

/* Loads n (1..VL) elements: a plain load when the vector is full. */
FPAY_INLINE V vload_upto(const float *p, int n) { return n >= VL ? vload(p) : vload_n(p, n); }
FPAY_INLINE void vstore_upto(float *p, V v, int n)
{
    if (n >= VL)
        vstore(p, v);
    else
        vstore_n(p, v, n);
}

/* fpay_ref_act on a vector; slope points at this vector's channels (PRELU). */
FPAY_INLINE V vact(const fpay_kepilogue *e, V x, const float *slope)
{
    switch (e->act) {
    case FPAY_KACT_NONE: return x;
    case FPAY_KACT_RELU: return vmax(vzero(), x);
    case FPAY_KACT_RELU_N1_TO_1: return vmin(vset1(1.0f), vmax(vset1(-1.0f), x));
    case FPAY_KACT_RELU6: return vmin(vset1(6.0f), vmax(vzero(), x));
    case FPAY_KACT_PRELU: return vsel_ge0(x, vmul(vload(slope), x));
    case FPAY_KACT_LEAKY_RELU: return vsel_ge0(x, vmul(vset1(e->alpha), x));
    }
    return x;
}

/* ------------------------------------------------------------ f64 vectors
 * For the image kernels (kernels/x86/image_*.inc), which compute in double
 * as the reference does (bit for bit: every operation below is one IEEE
 * operation, no FMA; the image kernel files are also compiled with
 * -ffp-contract=off so the compiler cannot fuse a vd_mul into a vd_add).
 *
 * vd_gather_u8(row, off): lane i = row[off[i]] as a double, read lane by
 * lane with byte loads, so only the bytes asked for are read. (A version
 * with VPGATHERDD - 4-byte reads at byte offsets, the wanted byte shifted
 * out - was measured in the same `facepay-bench kernels` run against the
 * reference: 1.06x (AVX-512) and 0.64x (AVX2) the reference's speed on a
 * 640x480 -> 384x288 resize, against 2.8x with byte loads, on this Xeon.)
 */
#if defined(FPAY_SIMD_AVX512)
typedef __m512d VD;
#define VDL 8
FPAY_INLINE VD vd_set1(double x) { return _mm512_set1_pd(x); }
FPAY_INLINE VD vd_load(const double *p) { return _mm512_loadu_pd(p); }
FPAY_INLINE void vd_store(double *p, VD v) { _mm512_storeu_pd(p, v); }
FPAY_INLINE VD vd_add(VD a, VD b) { return _mm512_add_pd(a, b); }
FPAY_INLINE VD vd_sub(VD a, VD b) { return _mm512_sub_pd(a, b); }
FPAY_INLINE VD vd_mul(VD a, VD b) { return _mm512_mul_pd(a, b); }
FPAY_INLINE VD vd_min(VD a, VD b) { return _mm512_min_pd(a, b); }
FPAY_INLINE VD vd_floor(VD a)
{
    return _mm512_roundscale_pd(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
}
FPAY_INLINE VD vd_iota(void) { return _mm512_set_pd(7, 6, 5, 4, 3, 2, 1, 0); }
FPAY_INLINE VD vd_gather_u8(const uint8_t *row, const int32_t *off)
{
    int32_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = row[off[i]];
    return _mm512_cvtepi32_pd(_mm256_loadu_si256((const __m256i *)(const void *)b));
}
/* VDL integral values in [0, 255] to bytes. */
FPAY_INLINE void vd_store_u8(uint8_t *p, VD v)
{
    _mm_storel_epi64((__m128i *)(void *)p, _mm256_cvtepi32_epi8(_mm512_cvttpd_epi32(v)));
}
#else
typedef __m256d VD;
#define VDL 4
FPAY_INLINE VD vd_set1(double x) { return _mm256_set1_pd(x); }
FPAY_INLINE VD vd_load(const double *p) { return _mm256_loadu_pd(p); }
FPAY_INLINE void vd_store(double *p, VD v) { _mm256_storeu_pd(p, v); }
FPAY_INLINE VD vd_add(VD a, VD b) { return _mm256_add_pd(a, b); }
FPAY_INLINE VD vd_sub(VD a, VD b) { return _mm256_sub_pd(a, b); }
FPAY_INLINE VD vd_mul(VD a, VD b) { return _mm256_mul_pd(a, b); }
FPAY_INLINE VD vd_min(VD a, VD b) { return _mm256_min_pd(a, b); }
FPAY_INLINE VD vd_floor(VD a) { return _mm256_floor_pd(a); }
FPAY_INLINE VD vd_iota(void) { return _mm256_set_pd(3, 2, 1, 0); }
FPAY_INLINE VD vd_gather_u8(const uint8_t *row, const int32_t *off)
{
    int32_t b[4];
    for (int i = 0; i < 4; i++)
        b[i] = row[off[i]];
    return _mm256_cvtepi32_pd(_mm_loadu_si128((const __m128i *)(const void *)b));
}
FPAY_INLINE void vd_store_u8(uint8_t *p, VD v)
{
    __m128i i = _mm256_cvttpd_epi32(v);
    i = _mm_packus_epi16(_mm_packus_epi32(i, i), _mm_setzero_si128());
    const int32_t w = _mm_cvtsi128_si32(i);
    memcpy(p, &w, 4);
}
#endif

#endif /* FPAY_SIMD_X86_H */
