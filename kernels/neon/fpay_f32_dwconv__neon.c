/* fpay_f32_dwconv__neon: see kernels/templates/dwconv.inc (the ISA-neutral template), simd_neon.h and fpay_simd.h. */
#include "simd_neon.h"

#define KH 0
#define KW 0
#define SH 0
#define SW 0
#define FN fpay_f32_dwconv__neon
#include "../templates/dwconv.inc"
