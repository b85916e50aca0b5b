/*
 * data_ref.c - reference data movement: strided slice, concatenation, type
 * casts and binary16 decoding.
 *
 * Elements are moved with memcpy: the buffers are raw bytes of any element
 * type, and memcpy never makes an assumption about their alignment.
 */
#include "fpay_kernels.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------- slicing */

/* Copies the part of the slice below dim d. `in` points at the input block
 * where dim d starts (all outer coordinates fixed); *out advances as
 * elements are written, so output order is plain row-major. Recursion depth
 * is the rank, so no index array (and no rank limit) is needed. */
static void slice_dim(size_t elem_size, int d, int rank, const int64_t *in_dims,
                      const int64_t *begin, const int64_t *strides,
                      const int64_t *out_dims, const unsigned char *in,
                      unsigned char **out)
{
    size_t step = elem_size; /* bytes between neighbours along dim d */
    for (int k = d + 1; k < rank; k++)
        step *= (size_t)in_dims[k];
    for (int64_t i = 0; i < out_dims[d]; i++) {
        /* Normalised: begin + i * stride is always inside [0, in_dims[d]). */
        const size_t at = (size_t)(begin[d] + i * strides[d]);
        if (d == rank - 1) {
            memcpy(*out, in + at * step, elem_size);
            *out += elem_size;
        } else {
            slice_dim(elem_size, d + 1, rank, in_dims, begin, strides,
                      out_dims, in + at * step, out);
        }
    }
}

void fpay_ref_strided_slice(size_t elem_size, int rank, const int64_t *in_dims,
                            const int64_t *begin, const int64_t *strides,
                            const int64_t *out_dims, const void *in, void *out)
{
    unsigned char *o = out;
    if (rank == 0) {
        memcpy(o, in, elem_size);
        return;
    }
    slice_dim(elem_size, 0, rank, in_dims, begin, strides, out_dims, in, &o);
}

void fpay_ref_concat(int n_inputs, size_t outer, const size_t *inner_bytes,
                     const void *const *inputs, void *out)
{
    unsigned char *o = out;
    for (size_t j = 0; j < outer; j++) {
        for (int i = 0; i < n_inputs; i++) {
            const unsigned char *src = inputs[i];
            memcpy(o, src + j * inner_bytes[i], inner_bytes[i]);
            o += inner_bytes[i];
        }
    }
}

/* ---------------------------------------------------------------- cast */

/* One element on its way between types: a float, or an integer (bools are
 * integers 0/1). */
typedef struct scalar {
    int is_float;
    float f;
    int64_t i;
} scalar;

static size_t type_size(fpay_ktype t)
{
    switch (t) {
    case FPAY_KT_F32:
    case FPAY_KT_I32:
        return 4;
    case FPAY_KT_I64:
        return 8;
    case FPAY_KT_BOOL:
    case FPAY_KT_U8:
    case FPAY_KT_I8:
        return 1;
    }
    return 0;
}

static scalar load(fpay_ktype t, const unsigned char *p)
{
    scalar s = {0, 0.0f, 0};
    switch (t) {
    case FPAY_KT_F32:
        s.is_float = 1;
        memcpy(&s.f, p, sizeof s.f);
        break;
    case FPAY_KT_I32: {
        int32_t v;
        memcpy(&v, p, sizeof v);
        s.i = v;
        break;
    }
    case FPAY_KT_I64:
        memcpy(&s.i, p, sizeof s.i);
        break;
    case FPAY_KT_BOOL:
        s.i = p[0] != 0; /* any non-zero byte reads as true */
        break;
    case FPAY_KT_U8:
        s.i = p[0];
        break;
    case FPAY_KT_I8: {
        int8_t v;
        memcpy(&v, p, sizeof v);
        s.i = v;
        break;
    }
    }
    return s;
}

/* Float to integer: truncation toward zero. TFLite's static_cast is
 * undefined beyond the target range; here it saturates and NaN gives 0, so
 * the reference has an answer for every input. */
