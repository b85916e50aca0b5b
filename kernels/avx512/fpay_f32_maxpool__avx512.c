/* fpay_f32_maxpool__avx512: see kernels/templates/maxpool.inc (the template) and fpay_simd.h. */
#define FPAY_SIMD_AVX512 1
#include "../x86/simd_x86.h"

#define FN fpay_f32_maxpool__avx512
#include "../templates/maxpool.inc"
