/* fpay_u8_resize_bilinear_x8__avx512: see kernels/x86/image_resize.inc (the template) and fpay_simd.h. */
#define FPAY_SIMD_AVX512 1
#include "../x86/simd_x86.h"

#include <math.h>

#define FN fpay_u8_resize_bilinear_x8__avx512
#include "../x86/image_resize.inc"
