/* fpay_f32_dwconv3x3s1__avx512: see kernels/templates/dwconv.inc (the template) and fpay_simd.h. */
#define FPAY_SIMD_AVX512 1
#include "../x86/simd_x86.h"

#define KH 3
#define KW 3
#define SH 1
#define SW 1
#define FN fpay_f32_dwconv3x3s1__avx512
#include "../templates/dwconv.inc"
