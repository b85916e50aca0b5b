/* fpay_f32_maxpool__neon: see kernels/templates/maxpool.inc (the ISA-neutral template), simd_neon.h and fpay_simd.h. */
#include "simd_neon.h"

#define FN fpay_f32_maxpool__neon
#include "../templates/maxpool.inc"
