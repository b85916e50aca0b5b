/* fpay_u8_resize_bilinear_x2__neon: see kernels/templates/image_resize.inc (the ISA-neutral template), simd_neon.h and fpay_simd.h. */
#include "simd_neon.h"

#include <math.h>

#define FN fpay_u8_resize_bilinear_x2__neon
#include "../templates/image_resize.inc"
