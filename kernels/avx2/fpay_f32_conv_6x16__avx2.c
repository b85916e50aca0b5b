/* fpay_f32_conv_6x16__avx2: see kernels/templates/conv.inc (the template) and fpay_simd.h. */
#define FPAY_SIMD_AVX2 1
#include "../x86/simd_x86.h"

#define MR 6
#define NR 16
#define FN fpay_f32_conv_6x16__avx2
#include "../templates/conv.inc"
