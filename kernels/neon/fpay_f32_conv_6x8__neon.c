/* fpay_f32_conv_6x8__neon: see kernels/templates/conv.inc (the ISA-neutral template), simd_neon.h and fpay_simd.h. */
#include "simd_neon.h"

#define MR 6
#define NR 8
#define FN fpay_f32_conv_6x8__neon
#include "../templates/conv.inc"
