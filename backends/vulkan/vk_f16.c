/*
 * vk_f16.c - precision: which one FACEPAY_VK_PRECISION asks for, and the
 * host's f32 <-> IEEE binary16 conversions (inputs in, outputs out, weights
 * at upload; see docs/vulkan.md). Plain arithmetic with no Vulkan state, so
 * it stands apart from the device code that calls it (vk_context.c,
 * vulkan_backend.c).
 */
#include "vk_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int vk_precision_env(const char **value)
{
    const char *v = getenv("FACEPAY_VK_PRECISION");
    *value = v ? v : "";
    if (!v || !*v || strcasecmp(v, "fp32") == 0)
        return PREC_FP32;
    if (strcasecmp(v, "fp16") == 0)
        return PREC_FP16;
    return PREC_INVALID;
}

/* IEEE binary16 <-> binary32 on the host (inputs in, outputs out, weights
 * at upload): round to nearest even, overflow to infinity, subnormals kept,
 * NaN kept quiet. */
static uint16_t f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* inf, NaN */
        return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u | ((ax >> 13) & 0x3ffu) : 0));
    if (ax >= 0x477ff000u) /* >= 65520: rounds past 65504 */
        return (uint16_t)(sign | 0x7c00u);
    uint32_t h, rem, half;
    if (ax >= 0x38800000u) { /* normal in fp16: rebias, drop 13 bits */
        h = (ax - 0x38000000u) >> 13;
        rem = ax & 0x1fffu;
        half = 0x1000u;
    } else {
        uint32_t e = ax >> 23;
        if (e < 102) /* below 2^-25: rounds to zero */
            return (uint16_t)sign;
        uint32_t m = (ax & 0x7fffffu) | 0x800000u, shift = 126 - e; /* units of 2^-24 */
        h = m >> shift;
        rem = m & ((1u << shift) - 1);
        half = 1u << (shift - 1);
    }
    if (rem > half || (rem == half && (h & 1u)))
        h++; /* a carry into the exponent is the right encoding */
    return (uint16_t)(sign | h);
}

static float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, x;
    if (e == 0x1f)
        x = sign | 0x7f800000u | (m << 13);
    else if (e)
        x = sign | ((e + 112) << 23) | (m << 13);
    else {
        float v = (float)m * 0x1p-24f; /* zero or subnormal: exact */
        return sign ? -v : v;
    }
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}

void vk_to_device(void *dst, const float *src, size_t n, uint32_t esz)
{
    if (esz == 4) {
        memcpy(dst, src, n * sizeof(float));
        return;
    }
    uint16_t *d = dst;
    for (size_t i = 0; i < n; i++)
        d[i] = f32_to_f16(src[i]);
}

void vk_from_device(float *dst, const void *src, size_t n, uint32_t esz)
{
    if (esz == 4) {
        memcpy(dst, src, n * sizeof(float));
        return;
    }
    const uint16_t *s = src;
    for (size_t i = 0; i < n; i++)
        dst[i] = f16_to_f32(s[i]);
}
