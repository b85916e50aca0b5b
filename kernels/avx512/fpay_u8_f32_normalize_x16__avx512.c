/* fpay_u8_f32_normalize_x16__avx512: see kernels/templates/image_normalize.inc (the template) and fpay_simd.h. */
#define FPAY_SIMD_AVX512 1
#include "../x86/simd_x86.h"

#include <math.h>

#define FN fpay_u8_f32_normalize_x16__avx512
#include "../templates/image_normalize.inc"
