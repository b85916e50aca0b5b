/* fpay_u8_warp_affine_x4__avx2: see kernels/templates/image_warp.inc (the template) and fpay_simd.h. */
#define FPAY_SIMD_AVX2 1
#include "../x86/simd_x86.h"

#include <math.h>

#define FN fpay_u8_warp_affine_x4__avx2
#include "../templates/image_warp.inc"
