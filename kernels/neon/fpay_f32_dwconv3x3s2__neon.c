/* fpay_f32_dwconv3x3s2__neon: see kernels/templates/dwconv.inc (the ISA-neutral template), simd_neon.h and fpay_simd.h. */
#include "simd_neon.h"

#define KH 3
#define KW 3
#define SH 2
#define SW 2
#define FN fpay_f32_dwconv3x3s2__neon
#include "../templates/dwconv.inc"
