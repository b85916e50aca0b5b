/* fpay_f32_conv_7x32__avx512: see kernels/templates/conv.inc (the template) and fpay_simd.h. */
#define FPAY_SIMD_AVX512 1
#include "../x86/simd_x86.h"

#define MR 7
#define NR 32
#define FN fpay_f32_conv_7x32__avx512
#include "../templates/conv.inc"
