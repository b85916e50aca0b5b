/* fpay_u8_f32_normalize_x4__neon: see kernels/templates/image_normalize.inc (the ISA-neutral template), simd_neon.h and fpay_simd.h. */
#include "simd_neon.h"

#include <math.h>

#define FN fpay_u8_f32_normalize_x4__neon
#include "../templates/image_normalize.inc"
