/* fpay_f32_dwconv__avx512: see kernels/templates/dwconv.inc (the template) and fpay_simd.h. */
#define FPAY_SIMD_AVX512 1
#include "../x86/simd_x86.h"

#define KH 0
#define KW 0
#define SH 0
#define SW 0
#define FN fpay_f32_dwconv__avx512
#include "../templates/dwconv.inc"
