/*
 * simd_neon.h - the vector vocabulary of kernels/x86/simd_x86.h over AArch64
 * Advanced SIMD (NEON, 4 x f32), so the same kernel templates
 * (kernels/x86/NAME.inc: plain C over this vocabulary, nothing x86 in them)
 * compile for aarch64 through the thin files in kernels/neon/. NEON is
 * baseline on AArch64: no extra compiler flags.
 *
 * Same semantics as the x86 layer, bit for bit:
 * - vfma is a fused multiply-add (FMLA): one rounding per tap.
 * - vmax/vmin reproduce x86 MAXPS/MINPS, not NEON FMAX/FMIN: they return
 *   the SECOND operand when either is NaN or both are zero (NEON's FMAX
 *   returns NaN and orders -0 < +0), which is what the templates and
 *   fpay_ref_act's compare-and-select rely on: vmax(vzero(), x) is
 *   "x < 0 ? 0 : x" with NaN and -0.0 passing through, and max pool's
 *   vmax(v, acc) is the reference's "update only on >" scan.
 * - vload_n/vstore_n touch only the first n lanes (lane loads/stores), so a
 *   channel tail never reads or writes past the tensor.
 */
#ifndef FPAY_SIMD_NEON_H
#define FPAY_SIMD_NEON_H

#include "fpay_simd.h"

#include <arm_neon.h>
#include <stdint.h>
#include <string.h>

#define FPAY_INLINE static inline __attribute__((always_inline))

typedef float32x4_t V;
#define VL 4

FPAY_INLINE V vzero(void) { return vdupq_n_f32(0.0f); }
FPAY_INLINE V vset1(float x) { return vdupq_n_f32(x); }
FPAY_INLINE V vload(const float *p) { return vld1q_f32(p); }
FPAY_INLINE void vstore(float *p, V v) { vst1q_f32(p, v); }
/* a * b + c, fused */
FPAY_INLINE V vfma(V a, V b, V c) { return vfmaq_f32(c, a, b); }
FPAY_INLINE V vadd(V a, V b) { return vaddq_f32(a, b); }
FPAY_INLINE V vmul(V a, V b) { return vmulq_f32(a, b); }
FPAY_INLINE V vsub(V a, V b) { return vsubq_f32(a, b); }
FPAY_INLINE V vdiv(V a, V b) { return vdivq_f32(a, b); }
/* VL bytes widened to floats (exact); reads exactly 4 bytes. */
FPAY_INLINE V vload_u8(const uint8_t *p)
{
    uint32_t w;
    memcpy(&w, p, 4);
    const uint16x8_t h = vmovl_u8(vcreate_u8((uint64_t)w));
    return vcvtq_f32_u32(vmovl_u16(vget_low_u16(h)));
}
/* a > b ? a : b and a < b ? a : b, lane-wise (x86 MAXPS/MINPS). */
FPAY_INLINE V vmax(V a, V b) { return vbslq_f32(vcgtq_f32(a, b), a, b); }
FPAY_INLINE V vmin(V a, V b) { return vbslq_f32(vcltq_f32(a, b), a, b); }
/* x >= 0 ? x : neg (false for NaN: neg, as x86's _CMP_GE_OQ) */
FPAY_INLINE V vsel_ge0(V x, V neg) { return vbslq_f32(vcgeq_f32(x, vzero()), x, neg); }
/* n in 1..VL elements; the rest read as 0 / left untouched. */
FPAY_INLINE V vload_n(const float *p, int n)
{
    V v = vld1q_lane_f32(p, vzero(), 0);
    if (n > 1)
        v = vld1q_lane_f32(p + 1, v, 1);
    if (n > 2)
        v = vld1q_lane_f32(p + 2, v, 2);
    if (n > 3)
        v = vld1q_lane_f32(p + 3, v, 3);
    return v;
}
FPAY_INLINE void vstore_n(float *p, V v, int n)
{
    vst1q_lane_f32(p, v, 0);
    if (n > 1)
        vst1q_lane_f32(p + 1, v, 1);
    if (n > 2)
        vst1q_lane_f32(p + 2, v, 2);
    if (n > 3)
        vst1q_lane_f32(p + 3, v, 3);
}

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
 * As in simd_x86.h (for the image kernels, bit-exact with the reference:
 * one IEEE operation each, no FMA, files built with -ffp-contract=off).
 * NEON has no gather: vd_gather_u8 reads its lanes one by one, and only the
 * bytes asked for. */
typedef float64x2_t VD;
#define VDL 2
FPAY_INLINE VD vd_set1(double x) { return vdupq_n_f64(x); }
FPAY_INLINE VD vd_load(const double *p) { return vld1q_f64(p); }
FPAY_INLINE void vd_store(double *p, VD v) { vst1q_f64(p, v); }
FPAY_INLINE VD vd_add(VD a, VD b) { return vaddq_f64(a, b); }
FPAY_INLINE VD vd_sub(VD a, VD b) { return vsubq_f64(a, b); }
FPAY_INLINE VD vd_mul(VD a, VD b) { return vmulq_f64(a, b); }
/* a < b ? a : b (x86 MINPD; the kernels never pass NaN) */
FPAY_INLINE VD vd_min(VD a, VD b) { return vbslq_f64(vcltq_f64(a, b), a, b); }
FPAY_INLINE VD vd_floor(VD a) { return vrndmq_f64(a); }
FPAY_INLINE VD vd_iota(void)
{
    static const double iota[2] = {0, 1};
    return vld1q_f64(iota);
}
FPAY_INLINE VD vd_gather_u8(const uint8_t *row, const int32_t *off)
{
    const double lanes[2] = {row[off[0]], row[off[1]]};
    return vld1q_f64(lanes);
}
FPAY_INLINE void vd_store_u8(uint8_t *p, VD v)
{
    const uint64x2_t i = vcvtq_u64_f64(v);
    p[0] = (uint8_t)vgetq_lane_u64(i, 0);
    p[1] = (uint8_t)vgetq_lane_u64(i, 1);
}

#endif /* FPAY_SIMD_NEON_H */