static int64_t float_to_int(float f, int64_t lo, int64_t hi)
{
    if (isnan(f))
        return 0;
    const double t = trunc((double)f);
    if (t <= (double)lo)
        return lo;
    /* (double)INT64_MAX rounds up to 2^63, which is out of range: '>='. */
    if (t >= (double)hi)
        return hi;
    return (int64_t)t;
}

/* Integer to a narrower integer wraps modulo 2^bits (two's complement), the
 * behaviour of static_cast in TFLite, written without implementation-defined
 * conversions. */
static int32_t wrap_i32(int64_t v)
{
    const uint32_t u = (uint32_t)v;
    return u <= INT32_MAX ? (int32_t)u
                          : (int32_t)(u - 2147483648u) - INT32_MAX - 1;
}

static int8_t wrap_i8(int64_t v)
{
    const uint8_t u = (uint8_t)v;
    return u <= 127 ? (int8_t)u : (int8_t)((int)u - 256);
}

static void store(fpay_ktype t, unsigned char *p, scalar s)
{
    switch (t) {
    case FPAY_KT_F32: {
        const float v = s.is_float ? s.f : (float)s.i;
        memcpy(p, &v, sizeof v);
        break;
    }
    case FPAY_KT_I32: {
        const int32_t v = s.is_float
                              ? (int32_t)float_to_int(s.f, INT32_MIN, INT32_MAX)
                              : wrap_i32(s.i);
        memcpy(p, &v, sizeof v);
        break;
    }
    case FPAY_KT_I64: {
        const int64_t v =
            s.is_float ? float_to_int(s.f, INT64_MIN, INT64_MAX) : s.i;
        memcpy(p, &v, sizeof v);
        break;
    }
    case FPAY_KT_BOOL:
        /* NaN != 0, so NaN casts to true as in C++'s bool conversion. */
        p[0] = (uint8_t)(s.is_float ? s.f != 0.0f : s.i != 0);
        break;
    case FPAY_KT_U8:
        p[0] = s.is_float ? (uint8_t)float_to_int(s.f, 0, UINT8_MAX)
                          : (uint8_t)s.i;
        break;
    case FPAY_KT_I8: {
        const int8_t v = s.is_float
                             ? (int8_t)float_to_int(s.f, INT8_MIN, INT8_MAX)
                             : wrap_i8(s.i);
        memcpy(p, &v, sizeof v);
        break;
    }
    }
}

void fpay_ref_cast(fpay_ktype from, fpay_ktype to, size_t count,
                   const void *in, void *out)
{
    const size_t in_size = type_size(from), out_size = type_size(to);
    if (from == to && from != FPAY_KT_BOOL) {
        memcpy(out, in, count * in_size);
        return;
    }
    const unsigned char *src = in;
    unsigned char *dst = out;
    for (size_t k = 0; k < count; k++)
        store(to, dst + k * out_size, load(from, src + k * in_size));
}

/* ------------------------------------------------------------- float16 */

float fpay_ref_f16_to_f32(uint16_t h)
{
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0x1f) {
        /* Inf, or NaN keeping its payload (and quiet bit) in the top
         * mantissa bits. */
        bits = sign | 0x7f800000u | (man << 13);
    } else if (exp != 0) {
        /* Normal: rebias the exponent from 15 to 127. */
        bits = sign | ((exp + 112u) << 23) | (man << 13);
    } else if (man == 0) {
        bits = sign; /* signed zero */
    } else {
        /* Subnormal man * 2^-24 is a normal float: shift the leading one up
         * to the implicit bit position, lowering the exponent per shift.
         * Starting at 113 (= 127 - 14) gives 2^-24 for man == 1. */
        uint32_t e = 113;
        while (!(man & 0x400u)) {
            man <<= 1;
            e--;
        }
        bits = sign | (e << 23) | ((man & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

void fpay_ref_dequantize_f16_f32(size_t count, const uint16_t *in, float *out)
{
    for (size_t i = 0; i < count; i++)
        out[i] = fpay_ref_f16_to_f32(in[i]);
}
